#!/usr/bin/env bash
# Every check CI runs: formatting, lints, and the whole test suite
# (unit tests, the integration-test binary, doc tests).
# Needs only a Rust toolchain and python3; run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings
echo "== cargo test"
cargo test --locked
