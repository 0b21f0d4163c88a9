#!/usr/bin/env python3
"""The Python half of benches/onnx.rs: rows per second through Python's
onnxruntime on the same models, rows and batch sizes, one intra-op thread.

    taskset -c 1 .venv/bin/python benches/onnx_python.py [--seconds 3] [--repeats 5] [--only MODEL/BATCH]

Each call is what a Python caller pays, the standard way:
session.run(None, {name: array}) on a float32 numpy array of the batch made
once beforehand, outputs returned as numpy; the session has the default
SessionOptions (every graph optimisation, memory arena and pattern on) but
for one intra-op and one inter-op thread. For every model and batch it
times back-to-back calls for --seconds, --repeats times, and prints the
median rows/s and the range.
"""

import argparse
import csv
import os
import statistics
import time

import numpy as np
import onnxruntime as ort

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODELS = [("linear", "data/linear.onnx"), ("transformer", "data/transformer.onnx")]
BATCHES = [1, 32, 1024]


def rows():
    with open(os.path.join(ROOT, "data/diabetes.csv"), newline="") as f:
        table = list(csv.reader(f))
    target = table[0].index("progression")
    data = [[float(v) for i, v in enumerate(r) if i != target] for r in table[1:] if r]
    cycled = [data[i % len(data)] for i in range(1024)]
    return np.asarray(cycled, dtype=np.float64).astype(np.float32)


def rate(session, name, batch, seconds):
    calls, started = 0, time.perf_counter()
    while True:
        for _ in range(64):
            session.run(None, {name: batch})
        calls += 64
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return calls * len(batch) / elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", help="one benchmark, e.g. transformer/32")
    args = parser.parse_args()
    table = rows()
    print(f"onnxruntime {ort.__version__}, numpy {np.__version__}, one intra-op thread, CPU")
    for model, path in MODELS:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(os.path.join(ROOT, path), options,
                                       providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for size in BATCHES:
            if args.only and args.only != f"{model}/{size}":
                continue
            batch = np.ascontiguousarray(table[:size])
            rate(session, name, batch, 0.5)  # warm up
            rates = [rate(session, name, batch, args.seconds) for _ in range(args.repeats)]
            print(f"python/{model}/{size}: {statistics.median(rates):,.0f} rows/s "
                  f"(range {min(rates):,.0f}-{max(rates):,.0f})")


if __name__ == "__main__":
    main()
