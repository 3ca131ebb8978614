#!/usr/bin/env bash
# The main job: set-up, build, and the comparison on the in-memory link.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
cargo build --release -p e2elab
./target/release/e2elab compare --quick --out results/quick "$@"
./target/release/e2elab report --in results/quick
# The headline figures on the terminal; the whole report is in results/quick/report.md (and .html).
sed -n '/^## Handshake$/,/^## One-time/p' results/quick/report.md | sed '$d'
sed -n '/^## Closing note$/,$p' results/quick/report.md
echo "Full report: results/quick/report.md, results/quick/report.html"
