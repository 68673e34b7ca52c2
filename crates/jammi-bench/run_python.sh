#!/usr/bin/env bash
# jammi-db from Python against LanceDB and DuckDB (issue 24), in one run on one machine:
# builds the `jammi` module in release, packages it as a wheel, installs it with lancedb
# and duckdb into a virtual environment, and runs peers/python_bench.py on the shared
# debian-packages set. Prints the Markdown tables of docs/BENCHMARKS.md.
# Usage: bash crates/jammi-bench/run_python.sh [python_bench.py options]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/jammi-target}"
OUT="${JAMMI_BENCH_OUT:-$(mktemp -d /tmp/jammi-python-bench.XXXXXX)}"
ENV="${JAMMI_BENCH_PYENV:-$HOME/.cache/jammi-benchenv}"
cargo build --release --locked -p jammi-py >&2
[[ -x "$ENV/bin/python" ]] || python3 -m venv "$ENV"
"$ENV/bin/python" -c 'import lancedb, duckdb, pyarrow, numpy, pandas' 2>/dev/null \
    || "$ENV/bin/pip" install -q lancedb duckdb pyarrow numpy pandas >&2
WHEEL="$(python3 crates/jammi-py/build_wheel.py "$CARGO_TARGET_DIR/release/lib_jammi.so" "$OUT/wheel")"
"$ENV/bin/pip" install -q --force-reinstall --no-deps "$WHEEL" >&2
"$ENV/bin/python" crates/jammi-bench/peers/python_bench.py --out "$OUT/python-bench.json" "$@"
echo "raw results: $OUT" >&2
