#!/usr/bin/env python3
"""Benchmark: whole-process time of `modelci train` vs a plain scikit-learn script.

Both processes read the same generated CSV, hold out ~25% of the rows, fit the same pipeline
(median imputation + standard scaling + HistGradientBoostingClassifier with the same parameters),
score the hold-out rows and save the model. modelci additionally validates the data, hashes it,
assigns rows by stable hash, computes all metrics, feature statistics, a smoke sample and the run
record, and writes everything atomically. The ratio modelci / plain is the overhead (goal <= 1.1).

The data size is chosen so that the plain run takes at least --min-seconds (default 30): if the first
plain run is shorter, the number of boosting iterations is scaled up and the plain run repeated.

    .venv/bin/python bench/train_bench.py [--rows 200000] [--features 20] [--max-iter 60] [--repeat 2] [--threads 1]

Prints a JSON result on stdout: wall-clock times (the goal is judged on these), CPU times of each
process tree (less sensitive to other load on a shared machine) and both ratios. Not run by the test
suite.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"

PLAIN = textwrap.dedent("""
    import json, sys, joblib, pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data, out, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    df = pd.read_csv(data)
    X = df[[c for c in df.columns if c.startswith("f")]]
    y = df["label"]
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=42)
    model = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                          HistGradientBoostingClassifier(**params))
    model.fit(X_tr, y_tr)
    acc = accuracy_score(y_te, model.predict(X_te))
    joblib.dump(model, out, compress=3)
    print(json.dumps({"accuracy": acc}))
""")


def generate(path: Path, rows: int, features: int, seed: int = 0) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features))
    w = rng.normal(size=(features, 4))
    nonlin = np.sin(3 * X[:, :4]) @ rng.normal(size=(4, 4))
    y = (X @ w + nonlin + rng.gumbel(size=(rows, 4))).argmax(1)
    df = pd.DataFrame(X.round(5), columns=[f"f{i:02d}" for i in range(features)])
    df.insert(0, "id", np.arange(1, rows + 1))
    df["label"] = np.array(["a", "b", "c", "d"])[y]
    df.to_csv(path, index=False)


def write_config(path: Path, features: int, params: dict) -> None:
    import yaml

    cfg = {
        "model": {"name": "bench", "major": 1},
        "data": {"files": ["data.csv"]},
        "task": "classification",
        "target": "label",
        "id_column": "id",
        "features": {"numeric": [f"f{i:02d}" for i in range(features)]},
        "preprocessing": {"numeric": {"impute": "median", "scale": "standard"}},
        "estimator": {"class": "sklearn.ensemble.HistGradientBoostingClassifier", "params": params},
        "holdout": {"fraction": 0.25},
        "seed": 42,
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


THREADS = "1"


def timed(cmd: list[str], cwd: Path) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the process and its children, stdout)."""
    env = dict(os.environ)
    # OpenMP/BLAS thread pools degrade erratically when other processes compete for the cores;
    # both sides run with the same fixed thread count (--threads)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = THREADS
    env.pop("MODELCI_CACHE_DIR", None)
    env.pop("FORCE_RETRAIN", None)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        sys.exit(f"train_bench: command failed ({proc.returncode}): {' '.join(cmd)}\n{stderr[-3000:]}")
    return elapsed, usage.ru_utime + usage.ru_stime, stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--features", type=int, default=20)
    ap.add_argument("--max-iter", type=int, default=60, help="boosting iterations (scaled up if too fast)")
    ap.add_argument("--min-seconds", type=float, default=30.0, help="minimum duration of the plain run")
    ap.add_argument("--repeat", type=int, default=2, help="runs per side, alternating; the fastest counts")
    ap.add_argument("--threads", type=int, default=1, help="OpenMP/BLAS threads for both runs")
    ap.add_argument("--keep", action="store_true", help="keep the working directory")
    args = ap.parse_args()
    global THREADS
    THREADS = str(args.threads)

    work = Path(tempfile.mkdtemp(prefix="modelci-train-bench-"))
    try:
        model = work / "model"
        model.mkdir()
        t = time.perf_counter()
        generate(model / "data.csv", args.rows, args.features)
        print(f"generated {args.rows} x {args.features} rows in {time.perf_counter() - t:.1f}s "
              f"({(model / 'data.csv').stat().st_size / 1e6:.0f} MB) in {work}", file=sys.stderr)
        (work / "plain.py").write_text(PLAIN)
        python = str(VENV_BIN / "python")
        modelci = str(VENV_BIN / "modelci")

        def params(max_iter: int) -> dict:
            return {"max_iter": max_iter, "early_stopping": False, "random_state": 42}

        max_iter = args.max_iter

        def plain_cmd() -> list[str]:
            return [python, "plain.py", "model/data.csv", "plain.joblib", json.dumps(params(max_iter))]

        plain_s, plain_cpu, _ = timed(plain_cmd(), work)
        print(f"plain run: {plain_s:.1f}s with max_iter={max_iter}", file=sys.stderr)
        for _ in range(4):  # calibrate: the plain run must take at least --min-seconds
            if plain_s >= args.min_seconds:
                break
            max_iter = int(max_iter * args.min_seconds / plain_s * 1.15) + 1
            plain_s, plain_cpu, _ = timed(plain_cmd(), work)
            print(f"plain run: {plain_s:.1f}s with max_iter={max_iter}", file=sys.stderr)
        write_config(model / "modelci.yml", args.features, params(max_iter))
        mc_cmd = [modelci, "train", "--config", "model/modelci.yml", "--out", "out"]

        # alternate the two so that changes in machine load hit both; the fastest run of each counts
        plain_runs, mc_runs = [(plain_s, plain_cpu)], []
        summary: dict = {}
        for i in range(args.repeat):
            if i:
                plain_runs.append(timed(plain_cmd(), work)[:2])
                print(f"plain run: {plain_runs[-1][0]:.1f}s", file=sys.stderr)
            s, cpu, out = timed(mc_cmd, work)
            mc_runs.append((s, cpu))
            summary = json.loads(out)
            print(f"modelci train: {s:.1f}s", file=sys.stderr)

        plain, mc = min(w for w, _ in plain_runs), min(w for w, _ in mc_runs)
        plain_c, mc_c = min(c for _, c in plain_runs), min(c for _, c in mc_runs)
        record = json.loads((work / "out" / "run.json").read_text())
        result = {
            "rows": args.rows, "features": args.features, "estimator": "HistGradientBoostingClassifier",
            "max_iter": max_iter, "plain_s": round(plain, 2), "modelci_s": round(mc, 2),
            "ratio": round(mc / plain, 3), "goal": 1.1, "goal_met": mc / plain <= 1.1,
            "plain_cpu_s": round(plain_c, 2), "modelci_cpu_s": round(mc_c, 2), "cpu_ratio": round(mc_c / plain_c, 3),
            "plain_runs_s": [round(w, 2) for w, _ in plain_runs], "modelci_runs_s": [round(w, 2) for w, _ in mc_runs],
            "threads": args.threads, "load_average": os.getloadavg(), "modelci_phases": record["durations"],
            "modelci_accuracy": summary["metrics"].get("accuracy"),
        }
        print(json.dumps(result, indent=2))
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
