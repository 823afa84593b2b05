#!/usr/bin/env bash
# Ingest-and-record load run: installs GStreamer (the comparison recorder) and ffmpeg (to count
# GStreamer's frames), then runs benches/ingest_load.rs in release mode. Arguments are passed to
# the harness, e.g.: scripts/bench-ingest.sh --cameras 200 --seconds 60
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=()
command -v gst-launch-1.0 >/dev/null 2>&1 || pkgs+=(gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)
command -v ffprobe >/dev/null 2>&1 || pkgs+=(ffmpeg)
if [ ${#pkgs[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi
ulimit -n 65536 2>/dev/null || true
exec cargo bench --bench ingest_load -- "$@"
