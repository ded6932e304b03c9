"""Zero-downtime check: bounded constant load on an environment's address while a deploy switches it.

  DOCKER_HOST=ssh://deploy@host python bench/deploy_under_load.py --url http://HOST:9001 \
      --image REPO@sha256:... [--environment staging] [--namespace demo] [--threads 4] [--rate 100]

Sends 1-row /predict requests through the environment's address (the deploy host's proxy, as users
reach it) from several threads, each on a NEW connection and without retries, at a constant total
rate (--rate requests/s, bounded: at most --max-seconds), for the whole deploy (`modelci deploy`
with this process's DOCKER_HOST), and prints the counts: requests, failures (with the first
errors), responses per model version seen, latency percentiles. Exit 1 if any request failed.
Also importable: `LoadGenerator` is what tests/test_deploy.py uses.
"""
from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import threading
import time

import requests


class LoadGenerator:
    def __init__(self, url: str, records: list[dict], threads: int = 4, max_seconds: float = 120.0,
                 rate: float = 100.0):
        self.url = url.rstrip("/") + "/predict"
        self.interval = threads / rate if rate > 0 else 0.0  # each thread's share of the constant rate
        self.latencies: list[float] = []
        self.records = records
        self.threads = threads
        self.max_seconds = max_seconds
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failed = 0
        self.errors: list[str] = []
        self.versions: collections.Counter[str] = collections.Counter()
        self._workers: list[threading.Thread] = []

    def _work(self) -> None:
        deadline = time.time() + self.max_seconds
        next_at = time.time()
        while not self.stop.is_set() and time.time() < deadline:
            next_at += self.interval
            pause = next_at - time.time()
            if pause > 0:
                time.sleep(pause)
            t0 = time.time()
            try:
                # a new connection per request (no keep-alive reuse, no retries)
                resp = requests.post(self.url, json=self.records, timeout=10,
                                     headers={"Connection": "close"})
                if resp.status_code == 200:
                    version = str(resp.json().get("model_version"))
                    with self.lock:
                        self.ok += 1
                        self.versions[version] += 1
                        self.latencies.append(time.time() - t0)
                    continue
                err = f"HTTP {resp.status_code}: {resp.text[:100]}"
            except requests.RequestException as exc:
                err = f"{exc.__class__.__name__}: {str(exc)[:100]}"
            with self.lock:
                self.failed += 1
                if len(self.errors) < 5:
                    self.errors.append(err)

    def __enter__(self) -> LoadGenerator:
        for _ in range(self.threads):
            t = threading.Thread(target=self._work, daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self._workers:
            t.join(15)

    def counts(self) -> dict:
        lat = sorted(self.latencies)
        pct = {f"p{q}_ms": round(1000 * lat[min(len(lat) - 1, int(len(lat) * q / 100))], 1)
               for q in (50, 99)} if lat else {}
        return {"requests": self.ok + self.failed, "ok": self.ok, "failed": self.failed,
                "versions": dict(self.versions), "errors": self.errors, **pct}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--image", required=True, help="image to deploy, REPO@sha256:…")
    ap.add_argument("--environment", default="staging")
    ap.add_argument("--namespace", default="demo")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--rate", type=float, default=100, help="total requests per second [100]")
    ap.add_argument("--max-seconds", type=float, default=120)
    args = ap.parse_args()
    lineage = requests.get(args.url.rstrip("/") + "/lineage", timeout=5).json()
    meta = requests.get(f"{args.url.rstrip('/')}/v2/models/{lineage['name']}", timeout=5).json()
    record = {i["name"]: (0.0 if i["datatype"].startswith("FP") else 0 if i["datatype"].startswith("INT")
                          else "x") for i in meta["inputs"]}
    with LoadGenerator(args.url, [record], args.threads, args.max_seconds, args.rate) as load:
        time.sleep(1)
        t0 = time.time()
        proc = subprocess.run(["modelci", "deploy", "--environment", args.environment, "--url", args.url,
                               "--image", args.image, "--namespace", args.namespace],
                              capture_output=True, text=True)
        deploy_s = time.time() - t0
        time.sleep(1)
    result = {"deploy_exit": proc.returncode, "deploy_s": round(deploy_s, 1), **load.counts()}
    print(json.dumps(result, indent=2))
    return 0 if proc.returncode == 0 and load.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
