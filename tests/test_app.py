"""The serving app (app/): every endpoint, every class of bad request, readiness, metrics.

Most tests drive the ASGI app in-process (fast); a few run `python -m app` (uvicorn) on a free
loopback port to check the real server, its exit codes and HTTP-level body limits.
"""
from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from modelci.artifact import save_model, write_json_atomic

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import model as app_model
from app.model import ModelLoadError
from app.server import ServingApp


# ----------------------------------------------------------------------------- model directories
def _meta(name, task, inputs, classes=None, predict_datatype=None, version="1.4.0"):
    return {
        "name": name, "version": version, "task": task, "target": "y",
        "inputs": inputs,
        "outputs": [{"name": "predict", "datatype": predict_datatype or "FP64"}],
        "classes": classes, "run_id": f"run-{name}", "commit": "0123456789abcdef",
        "data_sha256": "d" * 64, "metrics": {"accuracy": 0.9}, "feature_stats": {},
        "trained_at": "2026-01-02T03:04:05Z",
    }


def _smoke(model_dir, model, X, n=5):
    rows = X.head(n).to_dict("records")
    write_json_atomic(Path(model_dir) / "smoke.json",
                      {"inputs": rows, "expected": np.asarray(model.predict(X.head(n))).tolist()})


def make_wine(model_dir):
    """Numeric classifier, integer classes (predict datatype INT64)."""
    from sklearn.datasets import load_wine
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_wine(return_X_y=True, as_frame=True)
    X = X[["alcohol", "malic_acid", "ash", "magnesium", "flavanoids", "color_intensity", "proline"]]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    inputs = [{"name": c, "kind": "numeric", "datatype": "FP64"} for c in X.columns]
    save_model(model_dir, model, _meta("wine", "classification", inputs, [0, 1, 2], "INT64"))
    _smoke(model_dir, model, X)
    return model, X


def make_text(model_dir):
    """Text + categorical + numeric classifier with string classes (predict datatype BYTES)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    words = {"livros": ["romance", "autor", "capa", "edição", "páginas"],
             "eletronicos": ["bateria", "tela", "usb", "carregador", "bluetooth"],
             "moveis": ["madeira", "mesa", "cadeira", "gaveta", "estante"]}
    rows = []
    for label, vocab in words.items():
        for _ in range(40):
            rows.append({"text": " ".join(rng.choice(vocab, 4)), "store": str(rng.choice(["a", "b", "c"])),
                         "price": float(rng.uniform(5, 500)), "y": label})
    df = pd.DataFrame(rows)
    X, y = df[["text", "store", "price"]], df["y"]
    model = Pipeline([
        ("prep", ColumnTransformer([("text", TfidfVectorizer(), "text"),
                                    ("store", OneHotEncoder(handle_unknown="ignore"), ["store"]),
                                    ("price", "passthrough", ["price"])])),
        ("clf", LogisticRegression(max_iter=500)),
    ]).fit(X, y)
    inputs = [{"name": "text", "kind": "text", "datatype": "BYTES"},
              {"name": "store", "kind": "categorical", "datatype": "BYTES"},
              {"name": "price", "kind": "numeric", "datatype": "FP64"}]
    save_model(model_dir, model, _meta("products", "classification", inputs, sorted(words), "BYTES"))
    _smoke(model_dir, model, X)
    return model, X


def make_regressor(model_dir, smoke=True):
    """Numeric regressor with an INT64 input."""
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    X = X[["bmi", "bp", "s5"]].copy()
    X["visits"] = (np.arange(len(X)) % 7).astype("int64")
    model = Ridge().fit(X, y)
    inputs = [{"name": c, "kind": "numeric", "datatype": "FP64"} for c in ["bmi", "bp", "s5"]]
    inputs.append({"name": "visits", "kind": "numeric", "datatype": "INT64"})
    save_model(model_dir, model, _meta("diabetes", "regression", inputs))
    if smoke:
        _smoke(model_dir, model, X)
    return model, X


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    out = {}
    for name, fn in (("wine", make_wine), ("text", make_text), ("reg", make_regressor)):
        model, X = fn(base / name)
        out[name] = (base / name, model, X)
    return out


# ----------------------------------------------------------------------------- in-process driver
def call(app, method, path, body=None, headers=None, chunks=None):
    """Run one HTTP request through the ASGI app; returns (status, parsed JSON or text)."""
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
    body = body or b""
    hdrs = [(k.lower().encode(), str(v).encode()) for k, v in (headers or {}).items()]
    if chunks is None:
        if not any(k == b"content-length" for k, _ in hdrs):
            hdrs.append((b"content-length", str(len(body)).encode()))
        messages = [{"type": "http.request", "body": body, "more_body": False}]
    else:  # chunked transfer: no Content-Length, several body messages
        messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                    for i, c in enumerate(chunks)]
    scope = {"type": "http", "method": method, "path": path, "headers": hdrs, "query_string": b""}
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(msg):
        sent.append(msg)

    asyncio.run(app(scope, receive, send))
    status = sent[0]["status"]
    ctype = dict(sent[0]["headers"]).get(b"content-type", b"")
    raw = b"".join(m.get("body", b"") for m in sent[1:])
    return status, (json.loads(raw) if ctype.startswith(b"application/json") else raw.decode())


def loaded(model_dir, **kw):
    app = ServingApp(model_dir=str(model_dir), on_fatal=lambda code: None, **kw)
    app.load()
    return app


def v2_request(X, dtypes=None, rid=None, nested=False, **extra):
    inputs = []
    for c in X.columns:
        values = X[c].tolist()
        dt = (dtypes or {}).get(c) or ("BYTES" if X[c].dtype.kind in "OUS" or str(X[c].dtype) == "str"
                                       else "INT64" if X[c].dtype.kind == "i" else "FP64")
        if nested:
            inputs.append({"name": c, "shape": [len(values), 1], "datatype": dt, "data": [[v] for v in values]})
        else:
            inputs.append({"name": c, "shape": [len(values)], "datatype": dt, "data": values})
    req = {"inputs": inputs, **extra}
    if rid is not None:
        req["id"] = rid
    return req


@pytest.fixture(scope="module")
def wine(dirs):
    d, model, X = dirs["wine"]
    return loaded(d), model, X


@pytest.fixture(scope="module")
def text(dirs):
    d, model, X = dirs["text"]
    return loaded(d), model, X


@pytest.fixture(scope="module")
def reg(dirs):
    d, model, X = dirs["reg"]
    return loaded(d), model, X


# ----------------------------------------------------------------------------- health & metadata
def test_health_and_server_metadata(wine):
    app, _, _ = wine
    assert call(app, "GET", "/v2/health/live") == (200, {"live": True})
    assert call(app, "GET", "/v2/health/ready") == (200, {"ready": True})
    status, meta = call(app, "GET", "/v2")
    assert status == 200 and meta["name"] == "modelci-serving" and meta["version"]
    assert meta["extensions"] == ["binary_tensor_data", "statistics"]


def test_not_ready_until_loaded_and_warmed_up(dirs, monkeypatch):
    d, _model, X = dirs["wine"]
    gate = threading.Event()
    real_warmup = app_model.Model.warmup

    def slow_warmup(self):
        gate.wait(10)
        real_warmup(self)

    monkeypatch.setattr(app_model.Model, "warmup", slow_warmup)
    app = ServingApp(model_dir=str(d), on_fatal=lambda code: None)
    assert call(app, "GET", "/v2/health/ready")[0] == 503  # not started
    loader = app.start_loading()  # what the ASGI lifespan startup does
    try:
        assert call(app, "GET", "/v2/health/live") == (200, {"live": True})
        status, body = call(app, "GET", "/v2/health/ready")
        assert status == 503 and body["ready"] is False and "loading" in body["error"]
        assert call(app, "GET", "/v2/models/wine/ready")[0] == 503
        assert call(app, "POST", "/predict", X.head(1).to_dict("records"))[0] == 503
        assert call(app, "POST", "/v2/models/wine/infer", v2_request(X.head(1)))[0] == 503
        assert call(app, "GET", "/lineage")[0] == 503
        assert "modelci_model_ready 0.0" in call(app, "GET", "/metrics")[1]
    finally:
        gate.set()
    loader.join(10)
    assert call(app, "GET", "/v2/health/ready") == (200, {"ready": True})
    assert call(app, "GET", "/v2/models/wine/ready") == (200, {"name": "wine", "ready": True})
    assert "modelci_model_ready 1.0" in call(app, "GET", "/metrics")[1]


def test_lifespan_starts_loading(dirs):
    d, _, _ = dirs["wine"]
    app = ServingApp(model_dir=str(d), on_fatal=lambda code: None)
    msgs = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent = []

    async def receive():
        return msgs.pop(0)

    async def send(m):
        sent.append(m["type"])

    asyncio.run(app({"type": "lifespan"}, receive, send))
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    app._loader.join(20)
    assert app.state.ready


def test_model_metadata(wine, text):
    app, _, X = wine
    status, meta = call(app, "GET", "/v2/models/wine")
    assert status == 200
    assert meta["name"] == "wine" and meta["versions"] == ["1.4.0"] and meta["platform"] == "sklearn"
    assert [i["name"] for i in meta["inputs"]] == list(X.columns)
    assert all(i["datatype"] == "FP64" and i["shape"] == [-1] for i in meta["inputs"])
    outs = {o["name"]: o for o in meta["outputs"]}
    assert outs["predict"] == {"name": "predict", "datatype": "INT64", "shape": [-1]}
    assert outs["predict_proba"]["shape"] == [-1, 3]
    assert meta["parameters"]["classes"] == [0, 1, 2]
    assert call(app, "GET", "/v2/models/wine/versions/1.4.0") == (200, meta)
    assert call(app, "GET", "/v2/models/wine/versions/1.4.0/ready") == (200, {"name": "wine", "ready": True})
    tapp = text[0]
    tmeta = call(tapp, "GET", "/v2/models/products")[1]
    assert {i["name"]: i["datatype"] for i in tmeta["inputs"]} == {"text": "BYTES", "store": "BYTES",
                                                                    "price": "FP64"}
    assert tmeta["outputs"][0]["datatype"] == "BYTES"


def test_unknown_model_version_and_route_are_404(wine):
    app, _, X = wine
    for method, path in [("GET", "/v2/models/nope"), ("GET", "/v2/models/nope/ready"),
                         ("POST", "/v2/models/nope/infer"), ("GET", "/v2/models/wine/versions/9.9.9"),
                         ("POST", "/v2/models/wine/versions/9.9.9/infer"), ("GET", "/v2/models/wine/foo"),
                         ("GET", "/nothing-here"), ("GET", "/v2/models/")]:
        body = v2_request(X.head(1)) if method == "POST" else None
        status, resp = call(app, method, path, body)
        assert status == 404, path
        assert isinstance(resp["error"], str) and resp["error"]


def test_wrong_method_is_405(wine):
    app, _, _ = wine
    assert call(app, "GET", "/predict")[0] == 405
    assert call(app, "GET", "/v2/models/wine/infer")[0] == 405
    assert call(app, "POST", "/v2/health/ready")[0] == 405
    assert call(app, "POST", "/lineage")[0] == 405


def test_lineage_and_version_override(dirs, wine, monkeypatch):
    app, _, _ = wine
    status, lin = call(app, "GET", "/lineage")
    meta = json.loads((dirs["wine"][0] / "model.json").read_text())
    assert status == 200
    assert lin == {"name": "wine", "model_version": "1.4.0", "sha256": meta["sha256"],
                   "data_sha256": "d" * 64, "commit": "0123456789abcdef", "run_id": "run-wine",
                   "metrics": {"accuracy": 0.9}, "trained_at": "2026-01-02T03:04:05Z"}
    monkeypatch.setenv("MODELCI_MODEL_VERSION", "2.0.1")
    app2 = loaded(dirs["wine"][0])
    assert call(app2, "GET", "/lineage")[1]["model_version"] == "2.0.1"
    assert call(app2, "GET", "/v2/models/wine/versions/2.0.1")[0] == 200
    assert call(app2, "GET", "/v2/models/wine/versions/1.4.0")[0] == 404


# ----------------------------------------------------------------------------- predictions
def test_v2_infer_equals_in_process_predict(wine):
    app, model, X = wine
    batch = X.iloc[::9]
    status, resp = call(app, "POST", "/v2/models/wine/infer", v2_request(batch, rid="req-42"))
    assert status == 200, resp
    assert resp["id"] == "req-42" and resp["model_name"] == "wine" and resp["model_version"] == "1.4.0"
    (out,) = resp["outputs"]
    assert out["name"] == "predict" and out["datatype"] == "INT64" and out["shape"] == [len(batch)]
    assert out["data"] == model.predict(batch).tolist()
    # one row, [batch, 1] nested shape, versioned route, integer-typed data for a numeric input
    one = X.iloc[[3]]
    req = v2_request(one, nested=True, dtypes={"magnesium": "INT64"})
    req["inputs"][3]["data"] = [[int(one["magnesium"].iloc[0])]]
    status, resp = call(app, "POST", "/v2/models/wine/versions/1.4.0/infer", req)
    assert status == 200 and resp["outputs"][0]["data"] == model.predict(one).tolist()
    assert "id" not in resp


def test_v2_predict_proba_on_request(wine):
    app, model, X = wine
    batch = X.head(4)
    expected = model.predict_proba(batch)
    for extra in ({"outputs": [{"name": "predict"}, {"name": "predict_proba"}]},
                  {"parameters": {"predict_proba": True}}):
        status, resp = call(app, "POST", "/v2/models/wine/infer", v2_request(batch, **extra))
        assert status == 200, resp
        outs = {o["name"]: o for o in resp["outputs"]}
        assert outs["predict"]["data"] == model.predict(batch).tolist()
        assert outs["predict_proba"]["shape"] == [4, 3] and outs["predict_proba"]["datatype"] == "FP64"
        np.testing.assert_allclose(np.reshape(outs["predict_proba"]["data"], (4, 3)), expected, rtol=1e-12)
    status, resp = call(app, "POST", "/v2/models/wine/infer",
                        v2_request(batch, outputs=[{"name": "predict_proba"}]))
    assert [o["name"] for o in resp["outputs"]] == ["predict_proba"]


def test_plain_predict_equals_in_process_predict(wine, text, reg):
    for app, model, X in (wine, text, reg):
        rows = X.iloc[::11]
        expected = model.predict(rows).tolist()
        for body in (rows.to_dict("records"), {"records": rows.to_dict("records")}):
            status, resp = call(app, "POST", "/predict", body)
            assert status == 200, resp
            assert resp["model_version"] == "1.4.0"
            if app.state.model.task == "regression":
                assert resp["predictions"] == pytest.approx(expected, rel=1e-12)
            else:
                assert resp["predictions"] == expected


def test_text_and_regression_v2(text, reg):
    app, model, X = text
    batch = X.iloc[::13]
    status, resp = call(app, "POST", "/v2/models/products/infer", v2_request(batch))
    assert status == 200, resp
    assert resp["outputs"][0]["datatype"] == "BYTES"
    assert resp["outputs"][0]["data"] == model.predict(batch).tolist()
    app, model, X = reg
    batch = X.head(3)
    status, resp = call(app, "POST", "/v2/models/diabetes/infer", v2_request(batch))
    assert status == 200, resp
    assert resp["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [3],
                                "data": pytest.approx(model.predict(batch).tolist(), rel=1e-12)}]
    assert call(app, "POST", "/v2/models/diabetes/infer",
                v2_request(batch, outputs=[{"name": "predict_proba"}]))[0] == 400


def test_large_batch_runs_off_the_event_loop(dirs):
    d, model, X = dirs["wine"]
    app = loaded(d, inline_rows=2)
    status, resp = call(app, "POST", "/predict", X.to_dict("records"))
    assert status == 200 and resp["predictions"] == model.predict(X).tolist()


# ----------------------------------------------------------------------------- bad requests
def _err(app, path, body, status, *needles, **kw):
    got, resp = call(app, "POST", path, body, **kw)
    assert got == status, (got, resp)
    assert set(resp) == {"error"} and isinstance(resp["error"], str)
    for n in needles:
        assert n in resp["error"], resp["error"]
    return resp["error"]


def test_v2_bad_datatypes(wine, text):
    app, _, X = wine
    one = X.head(1)
    _err(app, "/v2/models/wine/infer", v2_request(one, dtypes={"alcohol": "BYTES"}), 400, "alcohol", "BYTES")
    _err(app, "/v2/models/wine/infer", v2_request(one, dtypes={"alcohol": "BOOL"}), 400, "alcohol")
    req = v2_request(one)
    req["inputs"][0]["data"] = ["13.2"]
    _err(app, "/v2/models/wine/infer", req, 400, "alcohol", "numeric")
    req["inputs"][0]["data"] = [True]
    _err(app, "/v2/models/wine/infer", req, 400, "alcohol")
    req["inputs"][0]["data"] = [{"x": 1}]
    _err(app, "/v2/models/wine/infer", req, 400, "alcohol")
    tapp, _, TX = text
    _err(tapp, "/v2/models/products/infer", v2_request(TX.head(1), dtypes={"text": "FP64"}), 400, "text")
    req = v2_request(TX.head(1))
    req["inputs"][0]["data"] = [123]
    _err(tapp, "/v2/models/products/infer", req, 400, "text", "strings")


def test_v2_bad_shapes(wine):
    app, _, X = wine
    two = X.head(2)
    for shape in ([2, 2], [1, 2], [2, 1, 1], [], "2", [-1], [2.0]):
        req = v2_request(two)
        req["inputs"][1]["shape"] = shape
        _err(app, "/v2/models/wine/infer", req, 400, "malic_acid")
    req = v2_request(two)
    req["inputs"][1]["shape"] = [3]
    _err(app, "/v2/models/wine/infer", req, 400, "malic_acid", "3")  # data has 2 values
    req = v2_request(two)
    req["inputs"][1] = {**req["inputs"][1], "shape": [1], "data": req["inputs"][1]["data"][:1]}
    _err(app, "/v2/models/wine/infer", req, 400, "batch size")  # inconsistent batch sizes
    req = v2_request(two)
    req["inputs"][0]["data"] = [[1.0, 2.0], [3.0, 4.0]]
    req["inputs"][0]["shape"] = [2, 1]
    _err(app, "/v2/models/wine/infer", req, 400, "alcohol")
    req = v2_request(two)
    req["inputs"][0]["data"] = "not a list"
    _err(app, "/v2/models/wine/infer", req, 400, "alcohol")
    req = v2_request(two)
    req["inputs"][0]["shape"] = [0]
    req["inputs"][0]["data"] = []
    _err(app, "/v2/models/wine/infer", req, 400, "empty")


def test_v2_missing_extra_and_malformed_inputs(wine):
    app, _, X = wine
    one = X.head(1)
    req = v2_request(one)
    del req["inputs"][2]
    _err(app, "/v2/models/wine/infer", req, 400, "missing", "ash")
    req = v2_request(one)
    req["inputs"].append({"name": "colour", "shape": [1], "datatype": "FP64", "data": [1.0]})
    _err(app, "/v2/models/wine/infer", req, 400, "unknown input 'colour'")
    req = v2_request(one)
    req["inputs"].append(dict(req["inputs"][0]))
    _err(app, "/v2/models/wine/infer", req, 400, "twice")
    for bad in ({}, {"inputs": []}, {"inputs": "x"}, {"inputs": [1]}, {"inputs": [{"shape": [1]}]}, [1, 2],
                {"inputs": v2_request(one)["inputs"], "outputs": [{"name": "embedding"}]},
                {"inputs": v2_request(one)["inputs"], "outputs": "predict"}):
        _err(app, "/v2/models/wine/infer", bad, 400)


def test_plain_predict_bad_records(wine, text):
    app, _, X = wine
    row = X.head(1).to_dict("records")[0]
    missing = {k: v for k, v in row.items() if k != "proline"}
    _err(app, "/predict", [missing], 400, "missing", "proline")
    _err(app, "/predict", [{**row, "vintage": 1999}], 400, "unknown", "vintage")
    _err(app, "/predict", [{**row, "alcohol": "strong"}], 400, "alcohol")
    _err(app, "/predict", [row, 5], 400, "records[1]")
    for bad in ([], {}, {"rows": [row]}, "text", 3, {"records": 4}):
        _err(app, "/predict", bad, 400)
    tapp, _, TX = text
    trow = TX.head(1).to_dict("records")[0]
    _err(tapp, "/predict", [{**trow, "store": 7}], 400, "store")


def test_bad_json_and_empty_body(wine):
    app, _, _ = wine
    for path in ("/predict", "/v2/models/wine/infer"):
        _err(app, path, b"{not json", 400, "JSON")
        _err(app, path, b"", 400, "empty")
        _err(app, path, b"\xff\xfe\x00garbage", 400)
        _err(app, path, b"[1, 2", 400)
        _err(app, path, b'{"a": NaN}', 400)


def test_oversized_body_is_413(dirs, wine):
    _, _, X = wine
    small = loaded(dirs["wine"][0], max_body=2000)
    body = json.dumps(X.head(40).to_dict("records")).encode()
    assert len(body) > 2000
    _err(small, "/predict", body, 413, "limit")
    _err(small, "/v2/models/wine/infer", b"x" * 10, 413, headers={"content-length": "5000"})
    # no Content-Length (chunked): counted while reading
    _err(small, "/predict", None, 413, "limit", chunks=[body[:1500], body[1500:]])
    ok = json.dumps(X.head(2).to_dict("records")).encode()
    assert call(small, "POST", "/predict", None, chunks=[ok[:50], ok[50:]])[0] == 200
    _err(small, "/predict", ok, 400, headers={"content-length": "abc"})


def test_prediction_errors_are_422_not_500(wine, text):
    app, _, X = wine
    row = X.head(1).to_dict("records")[0]
    # a null numeric value becomes NaN, which LogisticRegression refuses: a client error, not a crash
    msg = _err(app, "/predict", [{**row, "alcohol": None}], 422, "could not predict")
    assert "NaN" in msg
    tapp, _, TX = text
    trow = TX.head(1).to_dict("records")[0]
    _err(tapp, "/predict", [{**trow, "text": None}], 422)
    # the app still serves afterwards
    assert call(app, "POST", "/predict", [row])[0] == 200


def test_finiteness_shortcut_only_for_inputs_the_app_has_checked(wine, text):
    app, model, X = wine
    m = app.state.model
    row = X.head(1).to_dict("records")[0]
    assert m.decode_records([row]).checked
    assert not m.decode_records([{**row, "alcohol": None}]).checked
    assert not m.decode_records([{**row, "proline": 1e200}]).checked
    # huge values take the model's own validation path: same answer as in-process, or a 422
    status, resp = call(app, "POST", "/predict", [{**row, "proline": 1e200}])
    if status == 200:
        assert resp["predictions"] == model.predict(pd.DataFrame([{**row, "proline": 1e200}])).tolist()
    else:
        assert status == 422
    tm = text[0].state.model
    trow = text[2].head(1).to_dict("records")[0]
    assert tm.decode_records([trow]).checked
    assert not tm.decode_records([{**trow, "store": None}]).checked


# ----------------------------------------------------------------------------- metrics
def _metric(text_, name, **labels):
    for line in text_.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, rest = head.partition("{")
        if metric != name:
            continue
        got = dict(kv.split("=", 1) for kv in rest.rstrip("}").split(",") if kv) if rest else {}
        got = {k: v.strip('"') for k, v in got.items()}
        if all(got.get(k) == str(v) for k, v in labels.items()):
            return float(value)
    return 0.0


def test_metrics_counters_move(dirs):
    d, model, X = dirs["text"]
    app = loaded(d)
    status, before = call(app, "GET", "/metrics")
    assert status == 200 and "modelci_model_info" in before
    rows = X.head(6)
    call(app, "POST", "/predict", rows.to_dict("records"))
    call(app, "POST", "/v2/models/products/infer", v2_request(rows))
    call(app, "POST", "/predict", b"{bad")
    _, after = call(app, "GET", "/metrics")
    assert _metric(after, "modelci_http_requests_total", endpoint="/predict", method="POST", status=200) == 1
    assert _metric(after, "modelci_http_requests_total", endpoint="/predict", method="POST", status=400) == 1
    assert _metric(after, "modelci_http_requests_total", endpoint="/v2/models/{name}/infer", status=200) == 1
    assert _metric(after, "modelci_http_request_duration_seconds_count", endpoint="/predict",
                   status=200) == 1
    assert _metric(after, "modelci_http_request_duration_seconds_bucket", endpoint="/predict",
                   status=200, le="+Inf") == 1
    assert _metric(after, "modelci_inference_rows_total", model="products") == 12
    preds = model.predict(rows)
    for cls in set(preds):
        assert _metric(after, "modelci_predictions_total", model="products", **{"class": cls}) == \
            2 * list(preds).count(cls)
    price = rows["price"].to_numpy()
    assert _metric(after, "modelci_feature_value_count", feature="price") == 12
    assert _metric(after, "modelci_feature_value_sum", feature="price") == pytest.approx(2 * price.sum())
    assert _metric(after, "modelci_feature_value_sum_squares", feature="price") == \
        pytest.approx(2 * (price ** 2).sum())
    for store in set(rows["store"]):
        assert _metric(after, "modelci_feature_category_total", feature="store", value=store) == \
            2 * list(rows["store"]).count(store)
    assert _metric(after, "modelci_text_length_chars_count", feature="text") == 12
    assert _metric(after, "modelci_text_length_chars_sum", feature="text") == \
        2 * sum(len(t) for t in rows["text"])
    assert _metric(after, "modelci_model_info", model="products", version="1.4.0") == 1
    # rejected requests do not count as rows or predictions
    call(app, "POST", "/predict", [{"text": "x"}])
    _, again = call(app, "GET", "/metrics")
    assert _metric(again, "modelci_inference_rows_total", model="products") == 12


def test_regression_metrics_and_missing_values(reg):
    app, _model, X = reg
    _, before = call(app, "GET", "/metrics")
    rows = X.head(3).to_dict("records")
    rows[0]["bmi"] = None  # Ridge cannot take NaN: 422, nothing recorded
    assert call(app, "POST", "/predict", rows)[0] == 422
    call(app, "POST", "/predict", X.head(3).to_dict("records"))
    _, after = call(app, "GET", "/metrics")
    d = _metric(after, "modelci_prediction_value_count", model="diabetes") - \
        _metric(before, "modelci_prediction_value_count", model="diabetes")
    assert d == 3
    assert _metric(after, "modelci_feature_value_count", feature="visits") >= 3


# ----------------------------------------------------------------------------- loading failures
def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_tampered_model_never_ready(dirs, tmp_path):
    d = _copy(dirs["wine"][0], tmp_path / "tampered")
    with open(d / "model.joblib", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelLoadError, match="altered"):
        loaded(d)
    codes = []
    app = ServingApp(model_dir=str(d), on_fatal=codes.append)
    app.start_loading().join(20)
    assert codes == [1]
    status, body = call(app, "GET", "/v2/health/ready")
    assert status == 503 and "altered" in body["error"]
    assert call(app, "POST", "/predict", [{}])[0] == 503


@pytest.mark.parametrize("breakage", ["no-model", "no-meta", "bad-meta", "no-sha", "no-inputs",
                                      "bad-smoke", "not-a-model"])
def test_broken_model_directories_refuse_to_load(dirs, tmp_path, breakage):
    d = _copy(dirs["wine"][0], tmp_path / "m")
    meta = json.loads((d / "model.json").read_text())
    if breakage == "no-model":
        (d / "model.joblib").unlink()
    elif breakage == "no-meta":
        (d / "model.json").unlink()
    elif breakage == "bad-meta":
        (d / "model.json").write_text("{")
    elif breakage == "no-sha":
        del meta["sha256"]
        write_json_atomic(d / "model.json", meta)
    elif breakage == "no-inputs":
        meta["inputs"] = []
        write_json_atomic(d / "model.json", meta)
    elif breakage == "bad-smoke":
        write_json_atomic(d / "smoke.json", {"inputs": [{"alcohol": 1.0}], "expected": [0]})
    elif breakage == "not-a-model":
        save_model(d, {"not": "a model"}, meta)
    with pytest.raises(ModelLoadError):
        loaded(d)


def test_no_smoke_file_warms_up_on_a_synthetic_row(tmp_path):
    _model, _X = make_regressor(tmp_path / "r", smoke=False)
    assert not (tmp_path / "r" / "smoke.json").exists()
    app = loaded(tmp_path / "r")
    assert call(app, "GET", "/v2/health/ready")[0] == 200


# ----------------------------------------------------------------------------- the real server
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(port, method, path, body=None, headers=None, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        raw = resp.read()
        ctype = resp.getheader("content-type", "")
        return resp.status, (json.loads(raw) if ctype.startswith("application/json") else raw.decode())
    finally:
        conn.close()


def _start(model_dir, port, **env):
    e = {**os.environ, "MODELCI_MODEL_DIR": str(model_dir), "PORT": str(port), "HOST": "127.0.0.1",
         "PYTHONPATH": str(ROOT), "GRPC_PORT": str(_free_port()), "MODELCI_WORKERS": "1", **env}
    return subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=e, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait_ready(proc, port, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if _http(port, "GET", "/v2/health/ready", timeout=2)[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def test_server_process_end_to_end(dirs):
    d, model, X = dirs["text"]
    port = _free_port()
    proc = _start(d, port, MODELCI_MAX_BODY_BYTES="4096", MODELCI_MODEL_VERSION="3.1.4")
    try:
        assert _wait_ready(proc, port), proc.stdout.read() if proc.poll() is not None else "timeout"
        rows = X.head(5)
        status, resp = _http(port, "POST", "/predict", rows.to_dict("records"),
                             {"content-type": "application/json"})
        assert status == 200 and resp == {"predictions": model.predict(rows).tolist(),
                                          "model_version": "3.1.4"}
        status, resp = _http(port, "POST", "/v2/models/products/versions/3.1.4/infer",
                             v2_request(rows, rid="abc"))
        assert status == 200 and resp["id"] == "abc"
        assert resp["outputs"][0]["data"] == model.predict(rows).tolist()
        assert _http(port, "POST", "/predict", b"x" * 5000)[0] == 413
        assert _http(port, "POST", "/predict", b"{oops")[0] == 400
        # chunked upload over the limit
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/predict", body=iter([b"[" + b" " * 3000, b" " * 3000 + b"]"]),
                     encode_chunked=True)
        assert conn.getresponse().status == 413
        conn.close()
        status, metrics = _http(port, "GET", "/metrics")
        assert status == 200 and 'modelci_http_requests_total{endpoint="/predict",method="POST",status="413"}' \
            in metrics
        assert _http(port, "GET", "/lineage")[1]["model_version"] == "3.1.4"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out


def test_server_process_tampered_model_exits_nonzero(dirs, tmp_path):
    d = _copy(dirs["wine"][0], tmp_path / "tampered")
    model = joblib.load(d / "model.joblib")
    model.steps[-1][1].coef_[0, 0] += 1.0  # a plausible, silently different model
    joblib.dump(model, d / "model.joblib")
    port = _free_port()
    proc = _start(d, port)
    try:
        ever_ready = _wait_ready(proc, port, timeout=60)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        out = proc.stdout.read()
    assert not ever_ready
    assert code == 1, out
    assert "altered" in out and "refusing" in out


def test_bool_columns_and_training_bins_in_metrics(tmp_path):
    """Training declares bool columns INT64 and replays smoke rows through JSON: the app must accept
    true/false there, and the drift metrics use the training's bins and categories."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(1)
    n = 120
    X = pd.DataFrame({"price": rng.uniform(0, 100, n), "promo": rng.random(n) < 0.5,
                      "store": rng.choice(["north", "south", "east"], n)})
    y = np.where(X["promo"] & (X["price"] < 60), "buy", "skip")
    model = Pipeline([("prep", ColumnTransformer([("store", OneHotEncoder(handle_unknown="ignore"), ["store"])],
                                                 remainder="passthrough")),
                      ("clf", LogisticRegression(max_iter=500))]).fit(X, y)
    inputs = [{"name": "price", "kind": "numeric", "datatype": "FP64"},
              {"name": "promo", "kind": "categorical", "datatype": "INT64"},
              {"name": "store", "kind": "categorical", "datatype": "BYTES"}]
    meta = _meta("shop", "classification", inputs, ["buy", "skip"], "BYTES")
    meta["feature_stats"] = {
        "price": {"kind": "numeric", "mean": 50.0, "histogram": {"edges": [0.0, 25.0, 50.0, 75.0, 100.0],
                                                                  "counts": [30, 30, 30, 30]}},
        "store": {"kind": "categorical", "frequencies": {"north": 40, "south": 40, "east": 40}},
    }
    save_model(tmp_path / "shop", model, meta)
    rows = json.loads(json.dumps([{"price": float(p), "promo": bool(b), "store": str(s)}
                                  for p, b, s in X.head(8).itertuples(index=False)]))
    write_json_atomic(tmp_path / "shop" / "smoke.json", {"inputs": rows, "expected": []})
    app = loaded(tmp_path / "shop")
    status, resp = call(app, "POST", "/predict", rows)
    assert status == 200, resp
    assert resp["predictions"] == model.predict(pd.DataFrame.from_records(rows)).tolist()
    req = {"inputs": [{"name": "price", "shape": [2], "datatype": "FP64", "data": [10.0, 80.0]},
                      {"name": "promo", "shape": [2], "datatype": "BOOL", "data": [True, False]},
                      {"name": "store", "shape": [2], "datatype": "BYTES", "data": ["north", "west"]}]}
    status, resp = call(app, "POST", "/v2/models/shop/infer", req)
    assert status == 200, resp
    _, text_ = call(app, "GET", "/metrics")
    prices = [r["price"] for r in rows] + [10.0, 80.0]
    for le in (25.0, 50.0, 75.0, 100.0):
        assert _metric(text_, "modelci_feature_value_bucket", feature="price", le=le) == \
            sum(p <= le for p in prices)
    assert _metric(text_, "modelci_feature_value_bucket", feature="price", le="+Inf") == len(prices)
    # training categories are exported even before they are seen; unseen ones are counted too
    for store in ("north", "south", "east", "west"):
        assert f'value="{store}"' in text_
    assert _metric(text_, "modelci_feature_category_total", feature="store", value="west") == 1
