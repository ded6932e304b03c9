"""The demo: the whole pipeline on the example model, locally, end to end.

1. first pipeline: train 1.0.0, gate, build, staging, and the manual production job
2. a data commit (new rows appended to model/data/wine.csv): retrain 1.1.0, gate against
   production's model, build, staging; production still serves 1.0.0
3. the manual promotion, as a person would press it: production serves 1.1.0
Leaves a registry on 127.0.0.1:5000, staging on 127.0.0.1:9001 and production on 127.0.0.1:9002.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import localci  # noqa: E402

STATE = localci.ROOT / ".modelci-local" / "demo"
STAGING, PRODUCTION = "http://127.0.0.1:9001", "http://127.0.0.1:9002"


def banner(text: str) -> None:
    print(f"\n\033[1;35m==> {text}\033[0m", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quiet", action="store_true", help="do not stream the job logs")
    ap.add_argument("--down", action="store_true", help="stop the demo's environments and registry")
    args = ap.parse_args()
    if args.down:
        return down()
    reset()
    registry = localci.Registry(5000, STATE / "registry").start()
    localci.publish_proxy_image(registry)  # what a release publishes; deploys pull it
    gitlab = localci.LocalGitLab(registry, extra={
        "MODELCI_STAGING_URL": STAGING, "MODELCI_PRODUCTION_URL": PRODUCTION,
        "MODELCI_DEPLOY_NAMESPACE": "demo",
        # No GitLab runs here: the gate's MR/commit note and the package-registry copy are skipped (the e2e tests post it to a
        # stand-in GitLab API). Everything else is real: Docker, the registry, the pipeline.
        "MODELCI_REPORT": "false", "MODELCI_MODEL_REGISTRY": "none"})
    repo = localci.make_project(STATE / "repo")
    timings = {}

    def run(title: str, **kw) -> None:
        banner(title)
        # the local stand-in of GitLab's API: the champion and production's release checks read its
        # deployments API (kept across the demo's pipelines), as they read GitLab's in CI
        res = localci.run_pipeline(repo, gitlab, echo=not args.quiet, fake_gitlab=STATE / "gitlab-state.json", **kw)
        timings[title] = round(res.seconds, 1)
        print(f"jobs: {json.dumps(res.jobs)}  ({res.seconds:.0f}s)")
        if res.returncode != 0:
            print(res.output[-4000:] if args.quiet else "", file=sys.stderr)
            raise SystemExit(f"demo: the pipeline failed at step '{title}'; see the log above")

    def show() -> None:
        for name, url in (("staging", STAGING), ("production", PRODUCTION)):
            lin = localci.lineage(url)
            print(f"  {name:<10} {url}  model {lin['name']} {lin['model_version']} "
                  f"sha256 {lin['sha256'][:12]}…")

    run("pipeline 1: first model, to staging, then the manual production job",
        manual=["modelci:production"])
    show()
    data = repo / "model" / "data"
    with open(data / "wine.csv", "a") as fh:
        fh.write((data / "new-batch.csv").read_text())  # header-less rows, see model/data/README.md
    localci.commit(repo, "data: append a new batch of wine measurements")
    run("pipeline 2: a data commit retrains, gates against production, deploys to staging")
    show()
    banner("production still serves the previous model until a person promotes; pressing "
           "the manual 'modelci:production' job now")
    time.sleep(1)
    run("pipeline 2, manual job modelci:production", jobs=["modelci:production"])

    banner("done: both environments are running")
    show()
    import pandas as pd

    rows = pd.read_csv(data / "wine.csv").tail(2)
    features = [i["name"] for i in localci.model_inputs(STAGING)]
    records = json.loads(rows[features].to_json(orient="records"))
    for name, url in (("staging", STAGING), ("production", PRODUCTION)):
        print(f"  sample prediction from {name}: POST {url}/predict -> {localci.predict(url, records)}")
    print(f"\n  staging:    {STAGING}/v2/models/wine   production: {PRODUCTION}/v2/models/wine")
    print("  registry:   http://127.0.0.1:5000/v2/mlops/wine/serving/tags/list")
    print(f"  timings (s): {json.dumps(timings)}")
    print("  stop everything: bash tools/demo.sh --down")
    return 0


def reset() -> None:
    """Every demo is a new project (make_project below): stop the previous demo's environments and
    registry and forget its GitLab (deployments, notes) and image tags, so a second run starts as the
    first did instead of meeting a production its GitLab records but nobody runs any more."""
    if (STATE / "registry").exists() or (STATE / "gitlab-state.json").exists():
        print("demo: starting over (the previous demo's environments, registry tags and GitLab state go)")
        down(quiet=True)
    shutil.rmtree(STATE / "registry", ignore_errors=True)
    for name in ("gitlab-state.json", "gitlab-deployments.json"):
        (STATE / name).unlink(missing_ok=True)


def down(quiet: bool = False) -> int:
    import subprocess

    for env, url in (("staging", STAGING), ("production", PRODUCTION)):
        subprocess.run([str(localci.VENV_BIN / "modelci"), "deploy", "--teardown", "--namespace", "demo",
                        "--environment", env, "--url", url], check=False, stdout=subprocess.DEVNULL)
    subprocess.run(["pkill", "-f", f"docker-registry serve {STATE / 'registry'}"], check=False)
    for _ in range(50):  # the next start binds the same port
        if not localci.http_ok("http://127.0.0.1:5000/v2/", timeout=0.2):
            break
        time.sleep(0.1)
    if not quiet:
        print("demo stopped (registry data kept in .modelci-local/demo/registry)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
