#!/usr/bin/env bash
# Runs Sharpeye's whole test suite on a fresh machine with only Rust installed: installs the
# independent validators the tests use (ffmpeg/ffprobe, from Debian/Ubuntu packages) if they
# are missing, then runs every crate's unit, integration and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v ffprobe >/dev/null 2>&1 || need+=(ffmpeg)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing test dependencies: ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

exec cargo test --workspace "$@"
