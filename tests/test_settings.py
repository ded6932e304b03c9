"""The one settings module: flag > environment > default, one boolean parser, deprecated aliases that
warn, and no environment read while the command line is parsed."""
from __future__ import annotations

from pathlib import Path

import pytest

from modelci import cli, settings
from modelci.errors import ModelCIError
from modelci.settings.champion import ChampionSettings
from modelci.settings.monitor import MonitorSettings
from modelci.settings.train import TrainSettings


def _parse(argv):
    return cli.build_parser().parse_args(argv)


@pytest.mark.parametrize("text, expected", [("true", True), ("TRUE", True), ("1", True), ("yes", True),
                                            ("on", True), ("false", False), ("0", False), ("No", False),
                                            ("off", False), ("", False), (None, False)])
def test_one_boolean_parser(text, expected):
    assert settings.parse_bool(text, name="X") is expected


def test_a_bad_boolean_names_the_variable(monkeypatch):
    monkeypatch.setenv("MODELCI_MONITOR_TRIGGER", "maybe")
    with pytest.raises(ModelCIError, match="MODELCI_MONITOR_TRIGGER='maybe': not a boolean; use true or false"):
        MonitorSettings.from_args(_parse(["monitor"]))


def test_flag_beats_environment_beats_default(monkeypatch):
    for name in ("MODELCI_OUT", "MODELCI_CONFIG", "MODELCI_CACHE_DIR", "FORCE_RETRAIN"):
        monkeypatch.delenv(name, raising=False)
    s = TrainSettings.from_args(_parse(["train"]))
    assert (s.out, s.config, s.cache_dir, s.force) == (Path("out"), "model/modelci.yml", None, False)
    monkeypatch.setenv("MODELCI_OUT", "envout")
    monkeypatch.setenv("FORCE_RETRAIN", "yes")
    monkeypatch.setenv("MODELCI_CONFIG", "")  # empty = unset (GitLab passes unset inputs as "")
    s = TrainSettings.from_args(_parse(["train"]))
    assert (s.out, s.config, s.force) == (Path("envout"), "model/modelci.yml", True)
    assert TrainSettings.from_args(_parse(["train", "--out", "flagout"])).out == Path("flagout")


def test_environment_is_read_after_parsing_not_while_building_the_parser(monkeypatch):
    monkeypatch.delenv("MODELCI_MONITOR_MIN_ROWS", raising=False)
    parser = cli.build_parser()
    monkeypatch.setenv("MODELCI_MONITOR_MIN_ROWS", "7")
    assert MonitorSettings.from_args(parser.parse_args(["monitor"])).min_rows == 7


def test_deprecated_alias_still_works_and_warns_once(monkeypatch, capsys):
    monkeypatch.delenv("MODELCI_CHAMPION", raising=False)
    monkeypatch.setenv("MODELCI_CHAMPION_DIR", "old/champion")
    monkeypatch.setattr(settings, "_WARNED", set())
    assert ChampionSettings.from_args(_parse(["champion"])).out == "old/champion"
    assert ChampionSettings.from_args(_parse(["champion"])).out == "old/champion"
    err = capsys.readouterr().err
    assert err.count("MODELCI_CHAMPION_DIR is deprecated; set MODELCI_CHAMPION instead") == 1
    monkeypatch.setenv("MODELCI_CHAMPION", "new/champion")  # the new name wins
    assert ChampionSettings.from_args(_parse(["champion"])).out == "new/champion"


def test_undeclared_names_are_refused():
    with pytest.raises(RuntimeError, match="not declared"):
        settings.get("MODELCI_NOT_A_THING")
    with pytest.raises(RuntimeError, match="declare it with settings.var"):
        settings.env("MODELCI_CONFIG")


def test_declarations_are_consistent(monkeypatch):
    monkeypatch.setitem(settings.VARIABLES, "MODELCI_CONFIG", settings.VARIABLES["MODELCI_CONFIG"])
    settings.var("MODELCI_CONFIG", "again", "model/modelci.yml", kind="path", used_by=("extra",))
    assert "extra" in settings.VARIABLES["MODELCI_CONFIG"].used_by
    with pytest.raises(RuntimeError, match="declared twice"):
        settings.var("MODELCI_CONFIG", "other default", "x.yml", kind="path")
    with pytest.raises(RuntimeError, match="both a variable and a deprecated alias"):
        settings.var("MODELCI_CHAMPION_DIR", "an alias declared as a variable")


def test_secrets_are_masked_in_results_and_errors(monkeypatch, capsys):
    monkeypatch.setenv("MODELCI_GITLAB_TOKEN", "glpat-supersecret-value")
    assert settings.get("MODELCI_GITLAB_TOKEN") == "glpat-supersecret-value"  # registers the secret
    code = cli.main(["reproduce", "--run-record", "/nonexistent/glpat-supersecret-value/run.json"])
    err = capsys.readouterr().err
    assert code == 1 and "glpat-supersecret-value" not in err and "[MASKED]" in err
