"""No data lost (issue 12 part 6): --out never deletes a directory modelci did not create, and a
training cache entry is verified whole or treated as a miss and replaced."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fixtures.trainkit import numeric_config, numeric_frame, run, write_project
from gitlab_fake import fake_gitlab  # noqa: F401 - fixture
from modelci import artifact
from modelci.errors import ModelCIError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A consumer-like checkout: model/ holds the config and data (which `--out .` used to delete)."""
    path = write_project(tmp_path, numeric_config(), {"data.csv": numeric_frame()})
    (tmp_path / "notes.txt").write_text("mine\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path, path


@pytest.mark.parametrize("target", [".", "/", "~", ".."])
def test_atomic_dir_refuses_cwd_root_home_and_parents(project, target):
    tmp_path, _ = project
    final = Path(target).expanduser()
    with pytest.raises(ModelCIError, match=r"is never replaced by an output"), artifact.atomic_dir(final):
        pytest.fail("must not get here")
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


def test_atomic_dir_refuses_a_non_empty_foreign_directory(project):
    tmp_path, _ = project
    with pytest.raises(ModelCIError, match=r"^--out model: a non-empty directory modelci did not create \(it "
                                           r"holds '(data.csv|modelci.yml)'\)"):
        with artifact.atomic_dir("model"):
            pass
    assert (tmp_path / "model" / "modelci.yml").exists() and (tmp_path / "model" / "data.csv").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model.")]  # no temp dir left behind


def test_atomic_dir_replaces_its_own_output(project):
    tmp_path, _ = project
    for _ in range(2):
        with artifact.atomic_dir("out/model") as tmp:
            (tmp / "model.json").write_text("{}")
    assert [p.name for p in (tmp_path / "out" / "model").iterdir()] == ["model.json"]


@pytest.mark.parametrize("argv", [
    ["train", "--config", "model/modelci.yml", "--out", "."],
    ["champion", "--image", "127.0.0.1:1/g/serving", "--out", "."],
])
def test_out_dot_is_refused_and_deletes_nothing(project, capsys, argv):
    tmp_path, _ = project
    _check_out_dot_refused(tmp_path, capsys, argv)


def test_registry_pull_out_dot_is_refused_and_deletes_nothing(project, capsys, fake_gitlab):  # noqa: F811
    tmp_path, _ = project
    from modelci import gitlab_api
    from modelci.model_registry import ModelRegistry
    from test_registry import make_model

    d, run_record, verdict, _ = make_model(tmp_path / "out")
    ModelRegistry(gitlab_api.from_env(), "demo").push(d, "1.0.0", run_record=run_record, verdict=verdict)
    shutil.rmtree(tmp_path / "out")
    _check_out_dot_refused(tmp_path, capsys, ["registry", "pull", "--name", "demo", "--version", "1.0.0",
                                              "--out", "."])


def _check_out_dot_refused(tmp_path, capsys, argv):
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    code, _, err = run(capsys, *argv)
    assert code != 0
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before
    assert err.strip().splitlines()[-1].endswith(
        "--out .: the current directory or one holding it is never replaced by an output; give a directory of "
        "its own, e.g. out/model")


def test_train_refuses_to_replace_a_foreign_model_directory(project, capsys, monkeypatch):
    tmp_path, path = project
    monkeypatch.chdir(tmp_path.parent)
    code, _, err = run(capsys, "train", "--config", path, "--out", tmp_path)
    assert code != 0
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"modelci train: error: --out {tmp_path}: replacing {tmp_path}/model would delete ")
    assert line.endswith("modelci.yml, an input of this run; give --out a directory of its own, e.g. out")
    assert (tmp_path / "model" / "modelci.yml").exists()


@pytest.mark.parametrize("victim,damage", [
    ("run.json", lambda p: p.write_text(p.read_text()[:40])),                 # truncated: used to crash
    ("model/smoke.json", lambda p: p.write_text(p.read_text()[:40])),         # used to be reused silently
    ("model/smoke.json", lambda p: p.write_text(json.dumps({"inputs": [1], "expected": []}))),
    ("metrics.json", lambda p: p.write_text(json.dumps({"metrics": {"accuracy": 2.0}}))),
    ("model/model.json", lambda p: p.unlink()),
])
def test_damaged_cache_entry_is_a_miss_and_replaced(tmp_path, capsys, victim, damage):
    cache = tmp_path / "cache"
    path = write_project(tmp_path, numeric_config(), {"data.csv": numeric_frame()})
    code, first, _ = run(capsys, "train", "--config", path, "--out", tmp_path / "o1", "--cache-dir", cache)
    assert code == 0
    entry = cache / first["reuse_key"]
    damage(entry / victim)
    assert artifact.training_output_problem(entry, first["reuse_key"]) is not None
    code, second, err = run(capsys, "train", "--config", path, "--out", tmp_path / "o2", "--cache-dir", cache)
    assert code == 0, err
    assert second["reused"] is False and "unusable" in err
    assert artifact.training_output_problem(entry, first["reuse_key"]) is None  # replaced by a whole entry
    code, third, _ = run(capsys, "train", "--config", path, "--out", tmp_path / "o3", "--cache-dir", cache)
    assert third["reused"] is True and third["run_id"] == second["run_id"]
    shutil.rmtree(cache)
