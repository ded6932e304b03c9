"""Step-level behaviour the commands rely on: outputs are swapped in as a whole, and cli.main prints
a step's Result once."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from modelci import cli
from modelci.steps import Result
from modelci.steps import train as train_step


def _outputs(root: Path, text: str) -> None:
    (root / "model").mkdir(parents=True)
    (root / "model" / "model.json").write_text(text)
    (root / "run.json").write_text(text)
    (root / "metrics.json").write_text(text)


def _read(root: Path) -> list[str]:
    return [(root / p).read_text() for p in ("model/model.json", "run.json", "metrics.json")]


def test_publish_replaces_all_outputs_and_keeps_other_files(tmp_path):
    out, tmp = tmp_path / "out", tmp_path / ".out.tmp"
    _outputs(out, "old")
    (out / "gate").mkdir()
    _outputs(tmp, "new")
    train_step.publish(tmp, out)
    assert _read(out) == ["new"] * 3 and (out / "gate").is_dir() and not tmp.exists()


def test_publish_puts_the_previous_outputs_back_when_a_rename_fails(tmp_path, monkeypatch):
    out, tmp = tmp_path / "out", tmp_path / ".out.tmp"
    _outputs(out, "old")
    _outputs(tmp, "new")
    real = os.replace

    def flaky(src, dst):
        if Path(src) == tmp / "metrics.json":
            raise OSError("No space left on device")
        return real(src, dst)

    monkeypatch.setattr(train_step.os, "replace", flaky)
    with pytest.raises(OSError, match="No space left"):
        train_step.publish(tmp, out)
    assert _read(out) == ["old"] * 3


def test_cli_prints_a_result_once_and_returns_its_exit_code(monkeypatch, capsys):
    def fake_register(sub):
        p = sub.add_parser("fake")
        p.set_defaults(func=lambda args: Result({"b": 1, "a": "token glpat-abcdefghijkl"}, exit_code=3,
                                                error="it failed"))

    monkeypatch.setattr(cli, "COMMAND_MODULES", ["fake"])
    monkeypatch.setattr(cli.importlib, "import_module", lambda name: type("M", (), {"register": staticmethod(fake_register)}))
    assert cli.main(["fake"]) == 3
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"a": "token glpat-[MASKED]", "b": 1}
    assert captured.err.strip() == "modelci fake: error: it failed"
