"""Release this repository: the versioned tools image the components run in, plus release notes.

  python tools/release.py --version 1.2.3 [--image $CI_REGISTRY_IMAGE/tools] [--dry-run]

Checks first (a release that would ship mismatched pieces stops here): the version is semver, the
package version (pyproject.toml), every component's default `image` tag and CHANGELOG.md all name
it. Then builds images/tools.Dockerfile once and pushes it as X.Y.Z plus the moving aliases X.Y and
X (users pin X.Y.Z). Writes the CHANGELOG section to out/release-notes.md for GitLab's release.
Prints one JSON document; exit 1 on any mismatch or error.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from modelci import dockerutil, log  # noqa: E402
from modelci.errors import ModelCIError  # noqa: E402

SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


def check(version: str) -> dict:
    m = SEMVER.match(version)
    if not m:
        raise ModelCIError(f"version {version!r} is not semver X.Y.Z; tag the release like 1.2.3")
    problems = []
    pyproject = (ROOT / "pyproject.toml").read_text()
    pv = re.search(r'^version = "([^"]+)"', pyproject, re.M)
    if not pv or pv.group(1) != version:
        problems.append(f"pyproject.toml: version is {pv.group(1) if pv else None}, not {version}")
    for tpl in sorted((ROOT / "templates").glob("*.yml")):
        for kind, tag in re.findall(r'/(tools|proxy):([^"\s]+)"', tpl.read_text()):
            if tag != version:
                problems.append(f"{tpl.relative_to(ROOT)}: default image tag {kind}:{tag}, not {version}")
    changelog = (ROOT / "CHANGELOG.md").read_text() if (ROOT / "CHANGELOG.md").exists() else ""
    section = re.search(rf"^## \[?{re.escape(version)}\]?.*?$(.*?)(?=^## |\Z)", changelog, re.M | re.S)
    if not section:
        problems.append(f"CHANGELOG.md: no '## [{version}]' section; move the Unreleased notes under it")
    if problems:
        raise ModelCIError("release " + version + ": " + "; ".join(problems))
    return {"version": version, "aliases": [f"{m.group(1)}.{m.group(2)}", m.group(1)],
            "notes": section.group(1).strip() if section else ""}


def _build_and_push(c: Any, auth: Any, dockerfile: str, repo: str, tags: list[str],
                    buildargs: dict[str, str]) -> str | None:
    """Build `dockerfile` once, push it under every tag; the pushed digest reference."""
    with log.section("release_build", f"docker build {repo}:{tags[0]}"):
        image, _ = c.images.build(path=str(ROOT), dockerfile=dockerfile, tag=f"{repo}:{tags[0]}",
                                  buildargs=buildargs, network_mode="host", rm=True)
    for tag in tags:
        image.tag(repo, tag=tag)
        dockerutil.stream_push(c, repo, tag, auth)
    image.reload()
    return next((d for d in image.attrs.get("RepoDigests", []) if d.startswith(repo + "@")), None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", default=os.environ.get("CI_COMMIT_TAG"))
    ap.add_argument("--image", default=f"{os.environ.get('CI_REGISTRY_IMAGE', 'modelci')}/tools")
    ap.add_argument("--proxy-image", default=f"{os.environ.get('CI_REGISTRY_IMAGE', 'modelci')}/proxy",
                    help="the deploy proxy image (images/proxy.Dockerfile), released with the same tags")
    ap.add_argument("--base-image", default=os.environ.get("MODELCI_BASE_IMAGE"))
    ap.add_argument("--notes", default="out/release-notes.md")
    ap.add_argument("--dry-run", action="store_true", help="check only; build and push nothing")
    args = ap.parse_args(argv)
    try:
        plan = check(args.version or "")
        Path(args.notes).parent.mkdir(parents=True, exist_ok=True)
        Path(args.notes).write_text(plan["notes"] + "\n")
        tags = [plan["version"], *plan["aliases"]]
        result = {"image": args.image, "proxy_image": args.proxy_image, "tags": tags, "notes": args.notes,
                  "dry_run": args.dry_run}
        if not args.dry_run:
            c = dockerutil.client()
            auth = dockerutil.login(c, args.image.split("/", 1)[0])
            buildargs = {"BASE_IMAGE": args.base_image} if args.base_image else {}
            result["digest"] = _build_and_push(c, auth, "images/tools.Dockerfile", args.image, tags, buildargs)
            # the proxy `modelci deploy` pulls onto deploy hosts: same version, same tags
            result["proxy_digest"] = _build_and_push(c, auth, "images/proxy.Dockerfile", args.proxy_image, tags,
                                                     buildargs)
        print(json.dumps(result, indent=2))
        return 0
    except ModelCIError as err:
        print(f"release: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
