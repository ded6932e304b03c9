"""`modelci gate` settings: flag > environment > default, one boolean parser, the deprecated
MODELCI_CHAMPION_DIR alias."""
from __future__ import annotations

import argparse

import pytest

from modelci import cli
from modelci.errors import ModelCIError
from modelci.settings.gate import GateSettings


def parse(*argv):
    return cli.build_parser().parse_args(["gate", *argv])


def test_defaults_follow_modelci_out(monkeypatch):
    for name in ("MODELCI_CONFIG", "MODELCI_CANDIDATE", "MODELCI_CHAMPION", "MODELCI_CHAMPION_DIR",
                 "MODELCI_GATE_OUT", "MODELCI_GATE_DRY_RUN", "MODELCI_REPORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MODELCI_OUT", "build")
    s = GateSettings.from_args(parse())
    assert (s.config, s.candidate, s.champion, s.out) == ("model/modelci.yml", "build/model", None, "build/gate")
    assert s.dry_run is False and s.report is False


def test_flag_wins_over_environment(monkeypatch):
    monkeypatch.setenv("MODELCI_GATE_OUT", "env-out")
    monkeypatch.setenv("MODELCI_GATE_DRY_RUN", "yes")
    monkeypatch.setenv("MODELCI_REPORT", "1")
    s = GateSettings.from_args(parse("--out", "flag-out", "--no-report"))
    assert s.out == "flag-out" and s.dry_run is True and s.report is False
    monkeypatch.setenv("MODELCI_REPORT", "maybe")
    with pytest.raises(ModelCIError, match="MODELCI_REPORT='maybe': not a boolean"):
        GateSettings.from_args(parse())


def test_champion_dir_is_a_deprecated_alias(monkeypatch):
    monkeypatch.delenv("MODELCI_CHAMPION", raising=False)
    monkeypatch.setenv("MODELCI_CHAMPION_DIR", "old/champion")
    assert GateSettings.from_args(argparse.Namespace()).champion == "old/champion"
    monkeypatch.setenv("MODELCI_CHAMPION", "new/champion")
    assert GateSettings.from_args(parse()).champion == "new/champion"
