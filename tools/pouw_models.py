"""Models and data for training pouwd tasks offline with PyTorch.

CsvDataset reads the CSV files the node reads (data/*.csv) and splits and
standardises them exactly as the node does (schema/consensus.md, Data):
row r (0-based, header excluded) is holdout when
r % holdout_every == holdout_every - 1; every feature and the target are
standardised with the population mean and standard deviation of the
training rows, summed in file order in float64 (a constant column gets
std 1). The sums run in plain Python, in the node's order, so the
statistics are the node's to the last bit.

SimpleLinearRegression is the node's native `linear` model.

DynamicTransformer is a transformer over tabular features: each feature is
one token (its value times a learned vector, plus a learned per-feature
embedding), a stack of pre-norm encoder layers mixes the tokens, and the
mean of the tokens is the encoded row. `adjust_architecture` grows the
network when validation loss stops improving: it adds an attention head to
every layer, or a layer on top, and keeps every trained weight. A new head
starts with a zero output projection and a new layer with zero residual
branches, so the grown network computes exactly what it computed before
and training continues from there.

Exporting (export_onnx) writes graphs with one float32 input `features`
of shape [batch, d] and a dynamic batch axis, the shape `pouwd` checks.
"""

import csv
import math

import torch
from torch import nn

ONNX_OPSET = 18
INPUT_NAME = "features"


class CsvDataset(torch.utils.data.Dataset):
    """One split ("train" or "holdout") of a numeric CSV with a header row."""

    def __init__(self, path, target, features=None, holdout_every=5, split="train"):
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        header = [c.strip() for c in rows[0]]
        data = [[float(cell) for cell in row] for row in rows[1:] if row]
        if target not in header:
            raise ValueError(f"{path}: missing column {target!r}; the header has {header}")
        self.feature_names = list(features) if features else [c for c in header if c != target]
        self.target_name = target
        self.holdout_every = holdout_every
        cols = [header.index(n) for n in self.feature_names]
        tcol = header.index(target)

        def is_holdout(r):
            return holdout_every > 0 and r % holdout_every == holdout_every - 1

        train = [row for r, row in enumerate(data) if not is_holdout(r)]
        self.feature_scaling = [_scaling([row[c] for row in train]) for c in cols]
        self.target_scaling = _scaling([row[tcol] for row in train])
        chosen = [row for r, row in enumerate(data) if is_holdout(r) == (split == "holdout")]
        self.raw_x = torch.tensor([[row[c] for c in cols] for row in chosen], dtype=torch.float64)
        self.raw_y = torch.tensor([row[tcol] for row in chosen], dtype=torch.float64)
        x = [
            [(row[c] - m) / s for c, (m, s) in zip(cols, self.feature_scaling)]
            for row in chosen
        ]
        tm, ts = self.target_scaling
        self.x = torch.tensor(x, dtype=torch.float32)
        self.y = torch.tensor([(row[tcol] - tm) / ts for row in chosen], dtype=torch.float32)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]

    def features(self):
        return len(self.feature_names)


def _scaling(values):
    """Population mean and std in file order; std 1 for a constant column."""
    total = 0.0
    for v in values:
        total += v
    mean = total / len(values)
    squares = 0.0
    for v in values:
        d = v - mean
        squares += d * d
    std = math.sqrt(squares / len(values))
    return mean, (std if std > 0.0 else 1.0)


class SimpleLinearRegression(nn.Module):
    """y = x · w + b on standardised features."""

    def __init__(self, features):
        super().__init__()
        self.linear = nn.Linear(features, 1)

    def forward(self, x):
        return self.linear(x).squeeze(-1)


class Attention(nn.Module):
    """Multi-head self-attention with a fixed head width, so heads can be added."""

    def __init__(self, d_model, heads, head_dim):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.q = nn.Linear(d_model, heads * head_dim)
        self.k = nn.Linear(d_model, heads * head_dim)
        self.v = nn.Linear(d_model, heads * head_dim)
        self.out = nn.Linear(heads * head_dim, d_model)

    def forward(self, x):
        b, t, _ = x.shape
        split = lambda y: y.reshape(b, t, self.heads, self.head_dim).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.head_dim), dim=-1)
        mixed = (weights @ v).transpose(1, 2).reshape(b, t, self.heads * self.head_dim)
        return self.out(mixed)

    @torch.no_grad()
    def add_head(self):
        """One more head; the old heads' weights are kept and the new head's
        output projection is zero, so the layer's output does not change."""
        old, d_model = self.heads * self.head_dim, self.out.out_features
        new = (self.heads + 1) * self.head_dim
        for name in ("q", "k", "v"):
            layer, grown = getattr(self, name), nn.Linear(d_model, new)
            grown.weight[:old] = layer.weight
            grown.bias[:old] = layer.bias
            setattr(self, name, grown)
        grown = nn.Linear(new, d_model)
        grown.weight.zero_()
        grown.weight[:, :old] = self.out.weight
        grown.bias.copy_(self.out.bias)
        self.out = grown
        self.heads += 1


class EncoderLayer(nn.Module):
    """Pre-norm transformer layer: x + attn(norm(x)), then x + ffn(norm(x))."""

    def __init__(self, d_model, heads, head_dim, hidden):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attention = Attention(d_model, heads, head_dim)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, hidden), nn.GELU(), nn.Linear(hidden, d_model))

    def forward(self, x):
        x = x + self.attention(self.norm1(x))
        return x + self.ffn(self.norm2(x))

    @torch.no_grad()
    def make_identity(self):
        """Zero both residual branches: the layer passes its input through."""
        self.attention.out.weight.zero_()
        self.attention.out.bias.zero_()
        self.ffn[2].weight.zero_()
        self.ffn[2].bias.zero_()


class DynamicTransformer(nn.Module):
    """A transformer over tabular features, one token per feature."""

    def __init__(self, features, d_model=16, heads=1, head_dim=8, layers=1, hidden=32,
                 max_heads=4, max_layers=3):
        super().__init__()
        self.d_model, self.head_dim, self.hidden = d_model, head_dim, hidden
        self.max_heads, self.max_layers = max_heads, max_layers
        self.value_embedding = nn.Parameter(torch.randn(features, d_model) * 0.5)
        self.feature_embedding = nn.Parameter(torch.randn(features, d_model) * 0.1)
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, heads, head_dim, hidden) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, 1)

    def heads(self):
        return self.layers[0].attention.heads

    def describe(self):
        return f"{len(self.layers)} layer(s) x {self.heads()} head(s), d_model {self.d_model}"

    def encode(self, x):
        """[batch, features] -> [batch, d_model]: the encoded rows."""
        tokens = x.unsqueeze(-1) * self.value_embedding + self.feature_embedding
        for layer in self.layers:
            tokens = layer(tokens)
        return self.norm(tokens.mean(dim=1))

    def forward(self, x):
        return self.head(self.encode(x)).squeeze(-1)

    @torch.no_grad()
    def adjust_architecture(self):
        """Grow when training has stalled: a head per layer while under
        max_heads, else a layer while under max_layers. Returns what changed,
        or None when the network is at its largest. Trained weights are all
        kept and the function computed is unchanged."""
        if self.heads() < self.max_heads:
            for layer in self.layers:
                layer.attention.add_head()
            return f"added a head: {self.describe()}"
        if len(self.layers) < self.max_layers:
            layer = EncoderLayer(self.d_model, self.heads(), self.head_dim, self.hidden)
            layer.make_identity()
            self.layers.append(layer)
            return f"added a layer: {self.describe()}"
        return None


class Standardised(nn.Module):
    """Wrap a model on standardised rows into one on raw CSV values:
    raw features in, the target in its own units out ([batch, 1])."""

    def __init__(self, model, dataset):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor([m for m, _ in dataset.feature_scaling]))
        self.register_buffer("std", torch.tensor([s for _, s in dataset.feature_scaling]))
        self.target_mean, self.target_std = dataset.target_scaling

    def forward(self, features):
        z = (features - self.mean) / self.std
        return (self.model(z) * self.target_std + self.target_mean).unsqueeze(-1)


class Encoder(nn.Module):
    """The feature extractor of a DynamicTransformer: standardised rows in,
    encoded rows out ([batch, d_model])."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, features):
        return self.model.encode(features)


def export_onnx(module, features, path, output_name, metadata):
    """Export `module` with input `features` [batch, features] (dynamic
    batch) at ONNX_OPSET, one output, and `metadata` in metadata_props."""
    import onnx

    module.eval()
    example = torch.zeros(4, features)
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(
        module,
        (example,),
        input_names=[INPUT_NAME],
        output_names=[output_name],
        opset_version=ONNX_OPSET,
        dynamo=True,
        external_data=False,
        dynamic_shapes=({0: batch},),
    )
    model = program.model_proto
    model.producer_name = "pouwd tools"
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def r2_and_mse(predicted, actual):
    """R² and mean squared error, float64."""
    predicted, actual = predicted.double(), actual.double()
    mse = torch.mean((predicted - actual) ** 2).item()
    total = torch.sum((actual - actual.mean()) ** 2).item()
    residual = torch.sum((predicted - actual) ** 2).item()
    return 1.0 - residual / total, mse
