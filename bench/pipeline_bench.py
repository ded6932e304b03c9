#!/usr/bin/env python3
"""Benchmark: 1-row predict time of the pipelines modelci builds vs hand-built scikit-learn pipelines.

Data: the consumer repository's product catalogue (tests/consumer/model: `nome` + `descricao` ->
`categoria`, Portuguese) plus a seeded synthetic catalogue of --rows rows generated here from the
same vocabulary (deterministic: same --seed, same rows). Config: the consumer's modelci.yml (its text
options, stop words and estimator), trained by modelci's own training code.

Two layouts, each against a hand-built pipeline with the same layout, the same vectorizer options
and the same estimator, fitted on the same training rows:

  per-column  features.text: [nome, descricao]
              vs make_pipeline(make_column_transformer((TfidfVectorizer(..), "nome"),
                                                       (TfidfVectorizer(..), "descricao")), estimator)
  combined    features.text: [{name: texto, columns: [nome, descricao]}]
              vs make_pipeline(FunctionTransformer(join), TfidfVectorizer(..), estimator), join being
              either pandas (X.nome.fillna("") + " " + X.descricao.fillna(""), the usual idiom) or a
              plain Python loop over the rows (the fastest join we know)

Each pipeline predicts one row (a DataFrame of the raw columns, object dtype, as the serving app
builds it); timings alternate between the pipelines in rounds so that load on a shared machine hits
all of them alike, and both this thread's CPU time (the figure to judge on a busy machine) and
wall-clock time are recorded. Printed: the median per-call times of each and the ratios modelci /
hand-built (goal <= 1.3), plus a JSON line with everything (`--json FILE` writes it too).

    .venv/bin/python bench/pipeline_bench.py [--rows 4000] [--rounds 40] [--calls 50] [--seed 2026]

Not run by the test suite.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
CONSUMER = ROOT / "tests" / "consumer" / "model"

ADJECTIVES = ["novo", "premium", "compacto", "profissional", "portátil", "resistente", "leve", "clássico",
              "moderno", "econômico", "infantil", "grande", "pequeno", "original", "importado", "nacional"]
BRANDS = ["Aurora", "Brisa", "Cometa", "Delta", "Estrela", "Fênix", "Gaivota", "Horizonte", "Ipê", "Jade"]
FILLERS = ["com", "para", "de", "e", "em", "sem", "até", "por"]


def synthetic_catalogue(base: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """`rows` products whose words come from the consumer catalogue's rows of the same category,
    mixed with brands, adjectives and a little vocabulary from other categories (so it is not
    trivially separable). Deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    cats = sorted(base["categoria"].unique())
    words = {c: sorted({w for t in base.loc[base["categoria"] == c, ["nome", "descricao"]].to_numpy().ravel()
                        for w in str(t).split() if len(w) > 2}) for c in cats}
    every = sorted({w for ws in words.values() for w in ws})
    out = []
    for i in range(rows):
        cat = cats[i % len(cats)]
        own = words[cat]
        name = " ".join([str(rng.choice(own)).capitalize(), str(rng.choice(own)), str(rng.choice(ADJECTIVES)),
                         str(rng.choice(BRANDS))])
        desc_words = [str(rng.choice(own)) if rng.random() < 0.7 else str(rng.choice(every))
                      for _ in range(int(rng.integers(6, 16)))]
        desc = " ".join(w if j % 3 else f"{w} {rng.choice(FILLERS)}" for j, w in enumerate(desc_words))
        out.append({"id": 100000 + i, "nome": name, "descricao": desc.capitalize(), "categoria": cat})
    return pd.DataFrame(out)


def project(tmp: Path, rows: int, seed: int, text: list[Any]) -> Path:
    """A copy of the consumer's model directory with the extra rows and the given features.text."""
    d = tmp / ("combined" if isinstance(text[0], dict) else "per_column")
    shutil.copytree(CONSUMER, d)
    base = pd.read_csv(CONSUMER / "data" / "produtos.csv")
    frame = pd.concat([base, synthetic_catalogue(base, rows, seed)], ignore_index=True)
    frame.to_csv(d / "data" / "catalogue.csv", index=False)
    cfg = yaml.safe_load((d / "modelci.yml").read_text(encoding="utf-8"))
    cfg["data"]["files"] = ["data/catalogue.csv"]
    cfg["features"] = {"text": text}
    (d / "modelci.yml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return d / "modelci.yml"


def train_modelci(config_path: Path) -> tuple[Any, dict[str, Any], pd.DataFrame, pd.Series]:
    from modelci import training
    from modelci.config import load_config
    from modelci.data import load_dataset, split_dataset, xy

    config = load_config(config_path)
    ds = load_dataset(config)
    result = training.train(config, ds)
    train_df, _, _ = split_dataset(config, ds)
    X, y = xy(config, train_df)
    return result.model, config, X, y


def hand_built(config: dict[str, Any], layout: str, join: str = "pandas") -> Any:
    """The same vectorizer options and estimator, assembled by hand the usual scikit-learn way."""
    from sklearn.compose import make_column_transformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    from modelci.config import import_object
    from modelci.training import stop_words

    opt = config["preprocessing"]["text"]

    def vec() -> Any:
        return TfidfVectorizer(lowercase=opt["lowercase"], strip_accents=opt["strip_accents"],
                               token_pattern=opt["token_pattern"], stop_words=stop_words(config),
                               ngram_range=tuple(opt["ngram_range"]), analyzer=opt["analyzer"],
                               min_df=opt["min_df"], max_df=opt["max_df"], max_features=opt["max_features"],
                               sublinear_tf=opt["sublinear_tf"], binary=opt["binary"])

    est = import_object(config["estimator"]["class"])(**config["estimator"]["params"])
    if layout == "per_column":
        return make_pipeline(make_column_transformer((vec(), "nome"), (vec(), "descricao")), est)
    if join == "pandas":
        joiner = FunctionTransformer(lambda X: X["nome"].fillna("") + " " + X["descricao"].fillna(""))
    else:
        joiner = FunctionTransformer(lambda X: [f"{a if isinstance(a, str) else ''} "
                                                f"{b if isinstance(b, str) else ''}"
                                                for a, b in zip(X["nome"], X["descricao"])])
    return make_pipeline(joiner, vec(), est)


def time_rounds(models: dict[str, Any], row: pd.DataFrame, rounds: int, calls: int) -> dict[str, dict[str, float]]:
    """Per pipeline, the median over rounds of the mean per-call time in microseconds: "cpu" (this
    thread's CPU time, insensitive to other processes on a shared machine) and "wall". Pipelines
    alternate every round, so that any remaining drift hits all of them alike."""
    for m in models.values():  # warm-up
        for _ in range(20):
            m.predict(row)
    cpu: dict[str, list[float]] = {k: [] for k in models}
    wall: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for name, m in models.items():
            c0, t0 = time.thread_time(), time.perf_counter()
            for _ in range(calls):
                m.predict(row)
            cpu[name].append((time.thread_time() - c0) / calls * 1e6)
            wall[name].append((time.perf_counter() - t0) / calls * 1e6)
    return {k: {"cpu": statistics.median(cpu[k]), "wall": statistics.median(wall[k])} for k in models}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000, help="synthetic catalogue rows (default 4000)")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the synthetic catalogue")
    parser.add_argument("--rounds", type=int, default=40, help="timing rounds (median taken)")
    parser.add_argument("--calls", type=int, default=50, help="1-row predict calls per round")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)

    import contextlib
    import io

    result: dict[str, Any] = {"rows": args.rows, "seed": args.seed, "rounds": args.rounds, "calls": args.calls,
                              "layouts": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for layout, text in (("per_column", ["nome", "descricao"]),
                             ("combined", [{"name": "texto", "columns": ["nome", "descricao"]}])):
            with contextlib.redirect_stderr(io.StringIO()):  # training progress
                model, config, X, y = train_modelci(project(Path(tmp), args.rows, args.seed, text))
            hands = {"hand_built": hand_built(config, layout)}
            if layout == "combined":
                hands["hand_built_python_join"] = hand_built(config, layout, join="python")
            for h in hands.values():
                h.fit(X, y)
            row = X.iloc[[len(X) // 2]].reset_index(drop=True).astype(object)
            preds = {k: m.predict(X.iloc[:500]).tolist() for k, m in {"modelci": model, **hands}.items()}
            same = all(p == preds["modelci"] for p in preds.values())
            times = time_rounds({"modelci": model, **hands}, row, args.rounds, args.calls)
            ratios = {k: {m: times["modelci"][m] / times[k][m] for m in ("cpu", "wall")} for k in hands}
            result["layouts"][layout] = {"train_rows": len(X), "median_us": times, "ratio": ratios,
                                         "same_predictions": same}
            print(f"{layout:10s} train rows {len(X)}; median 1-row predict (CPU/wall us): "
                  + ", ".join(f"{k} {v['cpu']:.0f}/{v['wall']:.0f}" for k, v in times.items())
                  + "; ratio (CPU/wall) " + ", ".join(f"modelci/{k} {v['cpu']:.2f}/{v['wall']:.2f}"
                                                     for k, v in ratios.items())
                  + f" (goal <= 1.3); same predictions on 500 rows: {same}")
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
