#!/usr/bin/env python3
"""Predict with a model written by `pouwd export-model`, outside the node.

Usage: tools/predict.py --model model.json --csv data/diabetes.csv [--out predictions.csv]

Reads the model JSON (weights, bias, feature names, normalisation), applies
it to every row of the CSV, and prints R² and MSE against the target column
when the CSV has it. A feature with a "category" is one column of a one-hot
encoded text column: 1.0 when the row's cell equals the category, else 0.0
(a value the chain's training rows never had is all zeros). Cells are
trimmed as the node trims them. Standard library only.

Only a `linear` model ("kind": "linear") is computed here: an `onnx_linear`
model's weights apply to its ONNX encoder's outputs, and an `mlp` model has
a hidden layer; for those, export the ONNX graph (`pouwd export-model
--format onnx`) and run it with `pouwd eval` or tools/onnx_predict.py.
"""
import argparse
import csv
import json
import sys


# Unicode White_Space, which the node (Rust's str::trim) strips from every
# cell; Python's str.strip() would also strip \x1c-\x1f.
WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000"
)


def column_of(feature):
    """The CSV column a feature reads (models exported before text columns
    name it by "name" alone)."""
    return feature.get("column", feature["name"])


def raw_value(feature, row):
    cell = row[column_of(feature)].strip(WHITESPACE)
    if "category" in feature:
        return 1.0 if cell == feature["category"] else 0.0
    return float(cell)


def predict_row(model, row):
    norm = model["normalisation"]
    acc = model["bias"]
    for weight, feature in zip(model["weights"], norm["features"]):
        z = (raw_value(feature, row) - feature["mean"]) / feature["std"]
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
    kind = model.get("kind", "linear")
    if kind != "linear" or "encoder" in model:
        sys.exit(
            f"{args.model}: a model of kind {kind!r}; this script computes only 'linear' "
            "models. Export the ONNX graph (pouwd export-model --format onnx) and score "
            "it with pouwd eval or tools/onnx_predict.py"
        )
    with open(args.csv, newline="", encoding="utf-8-sig") as f:
        rows = [
            {(name.strip(WHITESPACE) if name else name): cell for name, cell in row.items()}
            for row in csv.DictReader(f)
        ]
    if not rows:
        sys.exit(f"{args.csv}: no data rows")
    columns = [column_of(f) for f in model["normalisation"]["features"]]
    missing = sorted({c for c in columns if c not in rows[0]})
    if missing:
        sys.exit(f"{args.csv}: missing feature columns {missing}")
    predictions = [predict_row(model, row) for row in rows]
    if args.out:
        with open(args.out, "w") as f:
            for p in predictions:
                f.write(f"{p!r}\n")
    target = model["target_name"]
    if target in rows[0]:
        ys = [float(row[target].strip(WHITESPACE)) for row in rows]
        mean = sum(ys) / len(ys)
        sse = sum((p - y) ** 2 for p, y in zip(predictions, ys))
        sst = sum((y - mean) ** 2 for y in ys)
        print(f"rows={len(rows)} mse={sse / len(ys):.6f} r2={1 - sse / sst:.6f}")
    else:
        print(f"rows={len(rows)}")


if __name__ == "__main__":
    main()
