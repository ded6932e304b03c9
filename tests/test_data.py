"""Data validation (one-line errors, exit 1, nothing written) and the stable train/hold-out split."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fixtures.trainkit import error_line, mixed_frame, numeric_config, numeric_frame, run, write_project
from modelci.config import load_config
from modelci.data import load_dataset, load_holdout
from modelci.split import bucket, canonical, holdout_mask, row_keys

GOOD = numeric_frame().to_csv(index=False, lineterminator="\n")


def mixed_config(**kw):
    cfg = numeric_config(target="target", features={"numeric": ["amount"], "categorical": ["colour"],
                                                    "text": ["review"]})
    cfg.update(kw)
    return cfg


def train_fails(tmp_path, capsys, config, files, expected, existing_out=False):
    path = write_project(tmp_path, config, files=files)
    out = tmp_path / "out"
    if existing_out:
        out.mkdir()
        (out / "keep.txt").write_text("old")
    code, stdout, err = run(capsys, "train", "--config", path, "--out", out)
    assert code == 1, err
    assert stdout is None  # no JSON result on failure
    line = error_line(err)
    assert line.startswith("modelci train: error: ")
    assert expected in line, line
    if existing_out:
        assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    else:
        assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp")]  # temp dir cleaned up
    return line


def lines(*rows):
    return "\n".join(rows) + "\n"


BAD_CASES = {
    "missing file": ({}, "data.files[0]: data file "),
    "empty file": ({"data.csv": ""}, "data.csv: the data file is empty"),
    "whitespace only": ({"data.csv": "\n\n  \n"}, "data.csv: the data file is empty"),
    "header only": ({"data.csv": "id,x1,x2,x3,label\n"}, "data.csv: has a header but no data rows"),
    "wrong separator": ({"data.csv": GOOD.replace(",", ";")},
                        "data.csv: only one column with separator ','"),
    "not utf-8": ({"data.csv": lines("id,x1,x2,x3,label", "1,1,2,3,low", "2,1,2,3,caf\xe9").encode("latin-1")},
                  "data.csv: line 3: byte 0xe9 is not valid utf-8; save the file as utf-8 or set data.encoding"),
    "missing target column": ({"data.csv": GOOD.replace(",label", ",labl")},
                              "modelci.yml: target: column 'label' not in "),
    "empty target": ({"data.csv": GOOD.replace("\n5,", "\n5,").replace(",low\n", ",\n", 2)},
                     "target 'label' is empty in 2 row(s)"),
    "NaN target": ({"data.csv": lines("id,x1,x2,x3,label", *[f"{i},1,2,3,{'a' if i % 2 else 'b'}"
                                                             for i in range(1, 30)], "30,1,2,3,NaN")},
                   "data.csv line 31: target 'label' is empty in 1 row(s)"),
    "class too small": ({"data.csv": GOOD + "999,0.1,0.2,0.3,rare\n"},
                        "target: class 'rare' has too few rows to split (1 row(s)"),
    "duplicate columns": ({"data.csv": GOOD.replace("id,x1,x2,x3,label", "id,x1,x2,x1,label")},
                          "data.csv: line 1: duplicate column name(s) 'x1'"),
    "html page": ({"data.csv": "<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head></html>\n"},
                  "data.csv: is an HTML page, not CSV data"),
    "lfs pointer": ({"data.csv": "version https://git-lfs.github.com/spec/v1\noid sha256:"
                                 "4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n"},
                    "data.csv: is a Git LFS pointer file, not the data; fetch the LFS objects (`git lfs pull`"),
    "non-numeric in numeric": ({"data.csv": GOOD.replace("\n7,", "\n7,abc", 1)},
                               "features.numeric[0] column 'x1' has a non-numeric value"),
    "bad csv": ({"data.csv": GOOD + "1000,1,2,3,low,extra,more\n"}, "data.csv: not valid CSV ("),
    "binary file": ({"data.csv": b"PK\x03\x04\x00\x00binary"}, "data.csv: contains NUL bytes"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_data_fails_before_training(tmp_path, capsys, case):
    files, expected = BAD_CASES[case]
    train_fails(tmp_path, capsys, numeric_config(), files, expected)


def test_failure_leaves_existing_out_untouched(tmp_path, capsys):
    train_fails(tmp_path, capsys, numeric_config(), {"data.csv": ""}, "the data file is empty", existing_out=True)


def test_non_numeric_value_names_the_line(tmp_path, capsys):
    csv = GOOD.split("\n")
    fields = csv[5].split(",")
    fields[1] = "n/d?"
    csv[5] = ",".join(fields)
    line = train_fails(tmp_path, capsys, numeric_config(), {"data.csv": "\n".join(csv)},
                       "data.csv line 6: features.numeric[0] column 'x1' has a non-numeric value 'n/d?'")
    assert "list the column under features.categorical or features.text" in line


def test_semicolon_separator_is_suggested(tmp_path, capsys):
    line = train_fails(tmp_path, capsys, numeric_config(), {"data.csv": GOOD.replace(",", ";")},
                       "the file seems to use ';': set data.sep: \";\"")
    assert "modelci.yml" in line


def test_semicolon_separator_works_when_configured(tmp_path, capsys):
    cfg = numeric_config(data={"files": ["data.csv"], "sep": ";"})
    path = write_project(tmp_path, cfg, files={"data.csv": GOOD.replace(",", ";")})
    code, out, _ = run(capsys, "train", "--config", path, "--out", tmp_path / "out")
    assert code == 0 and out["rows"]["total"] == 160


def test_latin1_encoding_when_configured(tmp_path, capsys):
    df = numeric_frame()
    df["label"] = df["label"].map({"low": "baixo", "mid": "médio", "high": "alto"})
    cfg = numeric_config(data={"files": ["data.csv"], "encoding": "latin-1"})
    path = write_project(tmp_path, cfg, files={"data.csv": df.to_csv(index=False).encode("latin-1")})
    code, _, _ = run(capsys, "train", "--config", path, "--out", tmp_path / "out")
    assert code == 0
    import json
    assert "médio" in json.loads((tmp_path / "out" / "model" / "model.json").read_text())["classes"]


def test_text_column_all_empty(tmp_path, capsys):
    df = mixed_frame()
    df["review"] = ""
    train_fails(tmp_path, capsys, mixed_config(), {"data.csv": df.to_csv(index=False)},
                "features.text[0]: text column 'review' is empty in every row")


def test_numeric_feature_without_values(tmp_path, capsys):
    df = numeric_frame()
    df["x3"] = np.nan
    train_fails(tmp_path, capsys, numeric_config(), {"data.csv": df.to_csv(index=False)},
                "features.numeric[2]: column 'x3' has no values in any row")


def test_files_with_different_columns(tmp_path, capsys):
    df = numeric_frame()
    cfg = numeric_config(data={"files": ["a.csv", "b.csv"]})
    train_fails(tmp_path, capsys, cfg, {"a.csv": df.iloc[:80].to_csv(index=False),
                                        "b.csv": df.iloc[80:].drop(columns="x3").to_csv(index=False)},
                "b.csv: columns differ from ")


def test_missing_id_values(tmp_path, capsys):
    df = numeric_frame().astype({"id": "float"})
    df.loc[10, "id"] = np.nan
    train_fails(tmp_path, capsys, numeric_config(), {"data.csv": df.to_csv(index=False)},
                "data.csv line 12: id_column 'id' is empty in 1 row(s)")


def test_regression_target_must_be_numeric(tmp_path, capsys):
    cfg = numeric_config(task="regression", estimator={"class": "sklearn.linear_model.Ridge"})
    train_fails(tmp_path, capsys, cfg, {"data.csv": GOOD}, "target 'label' value 'mid' is not a number")


def test_class_too_small_for_cv(tmp_path, capsys):
    df = numeric_frame()
    rare = pd.DataFrame({"id": [900 + i for i in range(30)], "x1": 0.0, "x2": 0.0, "x3": 0.0, "label": "rare"})
    rare_ids = [i for i in rare["id"] if bucket(canonical(i)) >= 2500][:3]  # 3 rows outside the hold-out set
    df = pd.concat([df, rare[rare["id"].isin(rare_ids)]])
    cfg = numeric_config(search={"params": {"C": [1.0]}, "cv": 5})
    train_fails(tmp_path, capsys, cfg, {"data.csv": df.to_csv(index=False)},
                "class 'rare' has too few rows to split (3 row(s), 3 in the training part; each class needs 2 or "
                "more rows, at least 5 in the training part (search.cv)")


def test_multiple_files_are_concatenated(tmp_path):
    df = numeric_frame()
    cfg = numeric_config(data={"files": ["a.csv", "b.csv"]})
    path = write_project(tmp_path, cfg, {"a.csv": df.iloc[:100], "b.csv": df.iloc[100:]})
    ds = load_dataset(load_config(path))
    assert len(ds.frame) == 160 and [f["rows"] for f in ds.files] == [100, 60]
    import hashlib
    raw = (tmp_path / "model" / "a.csv").read_bytes() + (tmp_path / "model" / "b.csv").read_bytes()
    assert ds.sha256 == hashlib.sha256(raw).hexdigest()
    assert ds.where(120) == f"{tmp_path}/model/b.csv line 22"


# ------------------------------------------------------------------------------------------------ split
def test_split_is_stable_when_rows_are_appended(tmp_path):
    df = numeric_frame(400)
    first = holdout_mask(df.iloc[:200], 0.25, "id")
    both = holdout_mask(df, 0.25, "id")
    assert (both[:200] == first).all()
    assert 0.15 < both.mean() < 0.35
    # without an id column: content-based key, also stable
    assert (holdout_mask(df.drop(columns="id"), 0.25)[:200] == holdout_mask(df.drop(columns="id").iloc[:200],
                                                                             0.25)).all()


def test_split_ignores_file_order_and_dtype_changes():
    df = numeric_frame(100)
    mask = holdout_mask(df, 0.3, "id")
    shuffled = df.sample(frac=1, random_state=1)
    assert (holdout_mask(shuffled, 0.3, "id") == mask[shuffled.index]).all()
    as_float = df.astype({"id": float})
    assert (holdout_mask(as_float, 0.3, "id") == mask).all()
    as_text = df.astype({"id": str}).astype({"id": object})
    assert (holdout_mask(as_text, 0.3, "id") == mask).all()
    # a content key does not depend on column order
    assert row_keys(df[["x2", "x1"]])[:3] == row_keys(df[["x1", "x2"]])[:3]


def test_split_rule_matches_documented_formula():
    import hashlib
    keys = ["1", "abc", "r0042"]
    for k in keys:
        expected = int(hashlib.sha256(canonical(k).encode()).hexdigest()[:16], 16) % 10_000
        assert bucket(canonical(k)) == expected
    assert canonical(3) == canonical(3.0) == canonical("3") == "3.0"
    assert canonical(float("nan")) == canonical(None) == ""


def test_load_holdout_returns_the_same_rows_after_appending(tmp_path):
    df = numeric_frame(300)
    path = write_project(tmp_path, numeric_config(), {"data.csv": df.iloc[:200]})
    cfg = load_config(path)
    X1, _ = load_holdout(cfg)
    assert list(X1.columns) == ["x1", "x2", "x3"]  # raw inputs only: no id, no target
    X1b, _ = load_holdout(cfg)
    pd.testing.assert_frame_equal(X1, X1b)
    # append rows: old hold-out rows stay, new rows spread over both sets
    df.to_csv(tmp_path / "model" / "data.csv", index=False)
    X2, y2 = load_holdout(cfg)
    pd.testing.assert_frame_equal(X2.iloc[:len(X1)], X1)
    assert len(X2) > len(X1)
    assert len(y2) == len(X2)


def test_example_model_holdout(monkeypatch):
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    X, y = load_holdout(load_config("model/modelci.yml"))
    assert 25 <= len(X) <= 45 and set(y) == {"class_0", "class_1", "class_2"}


def test_utf8_bom_and_crlf_are_accepted(tmp_path, capsys):
    text = "\ufeff" + GOOD.replace("\n", "\r\n")
    path = write_project(tmp_path, numeric_config(), files={"data.csv": text.encode("utf-8")})
    code, out, err = run(capsys, "train", "--config", path, "--out", tmp_path / "out")
    assert code == 0, err
    assert out["rows"]["total"] == 160
