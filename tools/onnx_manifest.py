#!/usr/bin/env python3
"""Write data/onnx.md: what each committed ONNX model is, and its BLAKE3
hash (the hash a chain pins). Reads everything from the files themselves.

    .venv/bin/python tools/onnx_manifest.py data/*.onnx > data/onnx.md
"""

import os
import sys

import blake3
import onnx

HEADER = """# ONNX models

Trained and exported by `tools/make_onnx.sh` (PyTorch {torch}, ONNX opset
{opset}) on `diabetes.csv` with target `progression`; row r is holdout
when r % 5 == 4, as in the shipped chains. The scores below are on those
holdout rows, in the target's units. Regenerate with `tools/make_onnx.sh`;
a chain pins a file by the BLAKE3 hash of its bytes.

Every graph has one float32 input `features` of shape [batch, 10] (the
CSV's columns without the target, in file order) with a dynamic batch
axis, and one float32 output.

| file | BLAKE3 | bytes | what | input | output | holdout R² | holdout MSE |
|---|---|---|---|---|---|---|---|
"""

INPUT = {
    "raw": "raw CSV values",
    "standardised": "rows standardised as the node does (training-row mean and std)",
}


def dims(value):
    return "[" + ", ".join(d.dim_param or str(d.dim_value) for d in value.type.tensor_type.shape.dim) + "]"


def main():
    import torch

    rows, opsets = [], set()
    for path in sys.argv[1:]:
        data = open(path, "rb").read()
        model = onnx.load_from_string(data)
        meta = {p.key: p.value for p in model.metadata_props}
        opsets.update(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        output = model.graph.output[0]
        what = {
            "linear": "SimpleLinearRegression, full model",
            "transformer": f"DynamicTransformer ({meta.get('pouwd.architecture')}), full model",
            "transformer-encoder": f"DynamicTransformer encoder ({meta.get('pouwd.architecture')})",
        }[meta["pouwd.kind"]]
        rows.append(
            f"| `{os.path.basename(path)}` | `{blake3.blake3(data).hexdigest()}` | {len(data)} "
            f"| {what} | {INPUT[meta['pouwd.input']]} | `{output.name}` {dims(output)} "
            f"| {float(meta['pouwd.holdout_r2']):.4f} | {float(meta['pouwd.holdout_mse']):.1f} |"
        )
    sys.stdout.write(HEADER.format(torch=torch.__version__.split("+")[0],
                                   opset=", ".join(map(str, sorted(opsets)))))
    sys.stdout.write("\n".join(rows) + "\n")
    sys.stdout.write(
        "\nThe encoder's scores are those of the full model it was cut from: it\n"
        "outputs features, not predictions; a linear head on top of them is the\n"
        "`onnx_linear` task.\n")


if __name__ == "__main__":
    main()
