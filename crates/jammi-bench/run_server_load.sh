#!/usr/bin/env bash
# The server load test: builds the release benchmark and runs 32 clients for 60 s against
# `jammi serve` on loopback (HTTP vector search + Postgres-protocol SQL), reading the
# debian-packages dataset in place. Prints the Markdown table of docs/BENCHMARKS.md.
# Usage: bash crates/jammi-bench/run_server_load.sh [--clients N] [--seconds N]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/jammi-target}"
cargo build --release -p jammi-bench --bin server-load >&2
"$CARGO_TARGET_DIR/release/server-load" --dataset "$ROOT/../shared/datasets/debian-packages" "$@"
