"""Run this project's real GitLab pipeline locally: a registry, a git repo with an `origin`, and
gitlab-ci-local with every GitLab address pointed at loopback. Used by the demo and the e2e tests.

Nothing here leaves the machine: CI_API_V4_URL, CI_SERVER_*, CI_REGISTRY* and tokens are loopback
values passed with --variable (gitlab-ci-local's defaults point at gitlab.com).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(os.environ.get("MODELCI_VENV", ROOT / ".venv")) / "bin"
BASE_IMAGE = os.environ.get("MODELCI_BASE_IMAGE", "local/python:3.11-bookworm")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|\x1b\[0K")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
            return resp.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


@dataclass
class Registry:
    """A real CNCF distribution registry (Debian's docker-registry) on a loopback port."""

    port: int
    root: Path
    htpasswd: tuple[str, str] | None = None
    proc: subprocess.Popen | None = None
    # GitLab's way instead of htpasswd: {"realm": <GitLab>/jwt/auth, "issuer": …, "rootcertbundle": PEM path}
    token_auth: dict[str, str] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Registry:
        if http_ok(f"http://{self.host}/v2/"):
            return self  # already running (the demo's registry survives between runs)
        self.root.mkdir(parents=True, exist_ok=True)
        auth = ""
        if self.htpasswd:
            user, password = self.htpasswd
            hp = self.root / "htpasswd"
            out = subprocess.run(["htpasswd", "-Bbn", user, password], check=True, capture_output=True,
                                 text=True).stdout
            hp.write_text(out)
            auth = f"auth: {{htpasswd: {{realm: modelci, path: {hp}}}}}\n"
        if self.token_auth:
            t = self.token_auth
            auth = (f"auth: {{token: {{realm: \"{t['realm']}\", service: container_registry, issuer: "
                    f"\"{t['issuer']}\", rootcertbundle: \"{t['rootcertbundle']}\"}}}}\n")
        cfg = self.root / "config.yml"
        cfg.write_text(
            "version: 0.1\n"
            f"storage: {{filesystem: {{rootdirectory: {self.root / 'data'}}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: {self.host}}}\n" + auth)
        log = open(self.root / "registry.log", "ab")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(cfg)], stdout=log, stderr=log,
                                     start_new_session=True)
        for _ in range(100):
            if http_ok(f"http://{self.host}/v2/"):
                return self
            time.sleep(0.1)
        raise RuntimeError(f"registry on {self.host} did not start; see {self.root / 'registry.log'}")

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)


def git(repo: Path, *args: str, check: bool = True) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "modelci", "GIT_AUTHOR_EMAIL": "modelci@example.invalid",
           "GIT_COMMITTER_NAME": "modelci", "GIT_COMMITTER_EMAIL": "modelci@example.invalid"}
    return subprocess.run(["git", "-C", str(repo), *args], check=check, capture_output=True, text=True,
                          env=env).stdout.strip()


def tracked_files(src: Path = ROOT) -> list[str]:
    out = subprocess.run(["git", "-C", str(src), "ls-files", "-co", "--exclude-standard"], check=True,
                         capture_output=True, text=True).stdout
    return [f for f in out.splitlines() if f and (src / f).is_file()]


# The project path pipelines run under (CI_PROJECT_PATH, and so the registry repository of the serving
# image). End-to-end modules sharing the session's registry set their own, so that one module's image
# tags never become another's "previous versions".
PROJECT_PATH = "mlops/wine"


def make_project(dest: Path, project_path: str | None = None, src: Path = ROOT) -> Path:
    """A fresh git repo holding this project's files, with a loopback `origin` URL (never contacted:
    gitlab-ci-local derives CI_PROJECT_PATH and CI_SERVER_FQDN from it) and origin/main at an empty
    base commit, so the first pipeline sees every file as changed."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "commit", "-q", "--allow-empty", "-m", "empty base")
    git(dest, "update-ref", "refs/remotes/origin/main", "HEAD")
    git(dest, "remote", "add", "origin", f"ssh://git@127.0.0.1:2222/{project_path or PROJECT_PATH}.git")
    git(dest, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/main")
    for rel in tracked_files(src):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, target)
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "modelci example project")
    return dest


def commit(repo: Path, message: str) -> str:
    """Commit all changes as the next default-branch push: origin/main moves to the previous head,
    so `rules: changes` sees exactly this commit's changes (as GitLab does for a push)."""
    git(repo, "update-ref", "refs/remotes/origin/main", "HEAD")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@dataclass
class PipelineResult:
    returncode: int
    output: str
    jobs: dict[str, str] = field(default_factory=dict)  # job name -> "passed" | "failed" | "warning"
    seconds: float = 0.0
    job_seconds: dict[str, float] = field(default_factory=dict)

    def ran(self, job: str) -> bool:
        return job in self.jobs


@dataclass
class LocalGitLab:
    """Loopback values for every GitLab address a job might use."""

    registry: Registry
    api_url: str = "http://127.0.0.1:9/api/v4"  # discard port: nothing listens unless a test serves it
    job_token: str = "modelci-local-job-token"
    extra: dict[str, str] = field(default_factory=dict)

    def variables(self, project_path: str | None = None) -> dict[str, str]:
        project_path = project_path or PROJECT_PATH
        server = self.api_url.rsplit("/api/v4", 1)[0]
        v = {
            "CI_API_V4_URL": self.api_url, "CI_SERVER_URL": server, "CI_SERVER_PROTOCOL": "http",
            "CI_SERVER_PORT": server.rsplit(":", 1)[-1], "CI_PROJECT_URL": f"{server}/{project_path}",
            "CI_REGISTRY": self.registry.host, "CI_REGISTRY_IMAGE": f"{self.registry.host}/{project_path}",
            "CI_JOB_TOKEN": self.job_token, "MODELCI_BASE_IMAGE": BASE_IMAGE,
            "MODELCI_TOOLS_IMAGE": "local/modelci-tools:dev", "MODELCI_BUILD_TOOLS_IMAGE": "false",
            "MODELCI_PROXY_IMAGE": proxy_image_ref(self.registry),
        }
        if self.registry.htpasswd:
            v["CI_REGISTRY_USER"], v["CI_REGISTRY_PASSWORD"] = self.registry.htpasswd
        v.update(self.extra)
        return v


JOB_LINE = re.compile(r"^\s*(PASS|FAIL|WARN)\s+(?:\[\s*([\d.]+)\s*(ms|s|min)\]\s+)?(\S+)", re.M)
UNIT = {"ms": 0.001, "s": 1.0, "min": 60.0}


class FakeGitLabProcess:
    """tests/gitlab_fake.py as a separate process (jobs run by gitlab-ci-local are processes too),
    knowing every commit of the repo. Its state (notes, uploads, packages) is dumped to a JSON file."""

    def __init__(self, repo: Path, state_file: Path, token: str, project: str | None = None,
                 mrs: tuple[int, ...] = (), job_token: str | None = None):
        commits = git(repo, "rev-list", "--all").split()
        # deployments outlive one pipeline run, as on GitLab (the champion and release checks read them)
        args = [str(VENV_BIN / "python"), str(ROOT / "tests" / "gitlab_fake.py"), "--port", "0",
                "--token", token, "--project", project or f"1217:{PROJECT_PATH}", "--state", str(state_file),
                "--deployments", str(repo.parent / "gitlab-deployments.json")]
        if job_token:
            args += ["--job-token", job_token]
        for c in commits:
            args += ["--commit", c]
        for m in mrs:
            args += ["--mr", str(m)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the fake GitLab did not start")
        self.info = json.loads(line)
        self.api_url = self.info["api_url"]
        self.project_id = int((project or "1217").split(":", 1)[0])

    def record_deployments(self, result: PipelineResult, repo: Path, variables: dict[str, str]) -> None:
        """What GitLab does when a deploy job with `environment:` succeeds: a deployment of the
        commit the job's pipeline built (the deployed image's revision label: a rollback re-run
        deploys an older pipeline's commit), with the environment's URL."""
        import docker

        for env in ("staging", "production"):
            if result.jobs.get(f"modelci:{env}") != "passed":
                continue
            url = variables.get(f"MODELCI_{env.upper()}_URL") or variables.get(f"{env.upper()}_URL", "")
            sha = git(repo, "rev-parse", "HEAD")
            try:
                image = lineage(url).get("image") or ""
                sha = docker.from_env().images.get(image).labels.get("org.opencontainers.image.revision") or sha
            except Exception:  # noqa: BLE001 - the job passed; keep HEAD as its commit
                pass
            body = json.dumps({"project": self.project_id, "environment": env, "sha": sha,
                               "external_url": url}).encode()
            req = urllib.request.Request(self.info["url"] + "/__fake__/deployment", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=10).read()  # noqa: S310 - loopback only

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def run_pipeline(repo: Path, gitlab: LocalGitLab, *, manual: list[str] | None = None,
                 jobs: list[str] | None = None, variables: dict[str, str] | None = None,
                 project_path: str | None = None, extra_args: list[str] | None = None,
                 timeout: float = 1200, echo: bool = False, fake_gitlab: Path | None = None,
                 mrs: tuple[int, ...] = ()) -> PipelineResult:
    """Run the pipeline with the shell executor, each job in its own copy of the tracked files (as a
    runner would). With `fake_gitlab` (a state-file path) a fake GitLab API serves the jobs for this
    run, and MODELCI_GITLAB_TOKEN is set to its token."""
    return _gitlab_ci_local(repo, gitlab, ["--shell-isolation", "--force-shell-executor"],
                            project_path=project_path, manual=manual, jobs=jobs, variables=variables,
                            extra_args=extra_args, timeout=timeout, echo=echo, fake_gitlab=fake_gitlab,
                            mrs=mrs)


def seed_own_component_includes(repo: Path) -> None:
    """Work around gitlab-ci-local 4.72.0: inside a component of this very project at $CI_COMMIT_SHA
    (how a component project tests itself), it turns the composite's `include: local:` into a
    project include fetched from the remote, where GitLab reads this project's own files. Seed its
    include cache with this commit's templates so they are read locally, as GitLab would."""
    url = git(repo, "remote", "get-url", "origin", check=False)
    m = re.match(r"^(?:ssh://)?(?:[^@/]+@)?([^:/]+)(?::\d+)?[:/](.+?)(?:\.git)?$", url or "")
    if not m or not (repo / "templates").is_dir():
        return
    host, project = m.group(1), m.group(2)
    dest = repo / ".gitlab-ci-local" / "includes" / host / project / git(repo, "rev-parse", "HEAD") / "templates"
    dest.mkdir(parents=True, exist_ok=True)
    for tpl in (repo / "templates").glob("*.yml"):
        shutil.copy2(tpl, dest / tpl.name)


def _gitlab_ci_local(repo: Path, gitlab: LocalGitLab, executor_args: list[str], *, project_path: str | None,
                     manual: list[str] | None = None, jobs: list[str] | None = None,
                     variables: dict[str, str] | None = None, extra_args: list[str] | None = None,
                     env: dict[str, str] | None = None, timeout: float = 1200, echo: bool = False,
                     fake_gitlab: Path | None = None, mrs: tuple[int, ...] = ()) -> PipelineResult:
    """gitlab-ci-local with loopback GitLab variables: output streamed, job results parsed."""
    fake = None
    if fake_gitlab is not None:
        token = "glpat-local-" + os.urandom(6).hex()
        fake = FakeGitLabProcess(repo, fake_gitlab, token, project=f"1217:{project_path or PROJECT_PATH}", mrs=mrs,
                                 job_token=gitlab.job_token)
        gitlab = LocalGitLab(gitlab.registry, api_url=fake.api_url, job_token=gitlab.job_token,
                             extra={**gitlab.extra, "MODELCI_GITLAB_TOKEN": token})
    seed_own_component_includes(repo)
    merged = {**gitlab.variables(project_path), **(variables or {})}
    args = [_gcl(), "--no-color", "--timestamps", "--max-job-name-padding", "0", *executor_args]
    for k, v in merged.items():
        args += ["--variable", f"{k}={v}"]
    for m in manual or []:
        args += ["--manual", m]
    args += extra_args or []
    args += jobs or []
    run_env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
               "GCL_IGNORE_PREDEFINED_VARS": ",".join(merged), **(env or {})}
    t0 = time.time()
    lines: list[str] = []
    try:
        proc = subprocess.Popen(args, cwd=repo, env=run_env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if echo:
                print(line, end="", flush=True)
        proc.wait(timeout)
        out = ANSI.sub("", "".join(lines))
        result = PipelineResult(proc.returncode, out, seconds=time.time() - t0)
        for status, num, unit, job in JOB_LINE.findall(out):
            result.jobs[job] = {"PASS": "passed", "FAIL": "failed", "WARN": "warning"}[status]
            if num:
                result.job_seconds[job] = round(float(num) * UNIT[unit], 2)
        if fake:
            fake.record_deployments(result, repo, merged)
    finally:
        if fake:
            fake.stop()
    result.gitlab_variables = merged  # type: ignore[attr-defined]  # what the jobs were given
    return result


def lineage(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/lineage", timeout=5) as resp:  # noqa: S310 - loopback only
        return json.load(resp)


def predict(url: str, records: list[dict]) -> list:
    req = urllib.request.Request(f"{url}/predict", data=json.dumps(records).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback only
        return json.load(resp)["predictions"]


def model_inputs(url: str) -> list[dict]:
    """The input signature from the V2 model metadata of the model served at url."""
    name = lineage(url)["name"]
    with urllib.request.urlopen(f"{url}/v2/models/{name}", timeout=5) as resp:  # noqa: S310 - loopback
        return json.load(resp)["inputs"]


def listing(result: PipelineResult) -> list[dict]:
    """The JSON job list printed by `gitlab-ci-local --list-json` (after its log lines)."""
    out = result.output
    start = out.index("\n[\n") + 1 if not out.startswith("[") else 0
    return json.loads(out[start:])


# --- Rule matrix, tools image, consumer repositories (tests/test_rules.py, tests/test_consumer.py) ---

def _gcl() -> str:
    gcl = shutil.which("gitlab-ci-local", path=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
    if not gcl:
        raise RuntimeError("gitlab-ci-local not found: run tools/harness.sh first")
    return gcl


def _gcl_query(repo: Path, gitlab: LocalGitLab, flag: str, variables: dict[str, str] | None,
               unset: tuple[str, ...] | list[str], project_path: str | None, timeout: float,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    seed_own_component_includes(repo)
    merged = {**gitlab.variables(project_path), **(variables or {})}
    args = [_gcl(), flag]
    for k, v in merged.items():
        args += ["--variable", f"{k}={v}"]
    for k in unset:
        args += ["--unset-variable", k]
    run_env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
               "GCL_IGNORE_PREDEFINED_VARS": ",".join([*merged, *unset]), **(env or {})}
    proc = subprocess.run(args, cwd=repo, env=run_env, capture_output=True, text=True, timeout=timeout)
    proc.stdout = ANSI.sub("", proc.stdout)
    return proc


def list_jobs(repo: Path, gitlab: LocalGitLab, *, variables: dict[str, str] | None = None,
              unset: tuple[str, ...] | list[str] = (), project_path: str | None = None,
              timeout: float = 60, env: dict[str, str] | None = None) -> dict[str, str]:
    """Which jobs a pipeline would hold, without running any: gitlab-ci-local's `--list-json`
    evaluates every job's `rules` (if, changes) with these variables. Returns job name -> `when`
    (on_success, manual, never, ...); a job whose rules exclude it has `when: never`.
    `unset` removes predefined variables (a merge-request or tag pipeline has no CI_COMMIT_BRANCH);
    `env` is added to gitlab-ci-local's environment (e.g. GIT_SSH_COMMAND for remote includes)."""
    proc = _gcl_query(repo, gitlab, "--list-json", variables, unset, project_path, timeout, env)
    out = proc.stdout
    start = 0 if out.startswith("[") else out.find("\n[") + 1
    if proc.returncode != 0 or start <= 0 and not out.startswith("["):
        raise RuntimeError(f"gitlab-ci-local --list-json failed ({proc.returncode}):\n{out}\n{proc.stderr}")
    return {j["name"]: j["when"] for j in json.loads(out[start:])}


def check_needs(repo: Path, gitlab: LocalGitLab, *, variables: dict[str, str] | None = None,
                unset: tuple[str, ...] | list[str] = (), project_path: str | None = None,
                timeout: float = 60) -> tuple[bool, str]:
    """gitlab-ci-local's `--validate-dependency-chain`: every job an active job needs (and is not
    optional) is active too. Returns (ok, output)."""
    proc = _gcl_query(repo, gitlab, "--validate-dependency-chain", variables, unset, project_path, timeout)
    return proc.returncode == 0, proc.stdout + ANSI.sub("", proc.stderr)


def build_tools_image(tag: str, base_image: str = BASE_IMAGE, src: Path = ROOT) -> str:
    """Build images/tools.Dockerfile (the image the components run in) from src's tracked files as
    `tag`, on the local base image, with host networking. The context is a copy of the tracked files
    without the root .dockerignore (that one is written for the serving image and excludes the CLI's
    sources). Docker's layer cache makes a rebuild of an unchanged tree take a few seconds. Returns
    the image id."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="modelci-tools-ctx-") as tmp:
        ctx = Path(tmp)
        for rel in tracked_files(src):
            if rel == ".dockerignore":
                continue
            (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, ctx / rel)
        proc = subprocess.run(
            ["docker", "build", "--network", "host", "--build-arg", f"BASE_IMAGE={base_image}",
             "-f", str(ctx / "images" / "tools.Dockerfile"), "-t", tag, "--iidfile", str(ctx / ".iid"),
             str(ctx)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"docker build of the tools image failed:\n{proc.stdout[-4000:]}\n"
                               f"{proc.stderr[-4000:]}")
        return (ctx / ".iid").read_text().strip()


def push_image(source: str, target: str, registry: Registry) -> None:
    """Tag a local image as `target` (in `registry`) and push it, logging in through the Docker SDK
    when the registry has a password (never on a command line)."""
    import docker

    client = docker.from_env()
    repo, _, tag = target.rpartition(":")
    client.images.get(source).tag(repo, tag=tag)
    auth = None
    if registry.htpasswd:
        auth = {"username": registry.htpasswd[0], "password": registry.htpasswd[1]}
    for line in client.images.push(repo, tag=tag, auth_config=auth, stream=True, decode=True):
        if "error" in line:
            raise RuntimeError(f"push of {target} failed: {line['error']}")


HELPER_IMAGE = os.environ.get("MODELCI_HELPER_IMAGE", "local/ci-helper:bookworm")


def proxy_image_ref(registry: Registry) -> str:
    """Where a release would publish the deploy proxy image, in the local registry: the deploy
    component's default (`$CI_REGISTRY/modelci/modelci/proxy:<version>`) with CI_REGISTRY local."""
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    return f"{registry.host}/modelci/modelci/proxy:{version.group(1) if version else 'dev'}"


def publish_proxy_image(registry: Registry, base_image: str = BASE_IMAGE) -> str:
    """Build images/proxy.Dockerfile on the main engine (as the release job does) and push it to the
    local registry, so deploys pull it onto their target. Returns the reference."""
    ref = proxy_image_ref(registry)
    proc = subprocess.run(["docker", "build", "-q", "--network", "host", "--build-arg", f"BASE_IMAGE={base_image}",
                           "-f", str(ROOT / "images" / "proxy.Dockerfile"), "-t", ref, str(ROOT)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"docker build of the proxy image failed:\n{proc.stderr[-3000:]}")
    push_image(ref, ref, registry)
    return ref


def run_docker_pipeline(repo: Path, gitlab: LocalGitLab, *, project_path: str,
                        manual: list[str] | None = None, jobs: list[str] | None = None,
                        variables: dict[str, str] | None = None, volumes: list[str] | None = None,
                        env: dict[str, str] | None = None, fake_gitlab: Path | None = None,
                        mrs: tuple[int, ...] = (), timeout: float = 1800, echo: bool = False,
                        extra_args: list[str] | None = None) -> PipelineResult:
    """Run a repo's pipeline as a runner with the Docker executor would: every job in its `image:`
    (host networking, images already present locally, the local helper image that has bash and
    rsync), the host's Docker socket mounted (no dind service can run here) plus `volumes`.
    `env` is added to gitlab-ci-local's own environment (e.g. GIT_SSH_COMMAND for remote includes).
    With `fake_gitlab` (a state-file path) a fake GitLab API serves the jobs, knowing `project_path`
    as project 1217 (gitlab-ci-local's CI_PROJECT_ID), and MODELCI_GITLAB_TOKEN is its token."""
    docker_args = ["--network", "host", "--pull-policy", "if-not-present", "--helper-image", HELPER_IMAGE,
                   "--cleanup", "--volume", "/var/run/docker.sock:/var/run/docker.sock"]
    for v in volumes or []:
        docker_args += ["--volume", v]
    return _gitlab_ci_local(repo, gitlab, docker_args, project_path=project_path, manual=manual, jobs=jobs,
                            variables=variables, env=env, timeout=timeout, echo=echo,
                            fake_gitlab=fake_gitlab, mrs=mrs, extra_args=extra_args)
