#!/usr/bin/env bash
# Live fan-out benchmark (benches/fanout.rs): one camsim camera re-served by Sharpeye (RTSP/TCP,
# live.mp4) and by GStreamer's RTSP server to many loopback viewers. Installs the GStreamer peer
# from Debian's packages if missing. Example: scripts/bench-fanout.sh --viewers 1000
set -euo pipefail
cd "$(dirname "$0")/.."
if ! /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0')" 2>/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    gir1.2-gst-rtsp-server-1.0 python3-gi python3-gst-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad >/dev/null
fi
ulimit -n 65536 2>/dev/null || true
exec cargo bench --bench fanout -- "$@"
