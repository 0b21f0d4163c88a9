#!/usr/bin/env python3
"""Run an ONNX model with Python's onnxruntime on given rows: the reference
the tests compare pouwd's ort outputs with.

    .venv/bin/python tools/onnx_predict.py --model FILE.onnx --rows ROWS.json

ROWS.json is {"rows": [[f, …], …]}; each value is read as float64 and
rounded to float32, so rows written as shortest round-trip float32 text
arrive bit for bit. A graph that `pouwd export-model` wrote for data with
text columns also has a string input `text`: ROWS.json then has "text":
[[cell, …], …], one list of cells per row, fed to it as they are (and
"rows" may hold empty lists when the graph has no float input). Prints
{"input": NAME, "shape": [...], "outputs": [[…], …]} with each float32
output written exactly (as float64 text). One intra-op thread, CPU
provider: the setup the tests run ort with.
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
        given = json.load(f)
    rows = np.asarray(given["rows"], dtype=np.float64).astype(np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    feeds = {}
    for graph_input in session.get_inputs():
        if graph_input.type == "tensor(string)":
            feeds[graph_input.name] = np.asarray(given["text"], dtype=object)
        else:
            feeds[graph_input.name] = rows
    name = session.get_inputs()[0].name
    (outputs,) = session.run([session.get_outputs()[0].name], feeds)
    outputs = np.asarray(outputs, dtype=np.float32).reshape(len(rows), -1)
    print(json.dumps({
        "input": name,
        "shape": list(outputs.shape),
        "outputs": [[float(v) for v in row] for row in outputs],
    }))


if __name__ == "__main__":
    main()
