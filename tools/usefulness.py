#!/usr/bin/env python3
"""How useful is the chain's work? Compare its models with scikit-learn's.

For each data set (default: data/diabetes.csv, data/diamonds.csv,
data/boston.csv) this measures the R² on a held-back **test set** of

- the models a pouwd chain delivers for a training job on the rest of
  the rows (its linear model and its MLP; with the number of steps and
  blocks, the wall time, and the share of steps that improved the
  model), and
- three scikit-learn baselines trained on exactly the rows the chain
  trains on, with the chain's preprocessing: ordinary least squares
  (LinearRegression), a one-hidden-layer MLPRegressor and a
  HistGradientBoostingRegressor.

The chain side runs a regtest node of the pouwd binary (`--pouwd`,
default target/release/pouwd) and trains each data set as a `linear` and
an `mlp:H` job, as a user would; `--baselines-only` runs the rest.

Rows and splits (r counts data rows from 0, the header excluded):

- row r of the data set is a **test** row when r % 5 == 4
  (`--test-every`); test rows never go to the chain;
- the other rows, in file order and under the same header, are the
  job's CSV (a temporary file; `--keep-job-csv DIR` keeps it);
- inside the job the chain holds back row j of the job's CSV when
  j % holdout_every == holdout_every - 1 (`--holdout-every`, default 5,
  the chain's `task.holdout_every`) as its validation rows and trains on
  the others; the baselines train on those same **training** rows only.

Preprocessing, as the chain does it, fitted on the training rows only:

- a column is **text** when any of its cells is not a number (numbers
  as Rust's `f64::from_str` reads them; cells trimmed like the chain's
  CSV reader does); text feature columns are one-hot encoded in place,
  one indicator per distinct value of the training rows in sorted
  (code point) order; a value not seen in training rows gets all zeros;
- every feature (indicators included) and the target are standardised
  with the mean and the population standard deviation of the training
  rows (a standard deviation of 0 is replaced by 1).

R² is reported on the original scale of the target (predictions mapped
back through the target's mean and std). R² is invariant under that
affine map — residuals and deviations from the mean both scale by std —
so it equals the R² on the standardised target; the script checks that.

Run (the packages of tools/requirements-usefulness.txt):

    python3 -m venv /tmp/uvenv
    /tmp/uvenv/bin/pip install -r tools/requirements-usefulness.txt
    /tmp/uvenv/bin/python tools/usefulness.py --baselines-only \\
        [--dataset PATH:TARGET ...] [--json results.json]

It prints one Markdown table row per data set (the header once) and, with
`--json`, writes every figure with the settings used. Without
`--baselines-only` the chain side is required and the script stops with
its error.
"""

import argparse
import csv
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

DEFAULT_DATASETS = [
    ("data/diabetes.csv", "progression"),
    ("data/diamonds.csv", "price"),
    ("data/boston.csv", "medv"),
]

# A job's CSV travels inside one block.
MAX_JOB_CSV_BYTES = 900_000

# What Rust's f64::from_str accepts, less inf/NaN (which the chain refuses).
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_NON_FINITE = re.compile(r"[+-]?(?:inf|infinity|nan)\Z", re.IGNORECASE)

CHAIN_UNAVAILABLE = "chain jobs are not available in this pouwd"


# ---------------------------------------------------------------- data


class Table:
    """A CSV file as the chain reads it: header, trimmed string cells."""

    def __init__(self, path):
        self.path = path
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [[c.strip() for c in row] for row in csv.reader(f) if row]
        if len(rows) < 2:
            raise SystemExit(f"{path}: needs a header row and data rows")
        self.columns = rows[0]
        if len(set(self.columns)) != len(self.columns):
            raise SystemExit(f"{path}: duplicate column names")
        self.rows = rows[1:]
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise SystemExit(
                    f"{path}: data row {i}: {len(row)} cells, header has {len(self.columns)}"
                )
        self.text = [self._is_text(j) for j in range(len(self.columns))]

    def _is_text(self, j):
        text = False
        for i, row in enumerate(self.rows):
            cell = row[j]
            if _NON_FINITE.match(cell):
                raise SystemExit(f"{self.path}: data row {i}, column {self.columns[j]}: {cell}")
            if not _NUMBER.match(cell):
                if cell == "":
                    raise SystemExit(
                        f"{self.path}: data row {i}, column {self.columns[j]}: empty cell"
                    )
                text = True
        return text


def split_rows(n, test_every, holdout_every):
    """Row indices of the data set: (train, chain holdout, test).

    Test rows: r % test_every == test_every - 1. The others form the
    job's CSV; its row j is a chain holdout row when
    j % holdout_every == holdout_every - 1, otherwise a training row.
    """
    job = [r for r in range(n) if r % test_every != test_every - 1]
    test = [r for r in range(n) if r % test_every == test_every - 1]
    train = [r for j, r in enumerate(job) if j % holdout_every != holdout_every - 1]
    holdout = [r for j, r in enumerate(job) if j % holdout_every == holdout_every - 1]
    return job, train, holdout, test


def write_job_csv(table, job_rows, path):
    """The job's CSV: the header and the job rows, cells as read."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(table.columns)
        for r in job_rows:
            writer.writerow(table.rows[r])
    return os.path.getsize(path)


class Preprocessor:
    """One-hot and standardisation, fitted on the training rows."""

    def __init__(self, table, target, train_rows):
        if target not in table.columns:
            raise SystemExit(f"{table.path}: no column {target!r}; header: {table.columns}")
        self.target_index = table.columns.index(target)
        if table.text[self.target_index]:
            raise SystemExit(f"{table.path}: target {target!r} is not numeric")
        self.table = table
        # (column index, None) for a number, (column index, categories) for text
        self.plan = []
        self.feature_names = []
        for j, name in enumerate(table.columns):
            if j == self.target_index:
                continue
            if table.text[j]:
                cats = sorted({table.rows[r][j] for r in train_rows})
                self.plan.append((j, cats))
                self.feature_names += [f"{name}={c}" for c in cats]
            else:
                self.plan.append((j, None))
                self.feature_names.append(name)
        raw_x, raw_y = self._raw(train_rows)
        self.x_mean, self.x_std = _population_stats(raw_x)
        y_mean, y_std = _population_stats(raw_y[:, None])
        self.y_mean, self.y_std = float(y_mean[0]), float(y_std[0])

    def _raw(self, rows):
        x = np.zeros((len(rows), len(self.feature_names)))
        col = 0
        for j, cats in self.plan:
            if cats is None:
                x[:, col] = [float(self.table.rows[r][j]) for r in rows]
                col += 1
            else:
                index = {c: k for k, c in enumerate(cats)}
                for i, r in enumerate(rows):
                    k = index.get(self.table.rows[r][j])
                    if k is not None:  # unseen value: all indicators stay 0
                        x[i, col + k] = 1.0
                col += len(cats)
        y = np.array([float(self.table.rows[r][self.target_index]) for r in rows])
        return x, y

    def transform(self, rows):
        """Standardised features and target, and the raw target."""
        x, y = self._raw(rows)
        return (x - self.x_mean) / self.x_std, (y - self.y_mean) / self.y_std, y

    def unscale(self, y_std_units):
        return y_std_units * self.y_std + self.y_mean


def _population_stats(a):
    mean = a.mean(axis=0)
    std = np.sqrt(((a - mean) ** 2).mean(axis=0))
    std[std == 0] = 1.0
    return mean, std


def r2(actual, predicted):
    actual = np.asarray(actual, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    total = ((actual - actual.mean()) ** 2).sum()
    residual = ((actual - predicted) ** 2).sum()
    return 1.0 - residual / total if total > 0 else float("nan")


# ----------------------------------------------------- scikit-learn side


def baseline_models(args):
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import LinearRegression
    from sklearn.neural_network import MLPRegressor

    return {
        "ols": LinearRegression(),
        "mlp": MLPRegressor(
            hidden_layer_sizes=(args.hidden,),
            activation="relu",
            solver="adam",
            max_iter=args.mlp_max_iter,
            early_stopping=True,
            validation_fraction=0.1,
            n_iter_no_change=20,
            random_state=args.seed,
        ),
        "hgb": HistGradientBoostingRegressor(random_state=args.seed),
    }


def run_baselines(prep, train_rows, holdout_rows, test_rows, args):
    x_train, y_train, _ = prep.transform(train_rows)
    x_hold, y_hold_s, y_hold = prep.transform(holdout_rows)
    x_test, y_test_s, y_test = prep.transform(test_rows)
    results = {}
    for name, model in baseline_models(args).items():
        start = time.perf_counter()
        model.fit(x_train, y_train)
        fit_s = time.perf_counter() - start
        pred_test_s = model.predict(x_test)
        test_r2 = r2(y_test, prep.unscale(pred_test_s))
        # R² is invariant under the target's affine standardisation.
        assert math.isclose(test_r2, r2(y_test_s, pred_test_s), rel_tol=1e-9, abs_tol=1e-9)
        entry = {
            "test_r2": test_r2,
            "holdout_r2": r2(y_hold, prep.unscale(model.predict(x_hold))),
            "train_r2": r2(y_train, model.predict(x_train)),
            "fit_s": fit_s,
        }
        if name == "mlp":
            entry["iterations"] = int(model.n_iter_)
        results[name] = entry
    return results


# ------------------------------------------------------------ chain side


class ChainNode:
    """A regtest node of the pouwd binary mining in a temporary data dir,
    with its API on a free loopback port; stopped on exit."""

    def __init__(self, pouwd, keep_dir=None):
        self.pouwd = pouwd
        self.dir = keep_dir or tempfile.mkdtemp(prefix="usefulness-node-")
        self.proc = None
        self.log = None

    def __enter__(self):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.api = f"http://127.0.0.1:{port}"
        self.log = open(os.path.join(self.dir, "node.log"), "w")
        self.proc = subprocess.Popen(
            [self.pouwd, "start", "--data-dir", os.path.join(self.dir, "data"),
             "--chain", "regtest", "--mine", "--listen", "127.0.0.1:0",
             "--api", f"127.0.0.1:{port}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        # Mining pays only after validation_window (10) blocks: wait until
        # the first reward is spendable.
        self.wait(lambda: (self.get("/status") or {}).get("height", 0) >= 12, 120,
                  "the node's first rewards")
        return self

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.log:
            self.log.close()

    def get(self, path):
        import urllib.request

        try:
            with urllib.request.urlopen(self.api + path, timeout=10) as r:
                return json.load(r)
        except OSError:
            return None

    def wait(self, ready, timeout_s, what):
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the node stopped while waiting for {what}; see {self.dir}/node.log")
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"timed out after {timeout_s} s waiting for {what}")

    def run(self, *args):
        out = subprocess.run([self.pouwd, *args], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"pouwd {' '.join(args)} failed: {out.stderr.strip()}")
        return out.stdout

    def submit(self, job_csv, target, holdout_every, head, settings):
        """`pouwd job submit`; returns the job id."""
        out = self.run("job", "submit", "--data-dir", os.path.join(self.dir, "data"),
                       "--dataset", job_csv, "--target", target, "--head", head,
                       "--holdout-every", str(holdout_every),
                       *[str(a) for kv in settings.items() for a in (f"--{kv[0]}", kv[1])])
        return out.strip().splitlines()[-1].strip()

    def follow(self, job_ids, timeout_s=3600):
        """Poll the jobs until all have ended; return each one's JSON and
        its training time (from the poll that first saw it active, or
        queued behind nothing, to the one that saw it ended)."""
        began, ended = {}, {}
        deadline = time.time() + timeout_s
        while len(ended) < len(job_ids):
            if time.time() > deadline:
                raise RuntimeError(f"jobs {job_ids} did not end within {timeout_s} s")
            if self.proc.poll() is not None:
                raise RuntimeError(f"the node stopped; see {self.dir}/node.log")
            now = time.time()
            for job_id in job_ids:
                state = (self.get(f"/jobs/{job_id}") or {}).get("state")
                if state in ("active", "ended") and job_id not in began:
                    began[job_id] = now
                if state == "ended" and job_id not in ended:
                    ended[job_id] = now
            time.sleep(0.2)
        out = {}
        for job_id in job_ids:
            job = self.get(f"/jobs/{job_id}")
            blocks = [self.get(f"/blocks/{p['hash']}") for p in job["curve"]]
            steps = sum(b["steps"] for b in blocks)
            # The chain's own clock: from the block before the job's first
            # to its last.
            before = self.get(f"/blocks/{blocks[0]['height'] - 1}")
            chain_s = (blocks[-1]["timestamp_ms"] - before["timestamp_ms"]) / 1000
            best, improving = -1, 0
            for point in job["curve"]:
                if point["score_ppm"] > best:
                    best = point["score_ppm"]
                    improving += 1
            out[job_id] = {"job": job_id, "wall_s": chain_s,
                           "steps": steps, "blocks": job["blocks"],
                           "improving_share": improving / max(1, job["blocks"]),
                           "end_reason": job.get("end_reason"),
                           "best_score_ppm": job.get("best_score_ppm")}
        return out

    def export(self, job_id):
        """`pouwd export-model --job` of a stopped node."""
        model = os.path.join(self.dir, f"{job_id[:16]}.onnx")
        self.run("export-model", "--data-dir", os.path.join(self.dir, "data"), "--job", job_id,
                 "--format", "onnx", "--out", model)
        return model


# Job settings per head. A regtest block takes about 200 linear steps
# (fewer for dearer heads: the ticket target scales by the step's cost),
# so the learning rate halves after `lr-half-life-blocks` blocks.
LINEAR_JOB = {"batch-size": 64, "learning-rate": 0.05, "lr-half-life-blocks": 10,
              "max-blocks": 5000, "patience": 1000, "min-improvement-ppm": 1, "bounty": "1"}
MLP_JOB = {"batch-size": 32, "learning-rate": 0.02, "lr-half-life-blocks": 1000,
           "max-blocks": 20000, "patience": 1000, "min-improvement-ppm": 1, "bounty": "1"}


def run_chain_job(job_csv, test_csv, target, holdout_every, args):
    """Train `job_csv` as a `linear` and an `mlp:H` job on a fresh regtest
    node, as a user would (`pouwd job submit`, `GET /jobs/ID` until the
    end, then `pouwd export-model --job ID --format onnx` once the node is
    stopped), and score each delivered model on `test_csv` with
    `pouwd eval`."""
    pouwd = args.pouwd
    if not os.path.exists(pouwd):
        raise RuntimeError(CHAIN_UNAVAILABLE + f" ({pouwd} does not exist: build it with cargo build --release)")
    heads = (("linear", "linear", LINEAR_JOB), ("mlp", f"mlp:{args.hidden}", MLP_JOB))
    node = ChainNode(pouwd)
    with node:
        ids = {name: node.submit(job_csv, target, holdout_every, head, settings)
               for name, head, settings in heads}
        followed = node.follow(list(ids.values()))
    out = {}
    for name, job_id in ids.items():
        trained = followed[job_id]
        model = node.export(job_id)
        text = node.run("eval", "--model", model, "--dataset", test_csv, "--target", target)
        r2_line = [line for line in text.splitlines() if line.startswith("R²:")]
        trained["test_r2"] = float(r2_line[0].split()[1])
        out[name] = trained
    return out


def score_chain(chain):
    """The chain's figures: its models' R² on the test rows, and what the
    jobs took."""
    return {
        "linear_r2": chain["linear"]["test_r2"],
        "mlp_r2": chain["mlp"]["test_r2"],
        "steps": [chain["linear"]["steps"], chain["mlp"]["steps"]],
        "blocks": [chain["linear"]["blocks"], chain["mlp"]["blocks"]],
        "wall_s": [round(chain["linear"]["wall_s"], 1), round(chain["mlp"]["wall_s"], 1)],
        "improving_share": [round(chain["linear"]["improving_share"], 3),
                            round(chain["mlp"]["improving_share"], 3)],
        "jobs": chain,
    }


# ------------------------------------------------------------------ main


COLUMNS = [
    "dataset",
    "rows train/val/test",
    "features",
    "OLS R²",
    "MLP R²",
    "HGB R²",
    "chain linear R²",
    "chain MLP R²",
    "steps",
    "blocks",
    "wall s",
    "improving share",
]


def fmt(value, digits=4):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table_row(result):
    b = result["baselines"]
    c = result.get("chain") or {}
    return [
        result["dataset"],
        "/".join(str(result["rows"][k]) for k in ("train", "holdout", "test")),
        str(result["features"]),
        fmt(b["ols"]["test_r2"]),
        fmt(b["mlp"]["test_r2"]),
        fmt(b["hgb"]["test_r2"]),
        fmt(c.get("linear_r2")),
        fmt(c.get("mlp_r2")),
        pair(c.get("steps")),
        pair(c.get("blocks")),
        pair(c.get("wall_s")),
        pair(c.get("improving_share")),
    ]


def pair(values):
    """`linear / mlp` figures of the chain's two jobs."""
    if values is None:
        return ""
    return " / ".join(str(v) for v in values)


def markdown_line(cells):
    return "| " + " | ".join(cells) + " |"


def parse_dataset(spec):
    path, sep, target = spec.rpartition(":")
    if not sep or not path or not target:
        raise argparse.ArgumentTypeError(f"expected PATH:TARGET, got {spec!r}")
    return path, target


def evaluate(path, target, args):
    table = Table(path if os.path.isabs(path) else os.path.join(REPO, path))
    name = os.path.splitext(os.path.basename(path))[0]
    job, train, holdout, test = split_rows(len(table.rows), args.test_every, args.holdout_every)
    if len(train) < 2 or len(holdout) < 2 or len(test) < 2:
        raise SystemExit(f"{path}: too few rows for these splits")
    prep = Preprocessor(table, target, train)

    job_dir = args.keep_job_csv or tempfile.mkdtemp(prefix="usefulness-")
    os.makedirs(job_dir, exist_ok=True)
    job_csv = os.path.join(job_dir, f"{name}.job.csv")
    job_bytes = write_job_csv(table, job, job_csv)
    if job_bytes > MAX_JOB_CSV_BYTES:
        print(
            f"warning: {job_csv} is {job_bytes} bytes, over the {MAX_JOB_CSV_BYTES} of one block",
            file=sys.stderr,
        )

    result = {
        "dataset": name,
        "file": path,
        "target": target,
        "text_columns": [c for c, t in zip(table.columns, table.text) if t and c != target],
        "rows": {"all": len(table.rows), "job": len(job), "train": len(train),
                 "holdout": len(holdout), "test": len(test)},
        "features": len(prep.feature_names),
        "job_csv_bytes": job_bytes,
        "chain": None,
    }
    test_csv = os.path.join(job_dir, f"{name}.test.csv")
    write_job_csv(table, test, test_csv)
    try:
        if not args.baselines_only:
            chain = run_chain_job(job_csv, test_csv, target, args.holdout_every, args)
            result["chain"] = score_chain(chain)
    finally:
        if not args.keep_job_csv:
            os.remove(job_csv)
            os.remove(test_csv)
            os.rmdir(job_dir)
    result["baselines"] = run_baselines(prep, train, holdout, test, args)
    return result


def versions():
    import sklearn

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "machine": f"{platform.machine()}, {platform.system()} {platform.release()}, "
        f"{os.cpu_count()} CPUs",
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Compare the chain's models with scikit-learn baselines on held-back rows.",
        epilog="See the module docstring for the splits and the preprocessing.",
    )
    parser.add_argument("--dataset", action="append", type=parse_dataset, metavar="PATH:TARGET",
                        help="a CSV (relative to the repository or absolute) and its target "
                             "column; repeatable (default: diabetes, diamonds and boston in data/)")
    parser.add_argument("--baselines-only", action="store_true",
                        help="run the scikit-learn side only, without a chain")
    parser.add_argument("--holdout-every", type=int, default=5,
                        help="the chain's task.holdout_every (default 5)")
    parser.add_argument("--test-every", type=int, default=5,
                        help="row r is a test row when r %% N == N-1 (default 5)")
    parser.add_argument("--hidden", type=int, default=32,
                        help="hidden units of the baseline MLP (default 32)")
    parser.add_argument("--mlp-max-iter", type=int, default=1000,
                        help="epoch limit of the baseline MLP; it stops early on a 10%% "
                             "validation split after 20 epochs without improvement")
    parser.add_argument("--seed", type=int, default=0,
                        help="random_state of the MLP and the gradient boosting (default 0)")
    parser.add_argument("--keep-job-csv", metavar="DIR",
                        help="write the jobs' CSVs into DIR and keep them")
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON to OUT")
    parser.add_argument("--pouwd", default=os.path.join(REPO, "target", "release", "pouwd"),
                        help="the pouwd binary (default target/release/pouwd)")
    args = parser.parse_args(argv)
    if args.holdout_every < 2 or args.test_every < 2:
        parser.error("--holdout-every and --test-every must be at least 2")

    datasets = args.dataset or DEFAULT_DATASETS
    print(markdown_line(COLUMNS))
    print(markdown_line(["---"] * len(COLUMNS)))
    results = []
    for path, target in datasets:
        try:
            result = evaluate(path, target, args)
        except RuntimeError as e:
            if str(e) == CHAIN_UNAVAILABLE:
                print(f"error: {e}; run with --baselines-only", file=sys.stderr)
                return 2
            raise
        results.append(result)
        print(markdown_line(table_row(result)), flush=True)

    if args.json:
        report = {
            "settings": {
                "test_every": args.test_every,
                "holdout_every": args.holdout_every,
                "hidden": args.hidden,
                "mlp_max_iter": args.mlp_max_iter,
                "seed": args.seed,
                "baselines_only": args.baselines_only,
            },
            "versions": versions(),
            "results": results,
        }
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
