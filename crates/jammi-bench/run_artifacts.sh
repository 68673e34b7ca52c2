#!/usr/bin/env bash
# The artifact benchmark: starts an S3-compatible server (moto, PyPI) on a free loopback
# port, builds the release benchmark and prints the Markdown table of docs/BENCHMARKS.md:
# put and fetch throughput of the artifact store against raw object_store, on file:// and S3.
# Usage: bash crates/jammi-bench/run_artifacts.sh [--reps N] [--big-mib N] [--small N] [--small-mib N]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/jammi-target}"
command -v moto_server >/dev/null 2>&1 || python3 -m pip install -q 'moto[server]' >&2
WORK="$(mktemp -d /tmp/jammi-artifact-bench.XXXXXX)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
moto_server -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
trap 'kill $MOTO_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$PORT/" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -sf -X PUT "http://127.0.0.1:$PORT/jammi-bench" >/dev/null
cargo build --release -p jammi-bench --bin artifact-bench >&2
"$CARGO_TARGET_DIR/release/artifact-bench" --s3-endpoint "http://127.0.0.1:$PORT" --s3-bucket jammi-bench "$@"
