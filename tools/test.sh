#!/usr/bin/env bash
# Every check CI runs: formatting, lints, and the whole test suite
# (unit tests, the integration-test binary, doc tests).
# Needs only a Rust toolchain and python3 (with venv and pip: the ONNX tests
# install the onnxruntime wheel from PyPI into .venv, the metrics tests
# prometheus-client), and Debian's chromium for the dashboard test, which it
# installs with apt-get when /usr/bin/chromium is missing (as root; or set
# CHROMIUM to a Chromium binary); run from anywhere.
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
echo "== Python's Prometheus parser for the metrics tests (tools/prometheus_python.sh: into .venv once)"
./tools/prometheus_python.sh
echo "== Chromium for the dashboard test (Debian's package, installed when missing)"
if [ ! -x /usr/bin/chromium ] && [ -z "${CHROMIUM:-}" ]; then
  apt-get install -y chromium || { apt-get update && apt-get install -y chromium; }
fi
echo "== cargo test"
cargo test --locked
