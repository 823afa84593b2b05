#!/usr/bin/env bash
# Playback/export benchmark (benches/playback.rs). Needs ffmpeg (installed if missing) and a few
# GB free where --data points (default: a temporary directory). Run as root to measure cold-cache
# figures (it drops the page cache). Example: scripts/bench-playback.sh --days 90 --cameras 100
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v ffmpeg >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
fi
exec cargo bench --bench playback -- "$@"
