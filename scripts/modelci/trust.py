"""Production's release checks and the trusted record of what production runs.

docs/design.md#versions-images-digests and #evaluation-set-and-champion. Nothing here reads a
`MODELCI_*` variable: a pipeline variable can neither turn a check off nor redirect it.

`check_release(image, environment)` is what the production deploy job runs (the component's script
asks for it; see templates/deploy.yml). It refuses, with one line, unless
  * the image is the one this pipeline's build job produced: read from the build job's dotenv report
    file `out/build.env` (an artifact; a rollback re-run of an older pipeline's deploy job gets that
    pipeline's file), never from the environment; an image given otherwise is refused;
  * the model inside (the image's `io.modelci.model.sha256` label, read from the registry by digest,
    which the deploy then checks against the model file itself) either has a passing, non-dry-run
    verdict for that exact sha256 in `out/build-verdict.json` (the gate job's own artifact, GATE_VERDICT,
    which the build job keeps with its record; never the file MODELCI_VERDICT names), or is byte-identical to the model production runs now
    according to `production_release` (an app-only rebuild);
  * no file under `out/` is committed to the repository: build records and verdicts come only from
    this pipeline's jobs (a committed, forged `out/build-verdict.json` or `out/build.env` would
    otherwise be taken for an artifact). The git index of the checkout is read for this.

Rollback after the gate's artifacts expired: the build job's artifacts (`out/build.env` and
`out/build-verdict.json`, a few hundred bytes) never expire (templates/build.yml), and the deploy
jobs need the gate and publish jobs for order only (no artifacts). GitLab fails a re-run whose needed
artifacts expired before its script starts (missing dependency), so this is what lets the production
job of an old pipeline run again, months later, with the same checks. The model registry is not read
here: this job holds only CI_JOB_TOKEN, which GitLab's MLflow API refuses (docs/model-registry.md).

Why the index rather than fetching the gate job's artifact through the API with CI_JOB_TOKEN: the
job token cannot list a pipeline's jobs, so the deploy could not find the gate job's id without a
variable, while the checkout is always there and its index says exactly which files git put there.

`production_release(environment)` is the one place that says what production runs: GitLab's last
successful deployment of the environment (deployments API, CI_JOB_TOKEN), the URL GitLab records for
the environment (not a variable), production's `/lineage` at that URL, which reports the image the
deploy started (`image`, by digest), and that image's labels read by digest from the registry, which
must name the deployment's commit (`org.opencontainers.image.revision`) and the model sha256
`/lineage` reports. Any disagreement, an unreachable API or a silent production fails closed; only a
project that never deployed to the environment has no record (None).
"""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import requests

from . import dockerutil
from .errors import ModelCIError

BUILD_RECORD = Path("out/build.env")        # templates/build.yml: artifacts.reports.dotenv
BUILD_VERDICT = Path("out/build-verdict.json")  # the gate verdict the image was built on (build artifacts)
GATE_VERDICT = Path("out/gate/verdict.json")    # the gate job's own artifact (templates/gate.yml): no variable moves it
OUTPUTS = "out/"


# ---- committed files -----------------------------------------------------------------------------
def _git_dir(workdir: Path) -> tuple[Path, Path] | None:
    """(repository root, git dir) for workdir, or None outside a git checkout."""
    for root in [workdir, *workdir.parents]:
        dotgit = root / ".git"
        if dotgit.is_dir():
            return root, dotgit
        if dotgit.is_file():
            text = dotgit.read_text().strip()
            if text.startswith("gitdir:"):
                gd = Path(text.split(":", 1)[1].strip())
                return root, (gd if gd.is_absolute() else (root / gd).resolve())
    return None


def _index_paths(index: Path) -> list[str]:
    """Paths listed in a git index file (versions 2-4), without git."""
    data = index.read_bytes()
    if data[:4] != b"DIRC":
        raise ModelCIError(f"{index}: not a git index; cannot tell which files are committed")
    version, count = struct.unpack(">II", data[4:12])
    if version not in (2, 3, 4):
        raise ModelCIError(f"{index}: git index version {version} is not supported")
    hash_len = 32 if b"objectformat = sha256" in _read_config(index.parent) else 20
    pos, paths, prev = 12, [], b""
    for _ in range(count):
        start = pos
        pos += 40 + hash_len
        flags = struct.unpack(">H", data[pos:pos + 2])[0]
        pos += 2
        if version >= 3 and flags & 0x4000:
            pos += 2
        if version == 4:
            strip, byte = 0, data[pos]
            pos += 1
            strip = byte & 0x7F
            while byte & 0x80:
                byte = data[pos]
                pos += 1
                strip = ((strip + 1) << 7) | (byte & 0x7F)
            end = data.index(b"\0", pos)
            name = prev[:len(prev) - strip] + data[pos:end]
            pos = end + 1
        else:
            end = data.index(b"\0", pos)
            name = data[pos:end]
            pos = start + ((end - start) // 8 + 1) * 8
        prev = name
        paths.append(name.decode("utf-8", "surrogateescape"))
    return paths


def _read_config(git_dir: Path) -> bytes:
    try:
        return (git_dir / "config").read_bytes()
    except OSError:
        return b""


def committed_paths(workdir: str | os.PathLike[str] = ".", prefix: str = OUTPUTS) -> list[str]:
    """Files under `prefix` (relative to workdir) that git checked out: tracked in the index."""
    workdir = Path(workdir).resolve()
    found = _git_dir(workdir)
    if found is None:
        return []  # no checkout (GIT_STRATEGY none): nothing can have been committed here
    root, git_dir = found
    sub = workdir.relative_to(root).as_posix()
    want = (f"{sub}/{prefix}" if sub != "." else prefix)
    if shutil.which("git"):
        proc = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--", want],
                              capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            return sorted(p for p in proc.stdout.split("\0") if p)
    index = git_dir / "index"
    if not index.exists():
        return []
    return sorted(p for p in _index_paths(index) if p.startswith(want))


def refuse_committed_outputs(workdir: str | os.PathLike[str] = ".") -> None:
    paths = committed_paths(workdir)
    if paths:
        shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
        raise ModelCIError(f"{shown}: committed to the repository under {OUTPUTS}; build records, models "
                           f"and gate verdicts come only from this pipeline's jobs, so this commit "
                           f"cannot be released; remove them (git rm -r --cached {OUTPUTS})")


# ---- this pipeline's build record ----------------------------------------------------------------
def built_image(given: str | None, workdir: str | os.PathLike[str] = ".") -> str:
    """The image this pipeline's build job pushed (its dotenv report file); `given` must match it."""
    record = Path(workdir) / BUILD_RECORD
    if not record.is_file():
        raise ModelCIError(f"{BUILD_RECORD}: no build record from this pipeline's build job; production only "
                           "deploys the image its own pipeline built (run the pipeline, or re-run the "
                           "deploy job of the pipeline that built the image to roll back)")
    image = dockerutil.read_dotenv(record).get("MODELCI_IMAGE", "")
    if "@sha256:" not in image:
        raise ModelCIError(f"{BUILD_RECORD}: MODELCI_IMAGE is missing or not pinned by digest; re-run the "
                           "build job")
    if given and given != image:
        raise ModelCIError(f"image {given}: not the image this pipeline's build job produced ({image}); an "
                           "image given by a variable or flag is never deployed to production")
    return image


# ---- verdicts ------------------------------------------------------------------------------------
def passing_verdict(model_sha256: str, workdir: str | os.PathLike[str] = ".") -> dict[str, Any] | None:
    """This pipeline's gate verdict for model_sha256: the verdict when it passes, None when there is
    no verdict file; a verdict for another model, a dry run or a failing one is refused."""
    path = Path(workdir) / BUILD_VERDICT
    if not path.is_file():
        return None
    from .artifact import read_json

    verdict = read_json(path, "gate verdict (verdict.json)")
    if not isinstance(verdict, dict):
        raise ModelCIError(f"{BUILD_VERDICT}: not a gate verdict; re-run the gate")
    if verdict.get("sha256") != model_sha256:
        raise ModelCIError(f"{BUILD_VERDICT}: sha256: the verdict is for model {str(verdict.get('sha256'))[:12]}…, "
                           f"the image holds {model_sha256[:12]}…; gate this exact model first")
    if verdict.get("dry_run") is not False:
        raise ModelCIError(f"{BUILD_VERDICT}: dry_run: a dry-run gate verdict never authorises a deploy")
    if verdict.get("passed") is not True:
        raise ModelCIError(f"{BUILD_VERDICT}: verdict {verdict.get('verdict')} (passed={verdict.get('passed')}) "
                           "does not allow deploying this model")
    return verdict


# ---- what production runs -------------------------------------------------------------------------
def registry_reader(registry: str) -> Any:
    from .dockerutil import registry_credentials
    from .oci import ImageReader

    user, password = registry_credentials()
    return ImageReader(registry, user, password)


def last_deployment(environment: str) -> dict[str, Any] | None:
    """GitLab's last successful deployment of `environment` (deployments API), or None. Fails closed
    (ModelCIError) when the API cannot be reached or refuses the job token."""
    from . import gitlab_api

    client = gitlab_api.from_env(scope=gitlab_api.SCOPE_API)
    with client.errors(f"reading the last successful {environment} deployment"):
        rows = client.gl.http_list(f"/projects/{client.project_id.replace('/', '%2F')}/deployments",
                                   query_data={"environment": environment, "status": "success",
                                               "order_by": "finished_at", "sort": "desc", "per_page": 1},
                                   get_all=False)
    rows = list(rows)
    return dict(rows[0]) if rows else None


def production_release(environment: str = "production", timeout: float = 10.0) -> dict[str, Any] | None:
    """What `environment` runs now, from records no pipeline variable can change (module docstring):
    {"deployment_id", "commit", "url", "image", "digest", "model_sha256", "model_version"};
    None only when GitLab records no successful deployment of it."""
    from .oci import MODEL_LABEL, REVISION_LABEL, split_digest_ref

    dep = last_deployment(environment)
    if dep is None:
        return None
    where = f"{environment} (deployment #{dep.get('id')} of commit {str(dep.get('sha'))[:8]})"
    url = str(((dep.get("environment") or {}).get("external_url")) or "").rstrip("/")
    if not url:
        raise ModelCIError(f"GitLab records no URL for the {environment} environment; set its url so the "
                           f"model {where} runs can be read from /lineage")
    try:
        resp = requests.get(f"{url}/lineage", timeout=timeout)
        lineage = resp.json() if resp.status_code == 200 else None
    except (requests.RequestException, ValueError):
        lineage = None
    if not isinstance(lineage, dict):
        raise ModelCIError(f"{url}/lineage does not answer while GitLab records a successful deployment of "
                           f"{where}; failing closed: bring {environment} back before gating or releasing")
    image = str(lineage.get("image") or "")
    if "@sha256:" not in image:
        raise ModelCIError(f"{url}/lineage reports no image digest (deployed by an older modelci?); redeploy "
                           f"{environment} once with this version")
    repo, digest = split_digest_ref(image)
    labels = registry_reader(repo.registry).labels(repo.path, digest)
    if labels.get(REVISION_LABEL) != dep.get("sha"):
        raise ModelCIError(f"{url}/lineage names image {digest[:19]}… of commit "
                           f"{str(labels.get(REVISION_LABEL))[:8]}, but GitLab's last successful "
                           f"deployment of {environment} is commit {str(dep.get('sha'))[:8]}; investigate")
    if not labels.get(MODEL_LABEL) or labels[MODEL_LABEL] != lineage.get("sha256"):
        raise ModelCIError(f"{url}/lineage reports model {str(lineage.get('sha256'))[:12]}…, but its image "
                           f"{digest[:19]}… is labelled {str(labels.get(MODEL_LABEL))[:12]}…; investigate")
    return {"deployment_id": dep.get("id"), "commit": dep.get("sha"), "url": url, "image": image,
            "digest": digest, "model_sha256": labels[MODEL_LABEL],
            "model_version": labels.get("io.modelci.model.version") or lineage.get("model_version")}


# ---- the production deploy's check ----------------------------------------------------------------
def check_release(given_image: str | None, environment: str,
                  workdir: str | os.PathLike[str] = ".") -> dict[str, Any]:
    """Refuse unless this image may go to `environment` (module docstring). Returns
    {"image", "model_sha256", "basis": "verdict" | "same-model", ...}."""
    from .oci import MODEL_LABEL, split_digest_ref

    refuse_committed_outputs(workdir)
    image = built_image(given_image, workdir)
    repo, digest = split_digest_ref(image)
    sha = registry_reader(repo.registry).labels(repo.path, digest).get(MODEL_LABEL) or ""
    if len(sha) != 64:
        raise ModelCIError(f"{image}: no {MODEL_LABEL} label; not a modelci serving image")
    verdict = passing_verdict(sha, workdir)
    if verdict is not None:
        return {"image": image, "model_sha256": sha, "basis": "verdict", "verdict": verdict.get("verdict")}
    serving = production_release(environment)
    if serving is None or serving["model_sha256"] != sha:
        now = "nothing yet" if serving is None else f"model {serving['model_sha256'][:12]}…"
        raise ModelCIError(f"{BUILD_VERDICT}: no gate verdict in this pipeline, and the image's model "
                           f"{sha[:12]}… is not the one {environment} runs ({now}); a new model needs a "
                           "passing gate")
    return {"image": image, "model_sha256": sha, "basis": "same-model", "serving": serving}
