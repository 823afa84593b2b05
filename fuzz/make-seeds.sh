#!/usr/bin/env bash
# Regenerates fuzz seeds from the committed fixtures. With a recorded segment file as argument,
# also seeds segment_file (keep it small: a 1 s segment of a 240p camera is ~40 KB).
set -euo pipefail
cd "$(dirname "$0")"
python3 - <<'PY'
import os, re
fx = "../tests/fixtures"
def nals(path):
    data = open(path, "rb").read()
    parts = re.split(b"\x00\x00\x01", data)
    return [p.rstrip(b"\x00") for p in parts[1:] if p]
def first(ns, pred):
    return next(n for n in ns if pred(n))
os.makedirs("seeds/h264_sps", exist_ok=True)
os.makedirs("seeds/h265_sps", exist_ok=True)
os.makedirs("seeds/stream_params", exist_ok=True)
for name in ["h264_1080p", "h264_240p"]:
    ns = nals(f"{fx}/{name}.h264")
    sps = first(ns, lambda n: n[0] & 0x1f == 7); pps = first(ns, lambda n: n[0] & 0x1f == 8)
    open(f"seeds/h264_sps/{name}", "wb").write(sps)
    open(f"seeds/stream_params/{name}", "wb").write(bytes([0, len(sps), len(pps)]) + sps + pps)
for name in ["h265_1080p", "h265_240p"]:
    ns = nals(f"{fx}/{name}.h265")
    t = lambda n: (n[0] >> 1) & 0x3f
    vps = first(ns, lambda n: t(n) == 32); sps = first(ns, lambda n: t(n) == 33); pps = first(ns, lambda n: t(n) == 34)
    open(f"seeds/h265_sps/{name}", "wb").write(sps)
    open(f"seeds/stream_params/{name}", "wb").write(bytes([1, len(vps), len(sps)]) + vps + sps + pps)
PY
if [ $# -gt 0 ]; then
  mkdir -p seeds/segment_file
  cp "$1" seeds/segment_file/recorded.mp4
fi
ls -R seeds | head -20
