#!/usr/bin/env bash
# The main job: set-up, build, and the comparison on the in-memory link.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
cargo build --release -p e2elab
./target/release/e2elab compare --quick --out results/quick "$@"
./target/release/e2elab report --in results/quick
