#!/usr/bin/env bash
# The whole test suite: set-up, formatting, lints, every test of every crate.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
# Valgrind memcheck over the OTR adapter's tests (no invalid access, no definite leak).
bash crates/otr/valgrind.sh
# The fuzzing campaign's regression run: every committed seed, corpus input
# and regression through its libFuzzer target, then 20 s of fuzzing each.
bash scripts/fuzz.sh ci 20
