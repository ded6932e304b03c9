"""Several worker processes (app/__main__.py, app/cluster.py): CPU count, readiness of all workers,
/metrics merged across workers, graceful stop of all, a killed worker replaced."""
from __future__ import annotations

import glob
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.cluster import WorkerGroup, available_cpus, merge, render

from test_app import _free_port, _http, _start, _wait_ready, call, loaded, make_text, v2_request


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("workers") / "text"
    model, X = make_text(d)
    return d, model, X


def test_available_cpus_reads_cgroup_quota(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("max 100000\n")
    assert available_cpus(str(v2)) == affinity
    (v2 / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs -> 2 (capped by the affinity mask)
    assert available_cpus(str(v2)) == min(affinity, 2)
    (v2 / "cpu.max").write_text("50000 100000\n")  # half a CPU -> 1
    assert available_cpus(str(v2)) == 1
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cpus(str(v1)) == 1
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")  # no limit
    assert available_cpus(str(v1)) == affinity
    assert available_cpus(str(tmp_path / "absent")) == affinity


def test_ready_only_when_every_worker_is_ready(text_dir, tmp_path):
    d, _, _ = text_dir
    group = WorkerGroup(2, str(tmp_path), index=0)
    app = loaded(d, group=group)  # this worker loaded its model; its sibling has not
    assert app.state.ready
    assert call(app, "GET", "/v2/health/ready")[0] == 503
    assert call(app, "GET", "/v2/models/products/ready")[0] == 503
    group.set_ready(True, index=1)
    assert call(app, "GET", "/v2/health/ready") == (200, {"ready": True})
    assert call(app, "GET", "/v2/models/products/ready")[0] == 200


def test_merge_sums_counters_and_histograms_and_keeps_gauges_whole():
    a = [["modelci_http_requests", "counter", "HTTP requests", "",
          [["modelci_http_requests_total", {"endpoint": "/predict"}, 3.0],
           ["modelci_http_requests_created", {"endpoint": "/predict"}, 200.0]]],
         ["modelci_model_ready", "gauge", "ready", "", [["modelci_model_ready", {}, 1.0]]],
         ["modelci_feature_value", "histogram", "values", "",
          [["modelci_feature_value_bucket", {"feature": "x", "le": "1.0"}, 1.0],
           ["modelci_feature_value_bucket", {"feature": "x", "le": "+Inf"}, 2.0],
           ["modelci_feature_value_count", {"feature": "x"}, 2.0],
           ["modelci_feature_value_sum", {"feature": "x"}, 2.5]]]]
    b = [["modelci_http_requests", "counter", "HTTP requests", "",
          [["modelci_http_requests_total", {"endpoint": "/predict"}, 4.0],
           ["modelci_http_requests_total", {"endpoint": "/metrics"}, 1.0],
           ["modelci_http_requests_created", {"endpoint": "/predict"}, 100.0]]],
         ["modelci_model_ready", "gauge", "ready", "", [["modelci_model_ready", {}, 0.0]]],
         ["modelci_feature_value", "histogram", "values", "",
          [["modelci_feature_value_bucket", {"feature": "x", "le": "1.0"}, 0.0],
           ["modelci_feature_value_bucket", {"feature": "x", "le": "+Inf"}, 5.0],
           ["modelci_feature_value_count", {"feature": "x"}, 5.0],
           ["modelci_feature_value_sum", {"feature": "x"}, 20.0]]]]
    text = render(merge([a, b])).decode()
    assert 'modelci_http_requests_total{endpoint="/predict"} 7.0' in text
    assert 'modelci_http_requests_total{endpoint="/metrics"} 1.0' in text
    assert 'modelci_http_requests_created{endpoint="/predict"} 100.0' in text
    assert "modelci_model_ready 0.0" in text  # ready only if every worker is
    assert 'modelci_feature_value_bucket{feature="x",le="1.0"} 1.0' in text
    assert 'modelci_feature_value_bucket{feature="x",le="+Inf"} 7.0' in text
    assert 'modelci_feature_value_count{feature="x"} 7.0' in text
    assert 'modelci_feature_value_sum{feature="x"} 22.5' in text


def _children(pid):
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _metric(text, name, **labels):
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            got = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
            if all(got.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


def _sibling_stats(rundir, index):
    import asyncio

    import orjson

    async def ask():
        r, w = await asyncio.open_unix_connection(os.path.join(rundir, f"worker-{index}.sock"))
        w.write(b"stats\n")
        await w.drain()
        data = await r.read()
        w.close()
        return orjson.loads(data)

    return asyncio.run(ask())


def test_two_workers_metrics_count_every_request_once(text_dir, tmp_path):
    d, model, X = text_dir
    port = _free_port()
    proc = _start(d, port, MODELCI_WORKERS="2", TMPDIR=str(tmp_path))
    try:
        assert _wait_ready(proc, port, timeout=90), proc.stdout.read() if proc.poll() is not None else "timeout"
        workers = _children(proc.pid)
        assert len(workers) == 2
        rows = X.head(3)
        body = v2_request(rows)
        n_threads, per_thread = 6, 10
        errors = []

        def fire():
            for _ in range(per_thread):  # a new connection each time: the kernel spreads them
                status, _ = _http(port, "POST", "/v2/models/products/infer", body)
                if status != 200:
                    errors.append(status)

        threads = [threading.Thread(target=fire) for _ in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        total = n_threads * per_thread
        rundir = glob.glob(str(tmp_path / "modelci-workers-*"))[0]
        per_worker = [_sibling_stats(rundir, i)["execution_count"] for i in (0, 1)]
        assert sum(per_worker) == total and min(per_worker) > 0, per_worker  # load was spread
        for _ in range(3):  # whichever worker answers the scrape, the totals are the same
            status, text = _http(port, "GET", "/metrics")
            assert status == 200
            assert _metric(text, "modelci_http_requests_total", endpoint="/v2/models/{name}/infer",
                           status="200") == total
            assert _metric(text, "modelci_inference_rows_total") == total * 3
            assert _metric(text, "modelci_feature_value_count", feature="price") == total * 3
            assert _metric(text, "modelci_feature_value_bucket", feature="price", le="+Inf") == total * 3
            assert _metric(text, "modelci_text_length_chars_count", feature="text") == total * 3
            assert _metric(text, "modelci_model_ready") == 1.0
        status, stats = _http(port, "GET", "/v2/models/products/stats")
        assert stats["model_stats"][0]["inference_count"] == total * 3
        assert stats["model_stats"][0]["inference_stats"]["success"]["count"] == total

        # a worker killed by a signal is replaced; readiness comes back
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.time() + 60
        while time.time() < deadline:
            kids = _children(proc.pid)
            if len(kids) == 2 and workers[0] not in kids:
                break
            time.sleep(0.2)
        assert len(_children(proc.pid)) == 2
        assert _wait_ready(proc, port, timeout=60)
        workers = _children(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    for pid in workers:  # every worker stopped with the supervisor
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert out.count("Application shutdown complete") >= 2


def test_grpc_port_in_use_is_refused_when_set(text_dir):
    import socket

    d, _, _ = text_dir
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        proc = _start(d, _free_port(), GRPC_PORT=str(taken.getsockname()[1]))
        out, _ = proc.communicate(timeout=60)
    finally:
        taken.close()
    assert proc.returncode == 64, out
    assert "GRPC_PORT" in out and "cannot listen" in out


def test_bad_worker_count_is_a_setting_error(text_dir):
    d, _, _ = text_dir
    proc = _start(d, _free_port(), MODELCI_WORKERS="0")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 64 and "MODELCI_WORKERS" in out
