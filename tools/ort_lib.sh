#!/usr/bin/env bash
# Print the path of ONNX Runtime's shared library for pouwd, installing the
# pinned wheel first when it is not installed yet (idempotent: a second run
# only prints the path).
#
#   tools/ort_lib.sh          onnxruntime==1.31.1 (CPU) into .venv
#   tools/ort_lib.sh --gpu    onnxruntime-gpu==1.31.1 (CUDA) into .venv-gpu
#
# Use: export ORT_DYLIB_PATH="$(tools/ort_lib.sh)", or pass the path to
# `pouwd … --ort-lib PATH`. pouwd also finds .venv by itself when run from
# the repository root. The CUDA wheel needs the CUDA and cuDNN libraries it
# was built against on the loader path (LD_LIBRARY_PATH).
# Needs python3 with venv and pip; the wheels come from PyPI.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
version=1.31.1
venv="$root/.venv"
package=onnxruntime
case "${1:-}" in
  "") ;;
  --gpu) venv="$root/.venv-gpu"; package=onnxruntime-gpu ;;
  *) echo "usage: $0 [--gpu]" >&2; exit 2 ;;
esac

find_lib() {
  local lib
  for lib in "$venv"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so."$version"; do
    if [ -f "$lib" ]; then echo "$lib"; return 0; fi
  done
  return 1
}

if ! lib="$(find_lib)"; then
  echo "installing $package==$version into $venv" >&2
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" >&2
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$package==$version" >&2
  if ! lib="$(find_lib)"; then
    echo "error: $package==$version is installed in $venv but has no libonnxruntime.so.$version" >&2
    exit 1
  fi
fi
echo "$lib"
