"""Contracts as JSON Schemas: model.json, smoke.json, run.json and verdict.json are checked where they
are written and read, with one-line errors naming the file, the key and the fix."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from fixtures.trainkit import numeric_config, numeric_frame, run, write_project
from modelci import artifact, schemas
from modelci.errors import ModelCIError

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("modelci", "model", "smoke", "run", "verdict")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from modelci import cli

    tmp = tmp_path_factory.mktemp("schemas")
    path = write_project(tmp, numeric_config(), {"data.csv": numeric_frame()})
    assert cli.main(["train", "--config", str(path), "--out", str(tmp / "out")]) == 0
    return tmp / "out"


def test_every_schema_is_valid_draft_2020_12():
    import jsonschema
    for kind in KINDS:
        schema = schemas.load(kind)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema", kind
        jsonschema.Draft202012Validator.check_schema(schema)


def test_model_schema_has_one_copy_shared_with_the_serving_app(monkeypatch, tmp_path):
    assert schemas.schema_path("model") == ROOT / "app" / "model.schema.json"
    assert not (ROOT / "scripts" / "modelci" / "schemas" / "model.schema.json").exists()
    # in the tools image the CLI reads the bundled serving app's copy
    (tmp_path / "app").mkdir()
    shutil.copy2(ROOT / "app" / "model.schema.json", tmp_path / "app" / "model.schema.json")
    monkeypatch.setenv("MODELCI_SERVING_CONTEXT", str(tmp_path))
    assert schemas.schema_path("model") == tmp_path / "app" / "model.schema.json"


def test_file_names_are_defined_once():
    assert artifact.MODEL_FILE is schemas.MODEL_FILE and artifact.META_FILE is schemas.META_FILE
    assert schemas.FILES == {"model": "model.json", "smoke": "smoke.json", "run": "run.json",
                             "verdict": "verdict.json"}


def test_training_outputs_match_their_schemas(trained):
    for kind, path in (("model", trained / "model" / "model.json"), ("smoke", trained / "model" / "smoke.json"),
                       ("run", trained / "run.json")):
        schemas.validate(kind, json.loads(path.read_text()), str(path))


@pytest.mark.parametrize("kind, doc, expected", [
    ("model", {"inputs": [{"name": "a"}]}, "x.json: sha256: required key is missing; add it (a string)"),
    ("model", {"sha256": "abc", "inputs": [{"name": "a"}]}, "x.json: sha256: 'abc' is not a sha256"),
    ("model", {"sha256": "0" * 64, "inputs": [{"name": "a", "datatype": "FLOAT"}]},
     "x.json: inputs[0].datatype: 'FLOAT' is not valid; use one of BOOL"),
    ("model", {"sha256": "0" * 64, "inputs": []}, "x.json: inputs: expected at least 1 item(s), got 0"),
    ("smoke", {"inputs": [{"a": 1}]}, "x.json: expected: required key is missing"),
    ("smoke", {"inputs": [{"a": [1]}], "expected": [1]}, "x.json: inputs[0].a: expected a string or a number"),
    ("run", {"schema_version": 2, "run_id": "r", "config": {}, "metrics": {}}, "x.json: schema_version: expected 1, got 2"),
    ("verdict", {"schema": "modelci.gate.verdict/1", "verdict": "MAYBE", "passed": True, "dry_run": False,
                 "sha256": "0" * 64}, "x.json: verdict: 'MAYBE' is not valid; use one of PROMOTE, NO_CHANGE, INCONCLUSIVE, REJECT"),
    ("verdict", {"schema": "modelci.gate.verdict/1", "verdict": "PROMOTE", "passed": "yes", "dry_run": False,
                 "sha256": "0" * 64}, "x.json: passed: expected true or false, got a string 'yes'"),
])
def test_one_line_errors(kind, doc, expected):
    with pytest.raises(ModelCIError) as exc:
        schemas.validate(kind, doc, "x.json")
    assert expected in str(exc.value) and "\n" not in str(exc.value), str(exc.value)


def test_reading_a_model_directory_checks_model_json(trained, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(trained / "model", model_dir)
    meta = json.loads((model_dir / "model.json").read_text())
    meta["inputs"] = [{"name": "x1", "kind": "number"}]
    (model_dir / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelCIError, match=r"model\.json: inputs\[0\]\.kind: 'number' is not valid; use one of "
                                           r"numeric, categorical, text"):
        artifact.load_model(model_dir)


def test_writing_an_invalid_document_writes_nothing(tmp_path):
    with pytest.raises(ModelCIError, match="smoke.json: expected: required key is missing"):
        artifact.write_json_atomic(tmp_path / "smoke.json", {"inputs": []}, kind="smoke")
    assert list(tmp_path.iterdir()) == []


def test_cache_entry_with_an_invalid_run_record_is_not_reused(tmp_path, capsys):
    cache = tmp_path / "cache"
    path = write_project(tmp_path, numeric_config(), {"data.csv": numeric_frame()})
    _, first, _ = run(capsys, "train", "--config", path, "--out", tmp_path / "o1", "--cache-dir", cache)
    record = json.loads((cache / first["reuse_key"] / "run.json").read_text())
    record["config"] = "model/modelci.yml"
    (cache / first["reuse_key"] / "run.json").write_text(json.dumps(record))
    code, second, err = run(capsys, "train", "--config", path, "--out", tmp_path / "o2", "--cache-dir", cache)
    assert code == 0 and second["reused"] is False
    assert "unusable" in err and "run.json: config: expected a mapping, got a string" in err


def test_serving_app_refuses_a_model_json_against_the_schema(trained, tmp_path):
    sys.path.insert(0, str(ROOT))
    from app.model import Model, ModelLoadError

    model_dir = tmp_path / "model"
    shutil.copytree(trained / "model", model_dir)
    Model(model_dir)  # the trained one loads
    meta = json.loads((model_dir / "model.json").read_text())
    meta["outputs"] = [{"name": "predict", "datatype": "FLOAT"}]
    (model_dir / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match=r"model\.json: outputs\.0\.datatype: 'FLOAT' is not one of"):
        Model(model_dir)
