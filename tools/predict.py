#!/usr/bin/env python3
"""Predict with a model written by `pouwd export-model`, outside the node.

Usage: tools/predict.py --model model.json --csv data/diabetes.csv [--out predictions.csv]

Reads the model JSON (weights, bias, feature names, normalisation), applies
it to every row of the CSV, and prints R² and MSE against the target column
when the CSV has it. Standard library only.
"""
import argparse
import csv
import json
import sys


def predict_row(model, row):
    norm = model["normalisation"]
    acc = model["bias"]
    for weight, feature in zip(model["weights"], norm["features"]):
        z = (float(row[feature["name"]]) - feature["mean"]) / feature["std"]
        acc += weight * z
    return acc * norm["target"]["std"] + norm["target"]["mean"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--csv", required=True)
    parser.add_argument("--out", help="write one prediction per row to this file")
    args = parser.parse_args()
    with open(args.model) as f:
        model = json.load(f)
    with open(args.csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"{args.csv}: no data rows")
    missing = [n for n in model["feature_names"] if n not in rows[0]]
    if missing:
        sys.exit(f"{args.csv}: missing feature columns {missing}")
    predictions = [predict_row(model, row) for row in rows]
    if args.out:
        with open(args.out, "w") as f:
            for p in predictions:
                f.write(f"{p!r}\n")
    target = model["target_name"]
    if target in rows[0]:
        ys = [float(row[target]) for row in rows]
        mean = sum(ys) / len(ys)
        sse = sum((p - y) ** 2 for p, y in zip(predictions, ys))
        sst = sum((y - mean) ** 2 for y in ys)
        print(f"rows={len(rows)} mse={sse / len(ys):.6f} r2={1 - sse / sst:.6f}")
    else:
        print(f"rows={len(rows)}")


if __name__ == "__main__":
    main()
