#!/usr/bin/env python3
"""Train SimpleLinearRegression on a CSV from data/ and export it to ONNX.

    .venv/bin/python tools/train_linear.py [--csv data/diabetes.csv]
        [--target progression] [--holdout-every 5] [--out data/linear.onnx]

Trains on the training rows (standardised as the node does), reports R²
and MSE on the holdout rows in the target's own units, and exports the
full model at ONNX opset 18 (pouw_models.ONNX_OPSET): input `features`
[batch, d] of raw CSV values in the CSV's column order without the target,
output `prediction` [batch, 1] in the target's units. `pouwd eval` runs it.
"""

import argparse

import torch

import pouw_models as pm


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", default="data/diabetes.csv")
    parser.add_argument("--target", default="progression")
    parser.add_argument("--holdout-every", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=500)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="data/linear.onnx")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    train = pm.CsvDataset(args.csv, args.target, holdout_every=args.holdout_every, split="train")
    holdout = pm.CsvDataset(args.csv, args.target, holdout_every=args.holdout_every, split="holdout")
    model = pm.SimpleLinearRegression(train.features())
    optimiser = torch.optim.SGD(model.parameters(), lr=args.learning_rate)
    for epoch in range(args.epochs):
        model.train()
        optimiser.zero_grad()
        loss = torch.nn.functional.mse_loss(model(train.x), train.y)
        loss.backward()
        optimiser.step()
        if (epoch + 1) % 100 == 0:
            print(f"epoch {epoch + 1}: train loss {loss.item():.5f} (standardised units)")

    full = pm.Standardised(model, train)
    full.eval()
    with torch.no_grad():
        predicted = full(holdout.raw_x.float()).squeeze(-1)
    r2, mse = pm.r2_and_mse(predicted, holdout.raw_y)
    print(f"validation (holdout rows, {len(holdout)}): R² {r2:.4f}, MSE {mse:.2f}")
    pm.export_onnx(full, train.features(), args.out, "prediction", {
        "pouwd.kind": "linear",
        "pouwd.input": "raw",
        "pouwd.feature_names": ",".join(train.feature_names),
        "pouwd.target": args.target,
        "pouwd.holdout_every": args.holdout_every,
        "pouwd.holdout_r2": f"{r2:.6f}",
        "pouwd.holdout_mse": f"{mse:.6f}",
        "pouwd.trained_by": "tools/train_linear.py",
    })
    print(f"wrote {args.out} (ONNX opset {pm.ONNX_OPSET})")


if __name__ == "__main__":
    main()
