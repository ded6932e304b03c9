#!/usr/bin/env python3
"""Serving benchmark: this app in its image vs MLServer 1.7.1 vs Flask+gunicorn, on one core each.

Every server is pinned to core 0 (`taskset -c 0`, or the container's cpuset) and the load generator to
core 1; all traffic is loopback (127.0.0.1) and every loop is bounded in requests and in time.
Measures:
  * 1-row V2 infer throughput (requests/s) and latency p50/p99 at a fixed concurrency,
  * the in-process predict rate of the same model on a prebuilt 1-row DataFrame (same core),
  * 1000-row batch latency over HTTP (V2 infer) vs in-process predict,
  * image size vs base image + dependencies (venv layer) + model,
  * bytes pushed to a registry on a model-only change (a real local registry), and that rebuild's time.
and prints the ratios the serving issue asks for (>= 2x MLServer, >= 1.3x Flask, >= 75% in-process).

Usage (from the repo root, with the project venv):
  .venv/bin/python bench/serving_bench.py [--model DIR] [--requests 4000] [--duration 15]
         [--concurrency 4] [--skip mlserver,flask,image,push,venv] [--json out.json]

MLServer and Flask run in their own virtualenvs under .modelci-local/bench/ (created on first use
with pip from the package index; the ML runtime is pinned to app/requirements.txt's versions so all
servers run the same model code). See bench/README-serving.md.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("MODELCI_STATE_DIR", ROOT / ".modelci-local")) / "bench"
BASE_IMAGE = os.environ.get("MODELCI_BASE_IMAGE", "local/python:3.11-bookworm")
SERVER_CORE, CLIENT_CORE = "0", "1"
MLSERVER_VERSION = "1.7.1"
ML_RUNTIME = ("scikit-learn", "numpy", "scipy", "pandas", "joblib", "threadpoolctl", "cloudpickle")


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(port: int, method: str, path: str, body: bytes | None = None, timeout: float = 10) -> tuple[int, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method,
                                 headers={"content-type": "application/json"} if body else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # loopback only
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(port: int, path: str, proc: subprocess.Popen | None = None, timeout: float = 120,
               container: Any = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before becoming ready")
        if container is not None:
            container.reload()
            if container.status == "exited":
                raise RuntimeError("container exited: " + container.logs().decode(errors="replace")[-2000:])
        with contextlib.suppress(OSError):
            if http(port, "GET", path, timeout=2)[0] == 200:
                return
        time.sleep(0.25)
    raise RuntimeError(f"127.0.0.1:{port}{path} not ready after {timeout}s")


def _tree(pid: int) -> list[int]:
    """pid and all its descendants (gunicorn's worker, MLServer's helpers)."""
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_seconds(pid: int | None) -> float:
    """User+system CPU time of a process tree: a cost per request that other load on the machine
    barely changes (unlike requests/s)."""
    if not pid:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in _tree(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / tick


def pinned(cmd: list[str], core: str) -> list[str]:
    return ["taskset", "-c", core, *cmd] if shutil.which("taskset") else cmd


# ----------------------------------------------------------------------------- load generator
def client_main(argv: list[str]) -> int:
    """`serving_bench.py --client PORT PATH BODYFILE N CONC DURATION`: closed-loop keep-alive load over
    CONC connections; reconnects when the server closes. Prints one JSON line."""
    port, path, body_file, n, conc, duration = argv
    port_i, n_i, conc_i, dur = int(port), int(n), int(conc), float(duration)
    body = Path(body_file).read_bytes()
    req = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    sel = selectors.DefaultSelector()
    state: dict[socket.socket, list[Any]] = {}

    def connect() -> socket.socket:
        s = socket.create_connection(("127.0.0.1", port_i))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        state[s] = [b"", 0.0]
        sel.register(s, selectors.EVENT_READ)
        return s

    sent = done = errors = 0
    lat: list[float] = []
    t0 = time.perf_counter()
    deadline = t0 + dur

    def fire(s: socket.socket) -> None:
        nonlocal sent
        state[s][1] = time.perf_counter()
        s.sendall(req)
        sent += 1

    for _ in range(conc_i):
        fire(connect())
    while done < n_i and time.perf_counter() < deadline:
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            st = state[s]
            try:
                chunk = s.recv(262144)
            except BlockingIOError:
                continue
            if not chunk:  # server closed the connection: open another, resend
                sel.unregister(s)
                s.close()
                del state[s]
                sent -= 1
                fire(connect())
                continue
            st[0] += chunk
            buf = st[0]
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                continue
            head = buf[:i].lower()
            j = head.find(b"content-length:")
            e = head.find(b"\r\n", j)
            clen = int(head[j + 15:e if e > 0 else None])
            if len(buf) < i + 4 + clen:
                continue
            if buf[9:12] != b"200":
                errors += 1
            st[0] = buf[i + 4 + clen:]
            now = time.perf_counter()
            lat.append(now - st[1])
            done += 1
            if b"connection: close" in head:
                sel.unregister(s)
                s.close()
                del state[s]
                if sent < n_i:
                    fire(connect())
            elif sent < n_i:
                fire(s)
    elapsed = time.perf_counter() - t0
    lat.sort()
    print(json.dumps({
        "requests": done, "errors": errors, "seconds": elapsed, "rps": done / elapsed if elapsed else 0,
        "p50_ms": lat[len(lat) // 2] * 1e3 if lat else None,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3 if lat else None,
    }))
    return 0


def load(port: int, path: str, body: bytes, n: int, conc: int, duration: float, work: Path) -> dict[str, Any]:
    body_file = work / f"body-{secrets.token_hex(4)}.json"
    body_file.write_bytes(body)
    warm = subprocess.run(pinned([sys.executable, __file__, "--client", str(port), path, str(body_file),
                                  str(max(50, n // 10)), str(conc), str(duration)], CLIENT_CORE),
                          capture_output=True, text=True, check=True)
    if json.loads(warm.stdout)["errors"]:
        raise RuntimeError(f"warm-up requests to :{port}{path} failed")
    out = subprocess.run(pinned([sys.executable, __file__, "--client", str(port), path, str(body_file),
                                 str(n), str(conc), str(duration)], CLIENT_CORE),
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def batch_latency(port: int, path: str, body: bytes, k: int, work: Path) -> float:
    """Median latency of K sequential 1000-row requests (one keep-alive connection, client on core 1)."""
    status, resp = http(port, "POST", path, body, timeout=60)
    if status != 200:
        raise RuntimeError(f"batch request failed: {status} {resp!r}"[:500])
    body_file = work / f"batch-{secrets.token_hex(4)}.json"
    body_file.write_bytes(body)
    out = subprocess.run(pinned([sys.executable, __file__, "--client", str(port), path, str(body_file),
                                 str(k), "1", "60"], CLIENT_CORE), capture_output=True, text=True, check=True)
    r = json.loads(out.stdout)
    if r["errors"]:
        raise RuntimeError(f"{r['errors']} batch requests to :{port}{path} failed")
    return float(r["p50_ms"])


# ----------------------------------------------------------------------------- model & requests
def make_default_model(model_dir: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from test_app import make_wine  # the tests' numeric classifier: StandardScaler + LogisticRegression

    make_wine(model_dir)


def requests_for(model_dir: Path) -> dict[str, Any]:
    meta = json.loads((model_dir / "model.json").read_text())
    smoke = json.loads((model_dir / "smoke.json").read_text())
    rows = smoke["inputs"]
    cols = [i["name"] for i in meta["inputs"]]
    types = {i["name"]: i["datatype"] for i in meta["inputs"]}

    def v2(rs: list[dict[str, Any]]) -> bytes:
        inputs = []
        for c in cols:
            t = {"name": c, "shape": [len(rs)], "datatype": types[c], "data": [r[c] for r in rs]}
            if types[c] == "BYTES":
                t["parameters"] = {"content_type": "str"}  # MLServer's codec hint; ignored by the app
            inputs.append(t)
        return json.dumps({"inputs": inputs, "parameters": {"content_type": "pd"}}).encode()

    big = [rows[i % len(rows)] for i in range(1000)]
    return {"name": meta["name"], "cols": cols, "rows": rows, "one": v2(rows[:1]), "batch": v2(big),
            "batch_rows": big}


def inprocess(model_dir: Path, cols: list[str], rows: list[dict[str, Any]], big: list[dict[str, Any]],
              duration: float, work: Path) -> dict[str, float]:
    data = work / "inprocess.json"
    data.write_text(json.dumps({"cols": cols, "one": rows[:1], "big": big}))
    code = f"""
import json, time, statistics, joblib, pandas as pd
m = joblib.load({str(model_dir / "model.joblib")!r})
d = json.load(open({str(data)!r}))
one = pd.DataFrame(d["one"])[d["cols"]]
big = pd.DataFrame(d["big"])[d["cols"]]
for _ in range(200): m.predict(one)
n, t0, c0 = 0, time.perf_counter(), time.process_time()
while n < 20000 and time.perf_counter() - t0 < {duration}:
    m.predict(one); n += 1
rate = n / (time.perf_counter() - t0)
cpu = (time.process_time() - c0) / n * 1e6
ts = []
for _ in range(20):
    t = time.perf_counter(); m.predict(big); ts.append(time.perf_counter() - t)
print(json.dumps({{"predict_per_s": rate, "cpu_us_per_predict": cpu,
                  "batch1000_ms": statistics.median(ts) * 1e3}}))
"""
    out = subprocess.run(pinned([sys.executable, "-c", code], SERVER_CORE), capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


# ----------------------------------------------------------------------------- contenders
def venv(name: str, packages: list[str]) -> Path:
    """A cached virtualenv under .modelci-local/bench/ with exactly these pinned packages."""
    d = STATE / name
    stamp = d / ".bench-packages"
    want = "\n".join(packages)
    if stamp.exists() and stamp.read_text() == want:
        return d
    log(f"creating {d} ({len(packages)} pinned packages)")
    shutil.rmtree(d, ignore_errors=True)
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(d)], check=True)
    subprocess.run([str(d / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", *packages],
                   check=True)
    stamp.write_text(want)
    return d


def ml_pins() -> list[str]:
    pins = []
    for line in (ROOT / "app" / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and line.split("==")[0].lower() in ML_RUNTIME:
            pins.append(line)
    return pins


class Server:
    def __init__(self, name: str, port: int, proc: subprocess.Popen | None = None, container: Any = None,
                 logfile: Path | None = None) -> None:
        self.name, self.port, self.proc, self.container, self.logfile = name, port, proc, container, logfile

    @property
    def pid(self) -> int | None:
        if self.proc is not None:
            return self.proc.pid
        if self.container is not None:
            self.container.reload()
            return int(self.container.attrs["State"]["Pid"]) or None
        return None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.container is not None:
            with contextlib.suppress(Exception):
                self.container.remove(force=True)


def start_proc(name: str, cmd: list[str], cwd: Path, env: dict[str, str], port: int, ready: str,
               work: Path) -> Server:
    logfile = work / f"{name}.log"
    fh = open(logfile, "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(pinned(cmd, SERVER_CORE), cwd=cwd, env={**os.environ, **env}, stdout=fh,
                            stderr=subprocess.STDOUT, start_new_session=True)
    srv = Server(name, port, proc=proc, logfile=logfile)
    try:
        wait_ready(port, ready, proc)
    except Exception:
        srv.stop()
        log(f"{name} failed; last log lines:\n" + logfile.read_text(errors="replace")[-3000:])
        raise
    return srv


def start_app_venv(model_dir: Path, work: Path) -> Server:
    port = free_port()
    return start_proc("app-venv", [sys.executable, "-m", "app"], ROOT,
                      {"MODELCI_MODEL_DIR": str(model_dir), "PORT": str(port), "HOST": "127.0.0.1"},
                      port, "/v2/health/ready", work)


def start_mlserver(model_dir: Path, name: str, work: Path) -> Server:
    env_dir = venv(f"venv-mlserver-{MLSERVER_VERSION}",
                   [f"mlserver=={MLSERVER_VERSION}", f"mlserver-sklearn=={MLSERVER_VERSION}", *ml_pins()])
    repo = work / "mlserver"
    (repo / name).mkdir(parents=True, exist_ok=True)
    shutil.copy2(model_dir / "model.joblib", repo / name / "model.joblib")
    port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    (repo / "settings.json").write_text(json.dumps({
        "debug": False, "parallel_workers": 0, "host": "127.0.0.1", "http_port": port,
        "grpc_port": grpc_port, "metrics_port": metrics_port}))
    (repo / name / "model-settings.json").write_text(json.dumps({
        "name": name, "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib"}}))
    return start_proc("mlserver", [str(env_dir / "bin" / "mlserver"), "start", str(repo)], repo, {},
                      port, f"/v2/models/{name}/ready", work)


FLASK_APP = '''
"""The Flask baseline: the textbook way (request.get_json, a DataFrame from the tensors, jsonify)."""
import os
import joblib
import pandas as pd
from flask import Flask, jsonify, request

app = Flask(__name__)
model = joblib.load(os.environ["MODEL_PATH"])
NAME = os.environ["MODEL_NAME"]


@app.get("/v2/health/ready")
def ready():
    return jsonify(ready=True)


@app.post(f"/v2/models/{NAME}/infer")
def infer():
    req = request.get_json()
    frame = pd.DataFrame({t["name"]: t["data"] for t in req["inputs"]})
    y = model.predict(frame[list(model.feature_names_in_)] if hasattr(model, "feature_names_in_") else frame)
    return jsonify(model_name=NAME, outputs=[{"name": "predict", "shape": [len(y)],
                                             "datatype": "BYTES" if y.dtype.kind in "OU" else "FP64",
                                             "data": y.tolist()}])
'''


def start_flask(model_dir: Path, name: str, work: Path) -> Server:
    env_dir = venv("venv-flask", ["flask==3.1.2", "gunicorn==23.0.0", *ml_pins()])
    app_dir = work / "flaskapp"
    app_dir.mkdir(exist_ok=True)
    (app_dir / "flask_app.py").write_text(FLASK_APP)
    port = free_port()
    # gthread keeps connections alive (the sync worker closes each one), a stronger baseline.
    return start_proc("flask", [str(env_dir / "bin" / "gunicorn"), "--workers", "1", "--worker-class",
                                "gthread", "--threads", "4", "--keep-alive", "30", "--bind",
                                f"127.0.0.1:{port}", "--log-level", "warning", "flask_app:app"],
                      app_dir, {"MODEL_PATH": str(model_dir / "model.joblib"), "MODEL_NAME": name},
                      port, "/v2/health/ready", work)


def build_context(model_dir: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    shutil.copy2(ROOT / "Dockerfile", dst / "Dockerfile")
    shutil.copytree(ROOT / "app", dst / "app", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(model_dir, dst / "artifact")
    return dst


def build_image(client: Any, ctx: Path, tag: str, version: str) -> tuple[Any, float]:
    meta = json.loads((ctx / "artifact" / "model.json").read_text())
    t0 = time.time()
    image, _ = client.images.build(path=str(ctx), tag=tag, rm=True, forcerm=True, network_mode="host",
                                   buildargs={"BASE_IMAGE": BASE_IMAGE, "MODEL_VERSION": version,
                                              "MODEL_SHA256": meta["sha256"],
                                              "DATA_SHA256": str(meta.get("data_sha256") or ""),
                                              "MODEL_METRICS": json.dumps(meta.get("metrics") or {})})
    return image, time.time() - t0


def start_app_image(client: Any, image: Any) -> Server:
    port = free_port()
    c = client.containers.run(image.id, detach=True, name=f"modelci-bench-app-{secrets.token_hex(4)}",
                              network_mode="host", cpuset_cpus=SERVER_CORE,
                              environment={"PORT": str(port), "HOST": "127.0.0.1"})
    srv = Server("app-image", port, container=c)
    try:
        wait_ready(port, "/v2/health/ready", container=c)
    except Exception:
        srv.stop()
        raise
    return srv


def image_sizes(client: Any, image: Any, model_dir: Path) -> dict[str, Any]:
    base = client.images.get(BASE_IMAGE)
    hist = image.history()
    venv_layer = sum(h["Size"] for h in hist if "/opt/venv" in (h.get("CreatedBy") or "")
                     and "COPY" in (h.get("CreatedBy") or ""))
    model_bytes = sum(f.stat().st_size for f in model_dir.iterdir() if f.is_file())
    total = image.attrs["Size"]
    return {"image_mb": total / 1e6, "base_mb": base.attrs["Size"] / 1e6, "deps_mb": venv_layer / 1e6,
            "model_mb": model_bytes / 1e6,
            "overhead_mb": (total - base.attrs["Size"] - venv_layer - model_bytes) / 1e6}


def registry_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def push_model_only_change(client: Any, image: Any, model_dir: Path, work: Path) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "tools"))
    import localci

    reg_root = work / "registry"
    reg = localci.Registry(free_port(), reg_root).start()
    repo = f"{reg.host}/bench/serving"
    try:
        image.tag(repo, "1")
        for _ in client.images.push(repo, "1", stream=True, decode=True):
            pass
        first = registry_bytes(reg_root / "data")
        # A model-only change: a new artifact directory, same app. The artifact is one layer, so any
        # change in it (a retrained model.joblib or only model.json) ships the whole directory again.
        changed = work / "model-v2"
        shutil.copytree(model_dir, changed)
        meta = json.loads((changed / "model.json").read_text())
        meta["run_id"] = f"bench-model-only-change-{secrets.token_hex(4)}"
        (changed / "model.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        ctx2 = build_context(changed, work / "context-v2")
        image2, rebuild_s = build_image(client, ctx2, f"{repo}:2", "bench-2")
        t0 = time.time()
        for _ in client.images.push(repo, "2", stream=True, decode=True):
            pass
        push_s = time.time() - t0
        second = registry_bytes(reg_root / "data")
        model_bytes = sum(f.stat().st_size for f in changed.iterdir() if f.is_file())
        layers_same = image.attrs["RootFS"]["Layers"][:-1] == image2.attrs["RootFS"]["Layers"][:-1]
        with contextlib.suppress(Exception):
            client.images.remove(f"{repo}:2", force=True, noprune=True)
        return {"first_push_mb": first / 1e6, "model_only_push_kb": (second - first) / 1e3,
                "model_kb": model_bytes / 1e3, "rebuild_s": rebuild_s, "push_s": push_s,
                "only_last_layer_changed": layers_same}
    finally:
        with contextlib.suppress(Exception):
            client.images.remove(f"{repo}:1", force=True, noprune=True)
        reg.stop()


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="a modelci model directory with smoke.json (default: the tests' wine "
                                    "classifier, built in a temporary directory)")
    ap.add_argument("--requests", type=int, default=4000, help="1-row requests per server (default 4000)")
    ap.add_argument("--duration", type=float, default=15.0, help="time cap per load run, s (default 15)")
    ap.add_argument("--concurrency", type=int, default=4, help="open connections (default 4)")
    ap.add_argument("--batch-requests", type=int, default=30, help="1000-row requests per server")
    ap.add_argument("--skip", default="", help="comma list of: image, venv, mlserver, flask, push")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if (os.cpu_count() or 1) < 2:
        log("needs 2 cores (server on core 0, client on core 1)")
        return 1

    work = Path(tempfile.mkdtemp(prefix="modelci-bench-"))
    results: dict[str, Any] = {"servers": {}, "config": {"requests": args.requests, "duration": args.duration,
                                                         "concurrency": args.concurrency}}
    servers: list[Server] = []
    client = None
    try:
        model_dir = Path(args.model).resolve() if args.model else work / "model"
        if not args.model:
            make_default_model(model_dir)
        req = requests_for(model_dir)
        name = req["name"]
        infer = f"/v2/models/{name}/infer"
        log(f"model {name}: {len(req['cols'])} inputs; in-process predict rate on core {SERVER_CORE}")
        results["inprocess"] = inprocess(model_dir, req["cols"], req["rows"], req["batch_rows"],
                                         min(args.duration, 10), work)

        def measure(srv: Server) -> None:
            log(f"{srv.name}: {args.requests} x 1-row infer, concurrency {args.concurrency}")
            c0 = cpu_seconds(srv.pid)
            r = load(srv.port, infer, req["one"], args.requests, args.concurrency, args.duration, work)
            # the warm-up run is included in the CPU time: count its requests too
            total = r["requests"] + max(50, args.requests // 10)
            r["cpu_us_per_request"] = (cpu_seconds(srv.pid) - c0) / total * 1e6
            r["batch1000_ms"] = batch_latency(srv.port, infer, req["batch"], args.batch_requests, work)
            results["servers"][srv.name] = r
            srv.stop()

        if "image" not in skip or "push" not in skip:
            import docker

            client = docker.from_env()
            ctx = build_context(model_dir, work / "context")
            log("building the serving image")
            image, build_s = build_image(client, ctx, f"modelci-bench-app:{secrets.token_hex(4)}", "bench-1")
            results["image"] = {"build_s": build_s, **image_sizes(client, image, model_dir)}
            if "image" not in skip:
                srv = start_app_image(client, image)
                servers.append(srv)
                measure(srv)
            if "push" not in skip:
                log("pushing to a local registry, then a model-only change")
                results["push"] = push_model_only_change(client, image, model_dir, work)
            with contextlib.suppress(Exception):
                client.images.remove(image.id, force=True, noprune=True)
        if "venv" not in skip:
            srv = start_app_venv(model_dir, work)
            servers.append(srv)
            measure(srv)
        if "mlserver" not in skip:
            srv = start_mlserver(model_dir, name, work)
            servers.append(srv)
            measure(srv)
        if "flask" not in skip:
            srv = start_flask(model_dir, name, work)
            servers.append(srv)
            measure(srv)
    finally:
        for srv in servers:
            srv.stop()
        shutil.rmtree(work, ignore_errors=True)

    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0


def report(res: dict[str, Any]) -> None:
    ip = res["inprocess"]
    print(f"\nin-process predict (core {SERVER_CORE}): {ip['predict_per_s']:.0f}/s 1-row "
          f"({ip['cpu_us_per_predict']:.0f} CPU us each), {ip['batch1000_ms']:.1f} ms for 1000 rows")
    print(f"\n{'server':<12} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'CPU us/req':>11} "
          f"{'1000 rows ms':>13}")
    for name, r in res["servers"].items():
        print(f"{name:<12} {r['rps']:>8.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>7} "
              f"{r['cpu_us_per_request']:>11.0f} {r['batch1000_ms']:>13.1f}")
    s = res["servers"]
    app = s.get("app-image") or s.get("app-venv")
    ratios: dict[str, float] = {}
    if app:
        if "mlserver" in s:
            ratios["app / MLServer req/s (goal >= 2)"] = app["rps"] / s["mlserver"]["rps"]
        if "flask" in s:
            ratios["app / Flask+gunicorn req/s (goal >= 1.3)"] = app["rps"] / s["flask"]["rps"]
        if "mlserver" in s:
            ratios["MLServer / app CPU per request"] = s["mlserver"]["cpu_us_per_request"] / \
                app["cpu_us_per_request"]
        if "flask" in s:
            ratios["Flask / app CPU per request"] = s["flask"]["cpu_us_per_request"] / app["cpu_us_per_request"]
        ratios["app req/s / in-process predict/s (goal >= 0.75)"] = app["rps"] / ip["predict_per_s"]
        ratios["in-process CPU per predict / app CPU per request"] = ip["cpu_us_per_predict"] / \
            app["cpu_us_per_request"]
        ratios["app 1000-row HTTP / in-process latency"] = app["batch1000_ms"] / ip["batch1000_ms"]
    if ratios:
        print()
        for k, v in ratios.items():
            print(f"{k:<52} {v:6.2f}")
    res["ratios"] = ratios
    if "image" in res:
        im = res["image"]
        print(f"\nimage {im['image_mb']:.0f} MB = base {im['base_mb']:.0f} + deps (venv) {im['deps_mb']:.0f} "
              f"+ model {im['model_mb'] * 1e3:.0f} kB + other {im['overhead_mb']:.1f}; build {im['build_s']:.1f}s")
    if "push" in res:
        p = res["push"]
        print(f"model-only change: rebuild {p['rebuild_s']:.1f}s, pushed {p['model_only_push_kb']:.0f} kB "
              f"(model {p['model_kb']:.0f} kB; first push {p['first_push_mb']:.0f} MB), push {p['push_s']:.1f}s, "
              f"only the last layer changed: {p['only_last_layer_changed']}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        sys.exit(client_main(sys.argv[2:]))
    sys.exit(main())
