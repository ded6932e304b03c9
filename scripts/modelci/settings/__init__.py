"""One place where modelci reads its environment.

Every `MODELCI_*` variable the CLI, the components or the serving image read is declared here (or in
a per-step module of this package) with `var(...)`: its name, what it does, its default and its
deprecated aliases. `docs/settings.md` is generated from these declarations (`python tools/gendocs.py`)
and CI fails when it is stale or when code reads a name that is not declared.

Reading rules (docs/settings.md, "How values are read"):
- a command-line flag wins over the environment, the environment over the default;
- an empty variable counts as unset (GitLab passes unset inputs as empty strings);
- booleans are parsed by `parse_bool` only: true/false, 1/0, yes/no, on/off, any case;
- an old name still works and logs one deprecation warning naming the new one.

Per-step settings are frozen dataclasses built once, after argument parsing, by each step's
`<Step>Settings.from_args(args)`; steps never read `os.environ` themselves.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ModelCIError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Var:
    name: str
    help: str
    default: str | None = None
    kind: str = "str"              # str | bool | int | float | path | url | secret
    aliases: tuple[str, ...] = ()  # deprecated old names, still read (with a warning)
    used_by: tuple[str, ...] = ()  # commands / components that read it
    secret: bool = False


VARIABLES: dict[str, Var] = {}
_ALIASES: dict[str, str] = {}
_WARNED: set[str] = set()


def var(name: str, help: str, default: str | None = None, *, kind: str = "str",
        aliases: tuple[str, ...] = (), used_by: tuple[str, ...] = (), secret: bool = False) -> Var:
    """Declare a variable.

    A variable several steps read is declared once (shared ones in `settings/common.py`); declaring it
    again is allowed only with the same default, kind, aliases and secrecy, and then only adds the new
    `used_by` entries (the first declaration's help text stays). Anything else is a programming error.
    """
    if name in _ALIASES or any(a in VARIABLES or _ALIASES.get(a, name) != name for a in aliases):
        raise RuntimeError(f"settings: {name}: a name is both a variable and a deprecated alias")
    v = Var(name, help, default, kind, tuple(aliases), tuple(used_by), secret)
    old = VARIABLES.get(name)
    if old is not None:
        if (old.default, old.kind, old.aliases, old.secret) != (v.default, v.kind, v.aliases, v.secret):
            raise RuntimeError(f"settings: {name} declared twice with different definitions")
        v = Var(name, old.help, old.default, old.kind, old.aliases,
                old.used_by + tuple(u for u in v.used_by if u not in old.used_by), old.secret)
    VARIABLES[name] = v
    for alias in aliases:
        _ALIASES[alias] = name
    return v


def env(name: str, default: str | None = None) -> str | None:
    """A variable modelci does not own (GitLab's predefined `CI_*`, `DOCKER_HOST`, ...): its value, or
    `default` when unset or empty. `MODELCI_*` names must be declared and read with `get`."""
    if name.startswith("MODELCI_"):
        raise RuntimeError(f"settings: {name}: declare it with settings.var and read it with settings.get")
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def parse_bool(value: str | bool | None, *, name: str, default: bool = False) -> bool:
    """The one boolean parser: true/false, 1/0, yes/no, on/off (any case); empty = default."""
    if isinstance(value, bool):
        return value
    if value is None or str(value).strip() == "":
        return default
    v = str(value).strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ModelCIError(f"{name}={value!r}: not a boolean; use true or false")


def raw(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The value of a declared variable (or its deprecated alias), None when unset or empty."""
    env = os.environ if environ is None else environ
    if name not in VARIABLES:
        raise RuntimeError(f"settings: {name} is read but not declared (declare it with settings.var)")
    value = env.get(name)
    if value not in (None, ""):
        return value
    for alias in VARIABLES[name].aliases:
        value = env.get(alias)
        if value not in (None, ""):
            if alias not in _WARNED:
                _WARNED.add(alias)
                from .. import log
                log.warn(f"{alias} is deprecated; set {name} instead")
            return value
    return None


def get(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """Value or the declared default."""
    value = raw(name, environ)
    if value is None:
        value = VARIABLES[name].default
    if value is not None and VARIABLES[name].secret:
        from .. import log
        log.add_secret(value)
    return value


def get_bool(name: str, environ: Mapping[str, str] | None = None) -> bool:
    default = parse_bool(VARIABLES[name].default, name=name) if VARIABLES[name].default else False
    return parse_bool(raw(name, environ), name=name, default=default)


def get_float(name: str, environ: Mapping[str, str] | None = None) -> float | None:
    value = get(name, environ)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise ModelCIError(f"{name}={value!r}: not a number") from None


def get_int(name: str, environ: Mapping[str, str] | None = None) -> int | None:
    value = get(name, environ)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ModelCIError(f"{name}={value!r}: not an integer") from None


def pick(flag: object, name: str, default: str | None = None) -> str | None:
    """A flag's value when given on the command line, else the variable, else its declared default,
    else `default` (a step-specific fallback)."""
    if flag not in (None, ""):
        return str(flag)
    value = get(name)
    return default if value is None else value


def pick_bool(flag: bool | None, name: str) -> bool:
    """A boolean flag when given (True/False), else the variable parsed by `parse_bool`."""
    return flag if flag is not None else get_bool(name)


def pick_int(flag: int | None, name: str) -> int | None:
    return flag if flag is not None else get_int(name)


def pick_float(flag: float | None, name: str) -> float | None:
    return flag if flag is not None else get_float(name)
