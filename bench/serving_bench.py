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
`--suite text`: the consumer's text model on a synthetic catalogue (bench/make_catalogue.py), the app with
1 and 2 workers vs MLServer (parallel_workers: 2) vs gunicorn -w 2, raw and tritonclient (HTTP JSON, HTTP
binary, gRPC) load, median of --runs runs. `--suite abuse`: oversized label values + slow connections
against 2 workers, peak RSS and health checks.

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


# ----------------------------------------------------------------------------- text model suite
TRITON_CLIENT = r"""
import json, sys, threading, time
import numpy as np
mode, port, name, spec_file, n, conc, duration = sys.argv[1:8]
n, conc, duration = int(n), int(conc), float(duration)
spec = json.load(open(spec_file))
if mode == "grpc":
    import tritonclient.grpc as tc
else:
    import tritonclient.http as tc
binary = mode == "http-binary"
lock = threading.Lock()
state = {"sent": 0, "done": 0, "errors": 0}
lat = []
t0 = time.perf_counter()
deadline = t0 + duration

def worker():
    c = tc.InferenceServerClient(f"127.0.0.1:{port}")
    ins = []
    for col in spec:
        i = tc.InferInput(col["name"], [1], col["datatype"])
        arr = np.array(col["data"], dtype=object if col["datatype"] == "BYTES" else np.float64)
        if mode == "grpc":
            i.set_data_from_numpy(arr)
        else:
            i.set_data_from_numpy(arr, binary_data=binary)
        ins.append(i)
    outs = [tc.InferRequestedOutput("predict")] if mode == "grpc" else \
        [tc.InferRequestedOutput("predict", binary_data=binary)]
    while time.perf_counter() < deadline:
        with lock:
            if state["sent"] >= n:
                return
            state["sent"] += 1
        t = time.perf_counter()
        try:
            c.infer(name, ins, outputs=outs)
            ok = True
        except Exception:
            ok = False
        with lock:
            lat.append(time.perf_counter() - t)
            state["done"] += 1
            state["errors"] += 0 if ok else 1

threads = [threading.Thread(target=worker) for _ in range(conc)]
for t in threads: t.start()
for t in threads: t.join()
el = time.perf_counter() - t0
lat.sort()
print(json.dumps({"requests": state["done"], "errors": state["errors"], "seconds": el,
                  "rps": state["done"] / el, "p50_ms": lat[len(lat) // 2] * 1e3 if lat else None,
                  "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3 if lat else None}))
"""


def triton_load(mode: str, port: int, name: str, row: dict[str, Any], types: dict[str, str], n: int,
                conc: int, duration: float, work: Path) -> dict[str, Any]:
    """Closed-loop load with the stock tritonclient (http JSON, http binary or grpc), CONC threads."""
    spec = work / f"triton-{secrets.token_hex(4)}.json"
    spec.write_text(json.dumps([{"name": c, "datatype": types[c], "data": [v]} for c, v in row.items()]))
    script = work / "triton_client.py"
    script.write_text(TRITON_CLIENT)
    for count in (max(30, n // 10), n):  # warm-up, then the measurement
        out = subprocess.run(pinned([sys.executable, str(script), mode, str(port), name, str(spec),
                                     str(count), str(conc), str(duration)], CLIENT_CORE),
                             capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def train_text_model(work: Path, rows: int) -> tuple[Path, Path]:
    """The consumer's config on a seeded synthetic catalogue -> (modelci model dir, lean pipeline file)."""
    sys.path.insert(0, str(ROOT / "bench"))
    import make_catalogue

    cfg = make_catalogue.write(work / "catalogue", rows=rows)
    modelci_bin = Path(sys.executable).parent / "modelci"
    log(f"training the text model on {rows} synthetic rows (modelci train)")
    subprocess.run([str(modelci_bin), "train", "--config", str(cfg), "--out", str(work / "trained")],
                   check=True, capture_output=True)
    lean = work / "lean.joblib"
    code = f"""
import joblib, pandas as pd, yaml
from sklearn.compose import make_column_transformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
cfg = yaml.safe_load(open({str(cfg)!r}))
t = cfg["preprocessing"]["text"]
stop = open({str(cfg.parent / "stopwords-pt.txt")!r}, encoding="utf-8").read().split()
def vec():
    return TfidfVectorizer(lowercase=t["lowercase"], strip_accents=t["strip_accents"], stop_words=stop,
                           ngram_range=tuple(t["ngram_range"]), sublinear_tf=t["sublinear_tf"])
df = pd.read_csv({str(cfg.parent / "data" / "produtos.csv")!r})
m = make_pipeline(make_column_transformer((vec(), "nome"), (vec(), "descricao")),
                  LogisticRegression(**cfg["estimator"]["params"]))
m.fit(df[["nome", "descricao"]], df["categoria"])
joblib.dump(m, {str(lean)!r})
"""
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return work / "trained" / "model", lean


def inprocess_file(model_file: Path, cols: list[str], rows: list[dict[str, Any]], duration: float,
                   work: Path) -> dict[str, float]:
    d = work / f"lean-{secrets.token_hex(3)}"
    d.mkdir()
    shutil.copy2(model_file, d / "model.joblib")
    return inprocess(d, cols, rows, rows * 200, duration, work)


def start_app_workers(model_dir: Path, workers: int, cores: str, work: Path) -> Server:
    port, grpc_port = free_port(), free_port()
    logfile = work / f"app-{workers}w.log"
    fh = open(logfile, "wb")  # noqa: SIM115 - closed with the process
    env = {**os.environ, "MODELCI_MODEL_DIR": str(model_dir), "PORT": str(port), "HOST": "127.0.0.1",
           "GRPC_PORT": str(grpc_port), "MODELCI_WORKERS": str(workers), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(pinned([sys.executable, "-m", "app"], cores), cwd=ROOT, env=env, stdout=fh,
                            stderr=subprocess.STDOUT, start_new_session=True)
    srv = Server(f"app-{workers}w", port, proc=proc, logfile=logfile)
    srv.grpc_port = grpc_port  # type: ignore[attr-defined]
    try:
        wait_ready(port, "/v2/health/ready", proc)
    except Exception:
        srv.stop()
        raise
    return srv


def start_mlserver_workers(model_dir: Path, name: str, workers: int, cores: str, work: Path) -> Server:
    # MLServer 1.7.1's parallel workers call asyncio.get_event_loop() outside a loop, which uvloop >= 0.22
    # refuses ("There is no current event loop"): its own venv pins the last uvloop it works with.
    env_dir = venv(f"venv-mlserver-{MLSERVER_VERSION}-parallel",
                   [f"mlserver=={MLSERVER_VERSION}", f"mlserver-sklearn=={MLSERVER_VERSION}", "uvloop==0.21.0",
                    *ml_pins()])
    repo = work / f"mlserver-{workers}"
    (repo / name).mkdir(parents=True, exist_ok=True)
    shutil.copy2(model_dir / "model.joblib", repo / name / "model.joblib")
    port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    (repo / "settings.json").write_text(json.dumps({
        "debug": False, "parallel_workers": workers, "host": "127.0.0.1", "http_port": port,
        "grpc_port": grpc_port, "metrics_port": metrics_port}))
    (repo / name / "model-settings.json").write_text(json.dumps({
        "name": name, "implementation": "mlserver_sklearn.SKLearnModel", "parameters": {"uri": "./model.joblib"}}))
    logfile = work / f"mlserver-{workers}.log"
    fh = open(logfile, "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(pinned([str(env_dir / "bin" / "mlserver"), "start", str(repo)], cores), cwd=repo,
                            env=dict(os.environ), stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    srv = Server(f"mlserver-{workers}w", port, proc=proc, logfile=logfile)
    try:
        wait_ready(port, f"/v2/models/{name}/ready", proc)
    except Exception:
        srv.stop()
        log("mlserver failed; last log lines:\n" + logfile.read_text(errors="replace")[-3000:])
        raise
    return srv


def start_gunicorn_workers(model_dir: Path, name: str, workers: int, cores: str, work: Path) -> Server:
    env_dir = venv("venv-flask", ["flask==3.1.2", "gunicorn==23.0.0", *ml_pins()])
    app_dir = work / "flaskapp"
    app_dir.mkdir(exist_ok=True)
    (app_dir / "flask_app.py").write_text(FLASK_APP)
    port = free_port()
    logfile = work / f"gunicorn-{workers}.log"
    fh = open(logfile, "wb")  # noqa: SIM115 - closed with the process
    cmd = [str(env_dir / "bin" / "gunicorn"), "-w", str(workers), "--worker-class", "gthread", "--threads", "4",
           "--keep-alive", "30", "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "flask_app:app"]
    proc = subprocess.Popen(pinned(cmd, cores), cwd=app_dir, stdout=fh, stderr=subprocess.STDOUT,
                            env={**os.environ, "MODEL_PATH": str(model_dir / "model.joblib"), "MODEL_NAME": name},
                            start_new_session=True)
    srv = Server(f"gunicorn-{workers}w", port, proc=proc, logfile=logfile)
    try:
        wait_ready(port, "/v2/health/ready", proc)
    except Exception:
        srv.stop()
        raise
    return srv


def _median_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per key, the median over runs (numbers), keeping every run's values."""
    import statistics

    out: dict[str, Any] = {}
    for key in runs[0]:
        vals = [r[key] for r in runs if key in r]
        if isinstance(vals[0], dict):
            out[key] = _median_runs(vals)
        elif all(isinstance(v, (int, float)) for v in vals):
            out[key] = statistics.median(vals)
            out.setdefault("_runs", {})[key] = vals
        else:
            out[key] = vals[0]
    return out


def text_suite(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    model_dir, lean = train_text_model(work, args.rows)
    req = requests_for(model_dir)
    name, cols = req["name"], req["cols"]
    meta = json.loads((model_dir / "model.json").read_text())
    types = {i["name"]: i["datatype"] for i in meta["inputs"]}
    row = req["rows"][0]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    runs = []
    for k in range(args.runs):
        log(f"text suite run {k + 1}/{args.runs}")
        res: dict[str, Any] = {
            "inprocess_modelci": inprocess_file(model_dir / "model.joblib", cols, req["rows"], 5, work),
            "inprocess_lean": inprocess_file(lean, cols, req["rows"], 5, work),
        }
        plan = [("app-1w", lambda: start_app_workers(model_dir, 1, SERVER_CORE, work)),
                ("app-2w", lambda: start_app_workers(model_dir, 2, "0,1", work))]
        if "mlserver" not in skip:
            plan.append(("mlserver-2w", lambda: start_mlserver_workers(model_dir, name, 2, "0,1", work)))
        if "gunicorn" not in skip:
            plan.append(("gunicorn-2w", lambda: start_gunicorn_workers(model_dir, name, 2, "0,1", work)))
        for label, start in plan:
            srv = start()
            try:
                log(f"{label}: {args.requests} x 1-row infer, concurrency {args.concurrency}")
                res[label] = load(srv.port, f"/v2/models/{name}/infer", req["one"], args.requests,
                                  args.concurrency, args.duration, work)
                if label.startswith("app") and "triton" not in skip:
                    for mode in ("http-json", "http-binary", "grpc"):
                        port = srv.grpc_port if mode == "grpc" else srv.port  # type: ignore[attr-defined]
                        log(f"{label}: tritonclient {mode}")
                        res[f"{label} tritonclient {mode}"] = triton_load(
                            mode, port, name, row, types, args.requests, args.concurrency, args.duration, work)
            finally:
                srv.stop()
        runs.append(res)
    return _median_runs(runs)


def report_text(res: dict[str, Any]) -> None:
    mi, li = res["inprocess_modelci"], res["inprocess_lean"]
    runs = len(mi.get("_runs", {}).get("predict_per_s", [None]))
    print(f"\ntext model (median of {runs} run(s))")
    print(f"in-process 1-row predict, core {SERVER_CORE}: modelci pipeline {mi['predict_per_s']:.0f}/s "
          f"({1e3 / mi['predict_per_s']:.2f} ms), lean hand-built pipeline {li['predict_per_s']:.0f}/s "
          f"({1e3 / li['predict_per_s']:.2f} ms)")
    print(f"\n{'server / client':<36} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for key, r in res.items():
        if isinstance(r, dict) and "rps" in r:
            print(f"{key:<36} {r['rps']:>8.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>7.0f}")
    ratios = {}
    a1, a2 = res.get("app-1w"), res.get("app-2w")
    if a1:
        ratios["app 1 worker / modelci pipeline in-process (goal >= 0.75)"] = a1["rps"] / mi["predict_per_s"]
        ratios["app 1 worker / lean pipeline in-process"] = a1["rps"] / li["predict_per_s"]
        ratios["modelci pipeline / lean pipeline predict time (goal <= 1.3)"] = \
            li["predict_per_s"] / mi["predict_per_s"]
    if a1 and a2:
        ratios["app 2 workers / 1 worker (goal >= 1.3)"] = a2["rps"] / a1["rps"]
    for other in ("mlserver-2w", "gunicorn-2w"):
        if a2 and other in res:
            ratios[f"app 2 workers / {other} (goal >= 1)"] = a2["rps"] / res[other]["rps"]
    print()
    for k, v in ratios.items():
        print(f"{k:<62} {v:6.2f}")
    res["ratios"] = ratios


# ----------------------------------------------------------------------------- abuse run
def rss_kb(pid: int) -> int:
    total = 0
    for p in _tree(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def abuse_run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Oversized label values and 200 slow connections against 2 workers; peak RSS, health throughout."""
    import threading

    sys.path.insert(0, str(ROOT / "tests"))
    from test_app import make_text  # text + categorical + numeric: the categorical input carries labels

    model_dir = work / "abuse-model"
    make_text(model_dir)
    srv = start_app_workers(model_dir, 2, "0,1", work)
    assert srv.proc is not None
    pid = srv.proc.pid
    stop = threading.Event()
    out: dict[str, Any] = {"health_ok": 0, "health_failed": 0, "health_max_ms": 0.0, "label_requests": {},
                           "slow_connections_opened": 0, "slow_connections_closed_by_server": 0}
    peak = {"rss": 0}
    try:
        body = json.dumps([{"text": "tela usb", "store": "a", "price": 1.0}]).encode()
        for _ in range(100):
            http(srv.port, "POST", "/predict", body)
        base = rss_kb(pid)

        def sample() -> None:
            while not stop.is_set():
                peak["rss"] = max(peak["rss"], rss_kb(pid))
                time.sleep(0.2)

        def health() -> None:
            while not stop.is_set():
                t = time.perf_counter()
                try:
                    ok = http(srv.port, "GET", "/v2/health/ready", timeout=2)[0] == 200
                except OSError:
                    ok = False
                out["health_max_ms"] = max(out["health_max_ms"], (time.perf_counter() - t) * 1e3)
                out["health_ok" if ok else "health_failed"] += 1
                time.sleep(0.25)

        def labels() -> None:
            i = 0
            while not stop.is_set() and i < args.abuse_requests:
                value = f"{i:08d}" + "x" * args.label_bytes  # a new oversized category every time
                b = json.dumps([{"text": "tela", "store": value, "price": 1.0}]).encode()
                try:
                    st = http(srv.port, "POST", "/predict", b, timeout=30)[0]
                except OSError:
                    st = -1
                out["label_requests"][str(st)] = out["label_requests"].get(str(st), 0) + 1
                i += 1

        def slow(k: int) -> None:
            while not stop.is_set():
                try:
                    s = socket.create_connection(("127.0.0.1", srv.port), timeout=60)
                except OSError:
                    time.sleep(0.5)
                    continue
                out["slow_connections_opened"] += 1
                try:
                    if k % 2:  # headers that never finish
                        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
                        while not stop.is_set():
                            s.sendall(b"X-a: b\r\n")
                            time.sleep(1)
                    else:  # a body that never finishes
                        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                  b"Content-Length: 1000000\r\n\r\n[")
                        while not stop.is_set():
                            s.sendall(b" ")
                            time.sleep(1)
                except OSError:
                    out["slow_connections_closed_by_server"] += 1
                finally:
                    s.close()

        threads = [threading.Thread(target=f, daemon=True) for f in (sample, health, labels)]
        threads += [threading.Thread(target=slow, args=(k,), daemon=True) for k in range(args.slow_connections)]
        log(f"abuse: {args.abuse_requests} requests with {args.label_bytes}-byte category values, "
            f"{args.slow_connections} slow connections, {args.abuse_seconds:.0f} s")
        for t in threads:
            t.start()
        deadline = time.time() + args.abuse_seconds
        while time.time() < deadline:
            time.sleep(0.5)
        stop.set()
        for t in threads[:3]:
            t.join(timeout=40)
        status, text = http_text(srv.port, "/metrics")
        out.update({"rss_start_mb": base / 1024, "rss_peak_mb": peak["rss"] / 1024,
                    "rss_growth_mb": (peak["rss"] - base) / 1024, "metrics_bytes": len(text)})
    finally:
        stop.set()
        srv.stop()
    return out


def http_text(port: int, path: str) -> tuple[int, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:  # loopback only
        return resp.status, resp.read().decode()


def report_abuse(r: dict[str, Any]) -> None:
    print(f"\nabuse run: RSS {r['rss_start_mb']:.0f} MB at start, peak {r['rss_peak_mb']:.0f} MB "
          f"(growth {r['rss_growth_mb']:.1f} MB; goal < 100); health checks {r['health_ok']} ok, "
          f"{r['health_failed']} failed, slowest {r['health_max_ms']:.0f} ms; oversized-label requests by "
          f"status {r['label_requests']}; slow connections opened {r['slow_connections_opened']}, closed by "
          f"the server {r['slow_connections_closed_by_server']}; /metrics {r['metrics_bytes'] / 1e3:.0f} kB")


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
    ap.add_argument("--suite", choices=["default", "text", "abuse"], default="default",
                    help="default: the wine model, app vs MLServer vs Flask (one core each); text: the consumer's "
                         "text model on a synthetic catalogue, 1 vs 2 workers vs MLServer/gunicorn with 2 "
                         "workers, tritonclient load; abuse: oversized labels + slow connections, peak RSS")
    ap.add_argument("--runs", type=int, default=3, help="text suite: runs (the report shows medians)")
    ap.add_argument("--rows", type=int, default=4000, help="text suite: synthetic catalogue rows")
    ap.add_argument("--abuse-requests", type=int, default=2000)
    ap.add_argument("--label-bytes", type=int, default=100_000)
    ap.add_argument("--slow-connections", type=int, default=200)
    ap.add_argument("--abuse-seconds", type=float, default=45.0)
    args = ap.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if (os.cpu_count() or 1) < 2:
        log("needs 2 cores (server on core 0, client on core 1)")
        return 1
    if args.suite != "default":
        work = Path(tempfile.mkdtemp(prefix="modelci-bench-"))
        try:
            if args.suite == "text":
                res = text_suite(args, work)
                report_text(res)
            else:
                res = abuse_run(args, work)
                report_abuse(res)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2, sort_keys=True, default=str) + "\n")
        return 0

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
