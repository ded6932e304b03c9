"""JSON Schemas (draft 2020-12) of modelci's files, and one-line errors from them.

    modelci.schema.json   the model config (modelci.yml; reference: docs/config.md, generated from it)
    model.schema.json     model.json, the model's metadata. It lives in app/ (app/model.schema.json):
                          the serving app checks model.json with it and app/ is in every image, so
                          the CLI reads that same file (the repository's app/, or the serving app
                          bundled in the tools image, MODELCI_SERVING_CONTEXT/app)
    smoke.schema.json     smoke.json, the smoke-test rows and expected predictions
    run.schema.json       run.json, the training run record
    verdict.schema.json   verdict.json, the gate's verdict

File names of the model directory and the training/gate outputs are defined here, once.

`validate(kind, document, source)` checks a parsed document against `<kind>.schema.json` and raises
ModelCIError with ONE line naming the source, the key path and the fix, e.g.

    model/modelci.yml: estimator.parms: unknown key; valid keys are class, params (did you mean 'params'?)

Of every problem the first in document order is reported (a mapping's unknown keys before its
values, keys in the schema's order). `resolve(kind, document)` returns a copy with every `default`
of the schema filled in and numbers coerced to float where the schema says `number`.

Schema conventions modelci relies on: `integer` never accepts 1.0 or true; an `anyOf` with a
`{"type": "null"}` branch is an optional value; `x-errors: {keyword: message}` replaces the message
of a failed keyword at that node (`{value}` is the offending value); `x-doc` is extra Markdown for the
generated reference.
"""
from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import ModelCIError

HERE = Path(__file__).resolve().parent

MODEL_FILE = "model.joblib"
META_FILE = "model.json"
SMOKE_FILE = "smoke.json"
RUN_FILE = "run.json"
VERDICT_FILE = "verdict.json"
METRICS_FILE = "metrics.json"
FILES = {"model": META_FILE, "smoke": SMOKE_FILE, "run": RUN_FILE, "verdict": VERDICT_FILE}


def schema_path(kind: str) -> Path:
    if kind != "model":
        return HERE / f"{kind}.schema.json"
    # one copy of model.json's schema, shared with the serving app (see the module docstring)
    from ..settings import get
    from ..settings.build import SERVING_CONTEXT

    bundled = get(SERVING_CONTEXT.name)
    places = ([Path(bundled) / "app"] if bundled else []) + [HERE.parents[2] / "app"]
    for place in places:
        if (place / "model.schema.json").is_file():
            return place / "model.schema.json"
    raise ModelCIError(f"{places[-1] / 'model.schema.json'}: not found; run modelci from a checkout of its "
                       "repository or from its tools image (MODELCI_SERVING_CONTEXT names the serving app)")


@cache
def load(kind: str) -> dict[str, Any]:
    """The schema `<kind>.schema.json` (parsed once)."""
    return dict(json.loads(schema_path(kind).read_text(encoding="utf-8")))


@cache
def _validator_class() -> Any:
    import jsonschema

    base = jsonschema.Draft202012Validator
    # JSON Schema counts 1.0 as an integer; a config value 1.0 where an integer is due is a mistake
    checker = base.TYPE_CHECKER.redefine(
        "integer", lambda _checker, v: isinstance(v, int) and not isinstance(v, bool))
    return jsonschema.validators.extend(base, type_checker=checker)


@cache
def _validator(kind: str) -> Any:
    return _validator_class()(load(kind))


def _has_type(value: Any, types: str | list[str]) -> bool:
    checker = _validator_class().TYPE_CHECKER
    return any(checker.is_type(value, t) for t in ([types] if isinstance(types, str) else types))


def first_error(kind: str, document: Any) -> tuple[str, str] | None:
    """(key path, message) of the first problem, or None when the document is valid."""
    err = next(iter(_validator(kind).iter_errors(document)), None)
    return None if err is None else _describe(err)


def validate(kind: str, document: Any, source: str) -> None:
    """Raise ModelCIError('<source>: <key.path>: <problem>; <fix>') unless `document` is valid."""
    found = first_error(kind, document)
    if found is not None:
        path, msg = found
        raise ModelCIError(f"{source}: {path}: {msg}" if path else f"{source}: {msg}")


def is_valid(kind: str, node: dict[str, Any], value: Any) -> bool:
    return bool(_validator(kind).evolve(schema=node).is_valid(value))


# ------------------------------------------------------------------------------------------ messages
def type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


_TYPE_WORDS = {"string": "a string", "number": "a number", "integer": "an integer", "boolean": "a boolean",
               "null": "null", "object": "a mapping", "array": "a list"}


def expect(node: dict[str, Any]) -> str:
    """What a schema node accepts, in words ('an integer >= 1', 'one of a, b', 'a list of strings')."""
    if "type" not in node and ("anyOf" in node or "oneOf" in node):
        subs = node.get("anyOf") or node["oneOf"]
        real = [s for s in subs if s.get("type") != "null"]
        text = " or ".join(expect(s) for s in real)
        return text + (" or null" if len(real) < len(subs) else "")
    kind = node.get("type")
    if isinstance(kind, list):
        return " or ".join(_TYPE_WORDS.get(str(k), str(k)) for k in kind)
    if kind == "object":
        return "a mapping"
    if kind == "array":
        items = node.get("items")
        if not items:
            return "a list of values"
        each = expect(items)
        if each in _TYPE_WORDS.values() or each == "a value":
            return f"a list of {each.removeprefix('a ').removeprefix('an ')}s"
        return f"a list (each {each})"
    if kind == "string":
        return "one of " + ", ".join(node["enum"]) if node.get("enum") else "a string"
    if kind == "integer":
        return "an integer" + (f" >= {node['minimum']}" if "minimum" in node else "")
    if kind == "number":
        lo, hi = node.get("minimum"), node.get("maximum")
        if lo is not None and hi is not None:
            return f"a number between {lo} and {hi}"
        if lo is not None:
            return f"a number >= {lo}"
        if "exclusiveMinimum" in node:
            return f"a number > {node['exclusiveMinimum']}"
        return "a number"
    if kind == "boolean":
        return "true or false"
    if kind == "null":
        return "null"
    return "a value"


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for p in parts:
        out = join(out, p if isinstance(p, int) else str(p))
    return out


def _near(word: str, choices: Iterable[str]) -> str:
    near = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{near[0]}'?)" if near else ""


def _describe(err: Any) -> tuple[str, str]:
    path = _path(err.absolute_path)
    node, value, keyword = err.schema, err.instance, err.validator
    custom = node.get("x-errors", {}).get(keyword) if isinstance(node, dict) else None
    if custom:
        return path, custom.format(value=value)
    if keyword in ("anyOf", "oneOf"):
        branches = node[keyword]
        real = [i for i, s in enumerate(branches) if s.get("type") != "null"]
        if len(real) < len(branches) and value is not None and len(real) == 1:
            # an optional value: report what is wrong with the value itself
            sub = [e for e in err.context if e.relative_schema_path[0] == real[0]]
            if sub:
                return _describe(sub[0])
        # the one branch of the value's type (a mapping where a string or a mapping is allowed) says best
        typed = [i for i, s in enumerate(branches) if s.get("type") in ("object", "array")
                 and _has_type(value, s["type"])]
        if len(typed) == 1:
            sub = [e for e in err.context if e.relative_schema_path[0] == typed[0]]
            if sub:
                return _describe(sub[0])
        deeper = [e for e in err.context if len(e.absolute_path) > len(err.absolute_path)]
        if deeper:
            return _describe(deeper[0])
        shown = {keyword: [branches[i] for i in real]} if value is not None else node
        return path, f"expected {expect(shown)}, got {type_name(value)} {value!r}"
    if keyword == "additionalProperties":
        known = list(node.get("properties", {}))
        extra = next(k for k in value if k not in known)
        valid = f"valid keys are {', '.join(known)}" if known else "no keys are allowed here"
        return join(path, str(extra)), f"unknown key; {valid}{_near(str(extra), known)}"
    if keyword == "required":
        props = node.get("properties", {})
        missing = next(k for k in list(props) + list(err.validator_value)
                       if k in err.validator_value and k not in value)
        return join(path, missing), f"required key is missing; add it ({expect(props.get(missing, {}))})"
    if keyword == "type":
        return path, f"expected {expect(node)}, got {type_name(value)} {value!r}"
    if keyword == "enum":
        choices = [str(c) for c in node["enum"]]
        return path, f"'{value}' is not valid; use one of {', '.join(choices)}{_near(str(value), choices)}"
    if keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return path, f"expected {expect(node)}, got {value}"
    if keyword in ("minItems", "maxItems"):
        n = len(value)
        if node.get("minItems") == node.get("maxItems"):
            want = f"exactly {node['minItems']}"
        elif keyword == "minItems":
            want = f"at least {node['minItems']}"
        else:
            want = f"at most {node['maxItems']}"
        return path, f"expected {want} item(s), got {n}"
    if keyword == "minProperties":
        return path, f"expected at least {node['minProperties']} key(s), got {len(value)}"
    if keyword == "pattern":
        return path, f"'{value}' does not match {node['pattern']}"
    if keyword == "const":
        return path, f"expected {node['const']!r}, got {value!r}"
    return path, str(err.message).splitlines()[0]


# ------------------------------------------------------------------------------------------ defaults
def _deref(kind: str, node: dict[str, Any]) -> dict[str, Any]:
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        target: Any = load(kind)
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def resolve(kind: str, document: Any) -> Any:
    """A copy of a VALID document with the schema's defaults filled in (see module docstring)."""
    return _resolve(kind, load(kind), document)


def _resolve(kind: str, node: dict[str, Any], value: Any) -> Any:
    node = _deref(kind, node)
    if value is None:
        return None
    if "anyOf" in node:
        for sub in node["anyOf"]:
            if is_valid(kind, sub, value):
                return _resolve(kind, sub, value)
        return copy.deepcopy(value)
    kind_ = node.get("type")
    if kind_ == "object" and isinstance(value, dict):
        props = node.get("properties")
        if props:
            out: dict[str, Any] = {}
            for key, sub in props.items():
                sub = _deref(kind, sub)
                if key in value:
                    out[key] = _resolve(kind, sub, value[key])
                elif "default" in sub:
                    default = copy.deepcopy(sub["default"])
                    out[key] = _resolve(kind, sub, default) if isinstance(default, dict) else default
            return out
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            return {str(k): _resolve(kind, extra, v) for k, v in value.items()}
        return copy.deepcopy(value)
    if kind_ == "array" and isinstance(value, list):
        items = node.get("items")
        return [_resolve(kind, items, v) if items else copy.deepcopy(v) for v in value]
    if kind_ == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return copy.deepcopy(value)
