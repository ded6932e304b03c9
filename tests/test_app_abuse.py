"""The serving app under abuse: bounded metric labels, non-finite values kept out of value metrics,
header and body read timeouts, a concurrency cap answering 503 with Retry-After."""
from __future__ import annotations

import asyncio
import json
import math
import socket
import struct
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.metrics import MAX_CATEGORIES, MAX_LABEL_CHARS

from test_app import (
    _free_port,
    _http,
    _start,
    _wait_ready,
    call,
    loaded,
    make_regressor,
    make_text,
)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("abuse")
    make_text(base / "text")
    make_regressor(base / "reg")
    return {"text": base / "text", "reg": base / "reg"}


def _text_row(store, text="tela usb", price=10.0):
    return {"text": text, "store": store, "price": price}


def _label_values(metrics, feature):
    out = []
    for line in metrics.splitlines():
        if line.startswith("modelci_feature_category_total{") and f'feature="{feature}"' in line:
            out.append(line.split('value="', 1)[1].rsplit('"}', 1)[0])
    return out


def test_category_labels_are_bounded_in_length_and_number(dirs):
    app = loaded(dirs["text"])
    huge = "x" * 1_000_000
    for i in range(3):  # the same huge value three times: one label, counted three times
        assert call(app, "POST", "/predict", [_text_row(huge)])[0] == 200
    for i in range(MAX_CATEGORIES + 50):
        assert call(app, "POST", "/predict", [_text_row(f"{i:04d}" + "y" * 200)])[0] == 200
    text = call(app, "GET", "/metrics")[1]
    values = _label_values(text, "store")
    assert all(len(v) <= MAX_LABEL_CHARS for v in values)
    assert len(values) <= MAX_CATEGORIES + 1 + 3  # the training's few stores, the cap, "__other__"
    assert "__other__" in values
    long_ones = [v for v in values if v.startswith("xxxx")]
    assert len(long_ones) == 1
    line = next(ln for ln in text.splitlines() if f'value="{long_ones[0]}"' in ln)
    assert line.endswith(" 3.0")
    other = next(ln for ln in text.splitlines() if 'value="__other__"' in ln)
    assert float(other.rsplit(" ", 1)[1]) > 0
    # the app keeps no copy of the huge value
    counts = app.state.stats.categorical["store"]
    assert max(len(k) for k in counts) <= MAX_LABEL_CHARS
    assert len(text) < 100_000


def test_non_finite_and_huge_inputs_stay_out_of_value_metrics(dirs):
    app = loaded(dirs["reg"])
    row = {"bmi": 0.01, "bp": 0.02, "s5": 0.03, "visits": 1}
    assert call(app, "POST", "/predict", [row])[0] == 200
    big = dict(row, bmi=1e308)  # valid JSON; its square is +Inf
    status, _ = call(app, "POST", "/predict", [big, row])
    assert status in (200, 422)
    call(app, "POST", "/predict", [dict(row, bp=-1e300)])
    # a real infinity can only come as binary data
    body, hlen = _binary_request({"bmi": ("FP64", [math.inf]), "bp": ("FP64", [0.0]),
                                  "s5": ("FP64", [0.0]), "visits": ("INT64", [1])})
    inf_status = call(app, "POST", "/v2/models/diabetes/infer", body,
                      {"inference-header-content-length": hlen})[0]
    assert inf_status in (200, 422)  # the model may refuse infinities; it never crashes
    text = call(app, "GET", "/metrics")[1]
    for line in text.splitlines():
        if line.startswith(("modelci_feature_value", "modelci_prediction_value")) and not line.startswith("#"):
            assert math.isfinite(float(line.rsplit(" ", 1)[1])), line
    oor = {ln.split('feature="')[1].split('"')[0]: float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
           if ln.startswith("modelci_feature_out_of_range_total{")}
    assert oor["bmi"] == (status == 200) + (inf_status == 200) and oor["bp"] == 1 and oor["s5"] == 0


def _binary_request(columns):
    inputs, raw = [], b""
    for name, (dt, values) in columns.items():
        fmt = {"FP64": "<d", "INT64": "<q"}[dt]
        data = b"".join(struct.pack(fmt, v) for v in values)
        inputs.append({"name": name, "datatype": dt, "shape": [len(values)],
                       "parameters": {"binary_data_size": len(data)}})
        raw += data
    header = json.dumps({"inputs": inputs}).encode()
    return header + raw, len(header)


def test_concurrency_cap_answers_503_with_retry_after(dirs):
    app = loaded(dirs["text"], max_concurrency=1)
    rows = [_text_row("a")]

    async def scenario():
        gate = asyncio.Event()
        sent_slow, sent_fast = [], []

        async def slow_receive():
            await gate.wait()
            return {"type": "http.request", "body": json.dumps(rows).encode(), "more_body": False}

        def scope(path, method="POST"):
            return {"type": "http", "method": method, "path": path, "headers": [], "query_string": b""}

        async def send_to(lst, msg):
            lst.append(msg)

        slow = asyncio.create_task(app(scope("/predict"), slow_receive, lambda m: send_to(sent_slow, m)))
        await asyncio.sleep(0.05)
        assert app.inflight == 1

        async def fast_receive():
            return {"type": "http.request", "body": json.dumps(rows).encode(), "more_body": False}

        await app(scope("/predict"), fast_receive, lambda m: send_to(sent_fast, m))
        health = []
        await app(scope("/v2/health/ready", "GET"), fast_receive, lambda m: send_to(health, m))
        gate.set()
        await slow
        return sent_slow, sent_fast, health

    sent_slow, sent_fast, health = asyncio.run(scenario())
    assert sent_fast[0]["status"] == 503
    hdrs = dict(sent_fast[0]["headers"])
    assert hdrs[b"retry-after"] == b"1"
    assert b"MODELCI_MAX_CONCURRENCY" in sent_fast[1]["body"]
    assert health[0]["status"] == 200  # probes are never capped
    assert sent_slow[0]["status"] == 200
    assert app.inflight == 0
    assert call(app, "POST", "/predict", rows)[0] == 200


def test_slow_body_gets_408_and_the_connection_closed_in_process(dirs):
    app = loaded(dirs["text"], body_timeout=0.2)

    async def scenario():
        sent = []

        async def never():
            await asyncio.sleep(3600)

        async def send(m):
            sent.append(m)

        scope = {"type": "http", "method": "POST", "path": "/predict",
                 "headers": [(b"content-length", b"100")], "query_string": b""}
        t0 = time.monotonic()
        await app(scope, never, send)
        return sent, time.monotonic() - t0

    sent, took = asyncio.run(scenario())
    assert sent[0]["status"] == 408 and took < 2
    assert dict(sent[0]["headers"])[b"connection"] == b"close"


def _read_until_closed(sock, timeout):
    sock.settimeout(timeout)
    data = b""
    t0 = time.monotonic()
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data, time.monotonic() - t0, True
            data += chunk
    except TimeoutError:
        return data, time.monotonic() - t0, False
    except ConnectionResetError:
        return data, time.monotonic() - t0, True


def test_server_closes_slow_headers_and_slow_bodies(dirs):
    port = _free_port()
    proc = _start(dirs["text"], port, MODELCI_HEADER_TIMEOUT_S="1", MODELCI_BODY_TIMEOUT_S="1")
    try:
        assert _wait_ready(proc, port)
        # headers trickling in: closed after ~1 s without a response
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        data, took, closed = _read_until_closed(s, 10)
        s.close()
        assert closed and took < 5 and data == b""
        # an idle new connection is closed too
        s = socket.create_connection(("127.0.0.1", port))
        data, took, closed = _read_until_closed(s, 10)
        s.close()
        assert closed and took < 5
        # a body that never completes: 408, then the connection is closed
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000\r\n\r\n[{")
        data, took, closed = _read_until_closed(s, 10)
        s.close()
        assert closed and took < 5
        assert data.startswith(b"HTTP/1.1 408") and b"MODELCI_BODY_TIMEOUT_S" in data
        # the server still answers
        assert _http(port, "GET", "/v2/health/ready")[0] == 200
        assert _http(port, "POST", "/predict", [_text_row("a")], {"content-type": "application/json"})[0] == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
