#!/usr/bin/env bash
# Retention benchmark (benches/retention.rs): one day of 1,000 cameras' 60 s segments (1.44 M
# files) deleted by one retention pass while 100 live streams record. Needs ~2 GB for the index
# and ~8 GB of momentary space for the unlink calibration where --data points (default: a
# temporary directory). Example: scripts/bench-retention.sh --data /var/tmp
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench retention -- "$@"
