"""Lint the CI/CD components and generate the README's inputs tables from their specs.

  python tools/cilint.py            check everything (exit 1 with one line per problem)
  python tools/cilint.py --readme   rewrite the README's generated inputs tables in place

Checks: every component input has a description (and a type where not a string); every
`$[[ inputs.x ]]` used is declared and every declared input is used; the body, with each input
filled with its default, validates against GitLab's CI JSON schema (check-jsonschema's
vendor.gitlab-ci); .gitlab-ci.yml validates too, and every input it passes in an `include:` exists in
that component (gitlab-ci-local does not check this; GitLab does); no global keywords
(default/stages/variables/image/before_script) and no only/except in components; the README's
tables match the specs. Composition: no hidden job is defined in two component files (included files
share one namespace, so the last include's values would win for every job), and no input default
names a job with the literal default prefix (job names must derive from `job_prefix`). Versions:
every image reference in the templates that names one of modelci's own images (tools, proxy) names
the version in pyproject.toml, and CHANGELOG.md has a section for that version (gitlab-ci-local does
not interpolate `$[[ component.version ]]`, so this is checked here on every run).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
README = ROOT / "README.md"
USE = re.compile(r"\$\[\[\s*inputs\.([A-Za-z0-9_-]+)\s*\]\]")
OWN_IMAGE = re.compile(r"/modelci/(tools|proxy):([A-Za-z0-9_.-]+)")
GLOBAL_KEYS = {"default", "stages", "variables", "image", "before_script", "after_script", "workflow",
               "services", "cache"}


class _UniqueKeyLoader(yaml.SafeLoader):
    """GitLab rejects a mapping with a repeated key; PyYAML would silently keep the last one."""

    def construct_mapping(self, node, deep=False):  # type: ignore[no-untyped-def]
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_unique(text: str) -> object:
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def load_component(path: Path) -> tuple[dict, str]:
    text = path.read_text()
    head, sep, body = text.partition("\n---\n")
    if not sep:
        raise ValueError(f"{path}: a component needs a `spec:` header, then `---`, then the jobs")
    spec = (yaml.safe_load(head) or {}).get("spec") or {}
    return spec, body


def fill(body: str, inputs: dict) -> str:
    def value(m: re.Match) -> str:
        name = m.group(1)
        default = (inputs.get(name) or {}).get("default", "")
        whole = m.string[max(0, m.start() - 2):m.start()].endswith(": ") or \
            m.string[max(0, m.start() - 1):m.start()] == " "
        if isinstance(default, (list, dict, bool, int, float)) and whole:
            return json.dumps(default)
        return str(default)
    return USE.sub(value, body)


def flatten_rules(doc: dict) -> dict:
    """GitLab flattens nested arrays in `rules` (how `!reference` and array inputs such as a
    component's `rules` input compose); the editor schema does not know that, so flatten first."""
    def flat(items: list) -> list:
        out: list = []
        for item in items:
            out.extend(flat(item) if isinstance(item, list) else [item])
        return out
    for conf in doc.values():
        if isinstance(conf, dict) and isinstance(conf.get("rules"), list):
            conf["rules"] = flat(conf["rules"])
    return doc


def schema_check(files: list[Path]) -> list[str]:
    exe = Path(sys.executable).parent / "check-jsonschema"
    res = subprocess.run([str(exe), "--builtin-schema", "vendor.gitlab-ci", "--data-transform", "gitlab-ci",
                          *map(str, files)], capture_output=True, text=True)
    return [] if res.returncode == 0 else [line for line in (res.stdout + res.stderr).splitlines() if line.strip()]


def package_version(root: Path) -> str | None:
    pyproject = root / "pyproject.toml"
    m = re.search(r'^version = "([^"]+)"', pyproject.read_text() if pyproject.exists() else "", re.M)
    return m.group(1) if m else None


def version_problems(root: Path, templates: Path) -> list[str]:
    """Every modelci image the templates name carries pyproject's version, and CHANGELOG has it."""
    version = package_version(root)
    problems: list[str] = []
    if version is None:
        return ["pyproject.toml: no `version = \"X.Y.Z\"`; the components' images must name the package version"]
    for path in sorted(templates.glob("*.yml")):
        for image, tag in OWN_IMAGE.findall(path.read_text()):
            if tag != version:
                problems.append(f"{path.relative_to(root)}: image {image}:{tag} does not name version "
                                f"{version} (pyproject.toml); make every modelci image tag {version}")
    changelog = root / "CHANGELOG.md"
    text = changelog.read_text() if changelog.exists() else ""
    if version and not re.search(rf"^## \[{re.escape(version)}\]", text, re.M):
        problems.append(f"CHANGELOG.md: no '## [{version}]' section for the version in pyproject.toml; add one")
    return problems


def composition_problems(bodies: dict[str, dict], specs: dict[str, dict], root: Path) -> list[str]:
    """Hidden jobs shared between component files, and input defaults that ignore `job_prefix`."""
    problems = []
    owners: dict[str, list[str]] = {}
    for name, doc in bodies.items():
        for key in doc:
            if isinstance(key, str) and key.startswith("."):
                owners.setdefault(key, []).append(name)
    for key, files in sorted(owners.items()):
        if len(files) > 1:
            problems.append(f"templates: hidden job {key!r} is defined in {', '.join(sorted(files))}: included "
                            "files share one namespace and the last include wins; inline its keys or derive "
                            "its name from job_prefix")
    for name, inputs in specs.items():
        prefix = (inputs.get("job_prefix") or {}).get("default")
        if not prefix:
            continue
        for input_name, decl in inputs.items():
            if input_name == "job_prefix":
                continue
            if prefix in json.dumps((decl or {}).get("default", "")):
                problems.append(f"templates/{name}.yml: spec.inputs.{input_name}: default names a job with the "
                                f"literal prefix {prefix!r}; derive job names from $[[ inputs.job_prefix ]] "
                                "in the job instead")
    return problems


def lint() -> list[str]:
    problems: list[str] = []
    specs: dict[str, dict] = {}
    bodies: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        filled = []
        for path in sorted(TEMPLATES.glob("*.yml")):
            rel = path.relative_to(ROOT)
            try:
                spec, body = load_component(path)
            except ValueError as exc:
                problems.append(str(exc))
                continue
            inputs = spec.get("inputs") or {}
            specs[path.stem] = inputs
            for name, decl in inputs.items():
                decl = decl or {}
                if not decl.get("description"):
                    problems.append(f"{rel}: spec.inputs.{name}: no description; add one")
                default = decl.get("default")
                if isinstance(default, list) and decl.get("type") != "array":
                    problems.append(f"{rel}: spec.inputs.{name}: default is a list; add `type: array`")
                if isinstance(default, bool) and decl.get("type") != "boolean":
                    problems.append(f"{rel}: spec.inputs.{name}: default is a boolean; add `type: boolean`")
            for hidden in re.findall(r'^"?(\.[^"\n]+?)"?:\s*$', body, re.M):
                if "$[[" not in hidden:
                    problems.append(f"{rel}: hidden job {hidden!r} has a fixed name: every include of a component "
                                    "file shares it and the last include's values win; inline its keys")
            used = set(USE.findall(body))
            for name in sorted(used - set(inputs)):
                problems.append(f"{rel}: $[[ inputs.{name} ]] is used but not declared in spec.inputs")
            for name in sorted(set(inputs) - used):
                problems.append(f"{rel}: spec.inputs.{name} is declared but never used; remove it or use it")
            try:
                doc = flatten_rules(load_unique(fill(body, inputs)) or {})
            except yaml.YAMLError as exc:
                problems.append(f"{rel}: {str(exc).splitlines()[0]} ({' '.join(str(exc).split()[-4:])})")
                continue
            bodies[path.stem] = doc
            for key in sorted(GLOBAL_KEYS & set(doc)):
                problems.append(f"{rel}: global `{key}:` leaks into every consumer; set it per job instead")
            for job, conf in doc.items():
                if isinstance(conf, dict) and ({"only", "except"} & set(conf)):
                    problems.append(f"{rel}: {job}: use rules, not only/except")
            if "include" in doc:  # a pipeline component: validate its includes' inputs below
                for inc in doc["include"]:
                    local = (inc.get("local") or "").lstrip("/")
                    if local.startswith("templates/"):
                        problems += _check_include_inputs(rel, Path(local).stem, inc.get("inputs") or {}, specs,
                                                          TEMPLATES / Path(local).name)
                continue
            out = Path(tmp) / f"{path.stem}.gitlab-ci.yml"
            out.write_text(yaml.safe_dump(doc, sort_keys=False))
            filled.append(out)
        problems += [f"schema: {line}" for line in schema_check(filled)] if filled else []
    problems += composition_problems(bodies, specs, ROOT)
    problems += version_problems(ROOT, TEMPLATES)
    ci = ROOT / ".gitlab-ci.yml"
    problems += [f"schema (.gitlab-ci.yml): {line}" for line in schema_check([ci])]
    for inc in (yaml.safe_load(ci.read_text()) or {}).get("include") or []:
        comp = inc.get("component") if isinstance(inc, dict) else None
        if comp:
            name = comp.rsplit("/", 1)[-1].split("@")[0]
            problems += _check_include_inputs(Path(".gitlab-ci.yml"), name, inc.get("inputs") or {}, specs,
                                              TEMPLATES / f"{name}.yml")
    return problems


def _check_include_inputs(where, name, given, specs, path) -> list[str]:
    if name not in specs:
        if not path.exists():
            return [f"{where}: includes component {name!r}, which is not in templates/"]
        specs[name] = (load_component(path)[0].get("inputs") or {})
    declared = specs[name]
    out = [f"{where}: include {name}: unknown input {k!r} (GitLab rejects it); inputs are "
           f"{', '.join(sorted(declared))}" for k in given if k not in declared]
    for k, decl in declared.items():
        if "default" not in (decl or {}) and k not in given:
            out.append(f"{where}: include {name}: required input {k!r} missing")
    return out


def readme_tables() -> dict[str, str]:
    tables = {}
    for path in sorted(TEMPLATES.glob("*.yml")):
        spec, _ = load_component(path)
        rows = ["| input | type | default | description |", "|---|---|---|---|"]
        for name, decl in (spec.get("inputs") or {}).items():
            decl = decl or {}
            typ = decl.get("type", "string")
            if decl.get("options"):
                typ += " (" + ", ".join(f"`{o}`" for o in decl["options"]) + ")"
            default = decl.get("default", "*(required)*")
            default = f"`{json.dumps(default) if not isinstance(default, str) else default}`" \
                if "default" in decl else default
            default = default.replace("|", "\\|")
            rows.append(f"| `{name}` | {typ} | {default} | {decl.get('description', '')} |")
        desc = spec.get("description", "")
        tables[path.stem] = f"{desc}\n\n" + "\n".join(rows) + "\n"
    return tables


def render_readme(text: str) -> str:
    for name, table in readme_tables().items():
        pattern = re.compile(rf"(<!-- inputs:{name} -->\n).*?(<!-- /inputs:{name} -->)", re.S)
        text = pattern.sub(lambda m, t=table: m.group(1) + t + m.group(2), text)
    return text


def main(argv: list[str]) -> int:
    if "--readme" in argv:
        README.write_text(render_readme(README.read_text()))
        return 0
    problems = lint()
    text = README.read_text() if README.exists() else ""
    for name in readme_tables():
        if f"<!-- inputs:{name} -->" not in text:
            problems.append(f"README.md: no generated inputs table for component {name!r}; add "
                            f"<!-- inputs:{name} --><!-- /inputs:{name} --> and run tools/cilint.py --readme")
    if text and render_readme(text) != text:
        problems.append("README.md: inputs tables are stale; run `python tools/cilint.py --readme`")
    for p in problems:
        print(p)
    print(f"cilint: {len(problems)} problem(s)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
