#!/usr/bin/env bash
# Permission and audit benchmarks (benches/authz.rs): authorization decisions with 10,000
# cameras, 500 groups and 1,000 grants, and durable audit appends; then the API under 200
# concurrent clients listing cameras (benches/api_load.rs). Example: scripts/bench-authz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n 65536 2>/dev/null || true
cargo bench --bench authz -- "$@"
exec cargo bench --bench api_load
