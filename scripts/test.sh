#!/usr/bin/env bash
# Runs Sharpeye's whole test suite on a fresh machine with only Rust installed: installs the
# independent validators and peers the tests use if they are missing (ffmpeg/ffprobe, GStreamer's
# tools, sipp, etcd and Chromium from Debian's packages, Node.js to drive Chromium, playwright-core from npm into
# tests/browser, iproute2 and nftables for the network-namespace test of three levels), then runs
# every crate's unit, integration and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/apt-install.sh

need=()
command -v ffprobe >/dev/null 2>&1 || need+=(ffmpeg)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
# GStreamer's mpegpsmux makes program streams for the PS demuxer's fixture test.
gst-inspect-1.0 mpegpsmux >/dev/null 2>&1 || need+=(gstreamer1.0-tools gstreamer1.0-plugins-bad)
# sipp plays the scripted GB/T 28181 device of ../shared/peers/sipp against our SIP server.
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
# The three-level test runs nodes in network namespaces joined by veth pairs shaped with tc,
# and firewalls one of them with nft (tests/levels_netns.rs; as root).
command -v ip >/dev/null 2>&1 && command -v tc >/dev/null 2>&1 || need+=(iproute2)
command -v nft >/dev/null 2>&1 || need+=(nftables)
# Cluster members coordinate through a real etcd (crates/cluster/tests/etcd.rs and
# tests/cluster.rs start their own on loopback ports).
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
if [ ${#need[@]} -gt 0 ]; then
  apt_install "test dependencies" "${need[@]}"
fi

if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "installing playwright-core into tests/browser" >&2
  npm ci --prefix tests/browser --silent --no-audit --no-fund
fi

# The disk-pressure test records into a real small file system: a 24 MB tmpfs mounted here
# (tests/disk_pressure.rs mounts its own if this is absent and it runs as root).
small=/tmp/sharpeye-small-fs
if [ -z "${SHARPEYE_SMALL_FS:-}" ]; then
  mkdir -p "$small"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  if mountpoint -q "$small" || $sudo mount -t tmpfs -o size=24m tmpfs "$small"; then
    export SHARPEYE_SMALL_FS="$small"
  else
    echo "warning: cannot mount a tmpfs at $small; the disk-pressure test will try to mount its own" >&2
  fi
fi

exec cargo test --workspace "$@"
