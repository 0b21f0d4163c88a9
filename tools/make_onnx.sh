#!/usr/bin/env bash
# Regenerate the ONNX models committed in data/ and data/onnx.md, which
# pins their BLAKE3 hashes: installs tools/requirements.txt into .venv
# (PyTorch from PyPI is large: about 5 GB with its CUDA libraries), trains
# both models on data/diabetes.csv and exports them. Training is seeded and
# single-threaded; on one machine a rerun writes the same bytes, on another
# the floats may differ in the last bits and so the hashes with them.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tools/requirements.txt
export PYTHONWARNINGS=ignore
.venv/bin/python tools/train_linear.py --csv data/diabetes.csv --target progression \
  --out data/linear.onnx | tee /tmp/pouwd-train-linear.log
.venv/bin/python tools/train_transformer.py --csv data/diabetes.csv --target progression \
  --out data/transformer.onnx --encoder-out data/transformer_encoder.onnx \
  | tee /tmp/pouwd-train-transformer.log
.venv/bin/python tools/onnx_manifest.py data/linear.onnx data/transformer.onnx \
  data/transformer_encoder.onnx > data/onnx.md
echo "wrote data/onnx.md"
