#!/usr/bin/env python3
"""Run an ONNX model with Python's onnxruntime on given rows: the reference
the tests compare pouwd's ort outputs with.

    .venv/bin/python tools/onnx_predict.py --model FILE.onnx --rows ROWS.json

ROWS.json is {"rows": [[f, …], …]}; each value is read as float64 and
rounded to float32, so rows written as shortest round-trip float32 text
arrive bit for bit. Prints {"input": NAME, "shape": [...], "outputs":
[[…], …]} with each float32 output written exactly (as float64 text). One
intra-op thread, CPU provider: the setup the tests run ort with.
"""

import argparse
import json

import numpy as np
import onnxruntime as ort


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--rows", required=True)
    args = parser.parse_args()
    with open(args.rows) as f:
        rows = np.asarray(json.load(f)["rows"], dtype=np.float64).astype(np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    (outputs,) = session.run([session.get_outputs()[0].name], {name: rows})
    outputs = np.asarray(outputs, dtype=np.float32).reshape(len(rows), -1)
    print(json.dumps({
        "input": name,
        "shape": list(outputs.shape),
        "outputs": [[float(v) for v in row] for row in outputs],
    }))


if __name__ == "__main__":
    main()
