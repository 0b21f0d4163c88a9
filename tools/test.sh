#!/usr/bin/env bash
# Every check CI runs: formatting, lints, and the whole test suite
# (unit tests, the integration-test binary, doc tests).
# Needs only a Rust toolchain and python3 (with venv and pip: the ONNX tests
# install the onnxruntime wheel from PyPI into .venv); run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings
echo "== ONNX Runtime for the ONNX tests (tools/ort_lib.sh: installs the wheel into .venv once)"
ORT_DYLIB_PATH="$(./tools/ort_lib.sh)"
export ORT_DYLIB_PATH
echo "ORT_DYLIB_PATH=$ORT_DYLIB_PATH"
echo "== cargo test"
cargo test --locked
