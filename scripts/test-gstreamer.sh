#!/usr/bin/env bash
# The opt-in `gstreamer` feature's tests (server-side H.265 → H.264 transcoding for browsers):
# installs Debian's GStreamer (development files to build, libav/ugly/bad plugins to run), then
# lints and tests the transcode crate with the feature and plays an H.265-only camera in
# headless Chromium through a node built with it. Run after scripts/test.sh (which installs
# ffmpeg, Chromium and playwright-core).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/apt-install.sh

pkgs=(libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-libav gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad gstreamer1.0-plugins-good)
if ! pkg-config --exists gstreamer-app-1.0 || ! gst-inspect-1.0 x264enc >/dev/null 2>&1 || ! gst-inspect-1.0 avdec_h265 >/dev/null 2>&1; then
  apt_install GStreamer "${pkgs[@]}"
fi

cargo clippy -p transcode -p node --features transcode/gstreamer --all-targets -- -D warnings
cargo test -p transcode --features gstreamer
cargo test --features gstreamer --test browser an_h265_only_camera
cargo test --features gstreamer --test snapshots
cargo test --features gstreamer --test rates decoded_pictures
