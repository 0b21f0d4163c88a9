#!/usr/bin/env python3
"""Train a DynamicTransformer on a CSV from data/ and export it to ONNX.

    .venv/bin/python tools/train_transformer.py [--csv data/diabetes.csv]
        [--target progression] [--holdout-every 5]
        [--out data/transformer.onnx] [--encoder-out data/transformer_encoder.onnx]

Trains on the training rows (standardised as the node does) with AdamW,
holding every fifth training row back for validation after every epoch;
the chain's holdout rows are used only for the final score. When
validation loss has
not improved for --patience epochs, `adjust_architecture` grows the network
(a head per layer, then a layer), keeping every trained weight. The best
network seen is exported at ONNX opset 18 (pouw_models.ONNX_OPSET) twice:

- --out: the full model, input `features` [batch, d] of raw CSV values (the
  CSV's columns without the target, in order), output `prediction`
  [batch, 1] in the target's units. `pouwd eval` runs it.
- --encoder-out: the encoder, input `features` [batch, d] of rows
  standardised as the node standardises them, output `embedding`
  [batch, d_model]: the frozen feature extractor of an `onnx_linear` task.

Reports R² and MSE on the holdout rows in the target's own units.
"""

import argparse
import copy

import torch

import pouw_models as pm


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", default="data/diabetes.csv")
    parser.add_argument("--target", default="progression")
    parser.add_argument("--holdout-every", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--patience", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="data/transformer.onnx")
    parser.add_argument("--encoder-out", default="data/transformer_encoder.onnx")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    train = pm.CsvDataset(args.csv, args.target, holdout_every=args.holdout_every, split="train")
    holdout = pm.CsvDataset(args.csv, args.target, holdout_every=args.holdout_every, split="holdout")
    fit = [i for i in range(len(train)) if i % 5 != 4]
    val = [i for i in range(len(train)) if i % 5 == 4]
    model = pm.DynamicTransformer(train.features())
    print(f"start: {model.describe()}; fitting {len(fit)} rows, validating on {len(val)}")
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(train, fit), batch_size=args.batch_size, shuffle=True,
        generator=torch.Generator().manual_seed(args.seed))

    def optimiser_for(m):
        return torch.optim.AdamW(m.parameters(), lr=args.learning_rate, weight_decay=1e-2)

    optimiser = optimiser_for(model)
    best_loss, best_model, since_best = float("inf"), copy.deepcopy(model), 0
    for epoch in range(args.epochs):
        model.train()
        for x, y in loader:
            optimiser.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            optimiser.step()
        model.eval()
        with torch.no_grad():
            val_loss = torch.nn.functional.mse_loss(model(train.x[val]), train.y[val]).item()
        if val_loss < best_loss - 1e-4:
            best_loss, best_model, since_best = val_loss, copy.deepcopy(model), 0
        else:
            since_best += 1
        if since_best >= args.patience:
            change = model.adjust_architecture()
            if change is None:
                print(f"epoch {epoch + 1}: validation loss stalled at the largest network; stopping")
                break
            print(f"epoch {epoch + 1}: validation loss stalled at {best_loss:.4f}; {change}")
            optimiser, since_best = optimiser_for(model), 0
        if (epoch + 1) % 25 == 0:
            print(f"epoch {epoch + 1}: validation loss {val_loss:.4f} (best {best_loss:.4f})")

    model = best_model
    model.eval()
    full = pm.Standardised(model, train)
    with torch.no_grad():
        predicted = full(holdout.raw_x.float()).squeeze(-1)
    r2, mse = pm.r2_and_mse(predicted, holdout.raw_y)
    print(f"best network: {model.describe()}")
    print(f"validation (holdout rows, {len(holdout)}): R² {r2:.4f}, MSE {mse:.2f}")
    common = {
        "pouwd.feature_names": ",".join(train.feature_names),
        "pouwd.target": args.target,
        "pouwd.holdout_every": args.holdout_every,
        "pouwd.architecture": model.describe(),
        "pouwd.holdout_r2": f"{r2:.6f}",
        "pouwd.holdout_mse": f"{mse:.6f}",
        "pouwd.trained_by": "tools/train_transformer.py",
    }
    pm.export_onnx(full, train.features(), args.out, "prediction",
                   {"pouwd.kind": "transformer", "pouwd.input": "raw", **common})
    print(f"wrote {args.out} (ONNX opset {pm.ONNX_OPSET})")
    pm.export_onnx(pm.Encoder(model), train.features(), args.encoder_out, "embedding",
                   {"pouwd.kind": "transformer-encoder", "pouwd.input": "standardised",
                    "pouwd.embedding_width": model.d_model, **common})
    print(f"wrote {args.encoder_out} (ONNX opset {pm.ONNX_OPSET})")


if __name__ == "__main__":
    main()
