"""Open Inference Protocol completeness: stock tritonclient (HTTP JSON, HTTP binary tensor data, gRPC)
against `python -m app`, Triton-format statistics, the protocol's error codes, the shipped gRPC stubs,
and schemathesis with the OIP REST spec from MLServer's pinned wheel (downloaded at set-up)."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from test_app import _free_port, _http, _start, _wait_ready, make_text

MLSERVER_VERSION = "1.7.1"  # the wheel that ships the OIP REST spec (mlserver/rest/openapi/dataplane.json)
CACHE = ROOT / ".modelci-local" / "cache" / f"mlserver-{MLSERVER_VERSION}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("oip") / "text"
    model, X = make_text(d)
    port, grpc_port = _free_port(), _free_port()
    proc = _start(d, port, GRPC_PORT=str(grpc_port), MODELCI_WORKERS="1")
    try:
        assert _wait_ready(proc, port, timeout=90), proc.stdout.read() if proc.poll() is not None else "timeout"
        yield {"port": port, "grpc_port": grpc_port, "model": model, "X": X}
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def _inputs(mod, X, binary):
    out = []
    for c in X.columns:
        values = X[c].to_numpy()
        if values.dtype.kind in "OUS" or str(X[c].dtype) == "str":
            inp = mod.InferInput(c, [len(X)], "BYTES")
            values = values.astype(object)
        else:
            inp = mod.InferInput(c, [len(X)], "FP64")
            values = values.astype(np.float64)
        if binary is None:
            inp.set_data_from_numpy(values)
        else:
            inp.set_data_from_numpy(values, binary_data=binary)
        out.append(inp)
    return out


def _decode(arr):
    return [v.decode() if isinstance(v, bytes) else v for v in arr.tolist()]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_http(server, binary):
    import tritonclient.http as th
    from tritonclient.utils import InferenceServerException

    model, X = server["model"], server["X"].head(7)
    c = th.InferenceServerClient(f"127.0.0.1:{server['port']}")
    assert c.is_server_live() and c.is_server_ready() and c.is_model_ready("products")
    meta = c.get_server_metadata()
    assert "binary_tensor_data" in meta["extensions"] and "statistics" in meta["extensions"]
    md = c.get_model_metadata("products")
    assert [i["name"] for i in md["inputs"]] == list(X.columns)
    before = c.get_inference_statistics("products")["model_stats"][0]
    outs = [th.InferRequestedOutput("predict", binary_data=binary),
            th.InferRequestedOutput("predict_proba", binary_data=binary)]
    r = c.infer("products", _inputs(th, X, binary), outputs=outs, request_id="r1")
    assert _decode(r.as_numpy("predict")) == model.predict(X).tolist()
    np.testing.assert_allclose(r.as_numpy("predict_proba"), model.predict_proba(X), rtol=1e-12)
    assert r.get_response()["id"] == "r1"
    if binary:  # the client's defaults: binary inputs, binary outputs
        r = c.infer("products", _inputs(th, X, None))
        assert _decode(r.as_numpy("predict")) == model.predict(X).tolist()
        assert r.as_numpy("predict_proba") is None
    after = c.get_inference_statistics("products")["model_stats"][0]
    assert after["inference_count"] - before["inference_count"] == 7 * (2 if binary else 1)
    assert after["inference_stats"]["success"]["count"] > before["inference_stats"]["success"]["count"]
    assert after["name"] == "products" and after["version"] == "1.4.0"
    # bad requests get the protocol's errors
    bad = _inputs(th, X, binary)
    bad[0] = th.InferInput("nope", [7], "BYTES")
    bad[0].set_data_from_numpy(np.array(["x"] * 7, dtype=object), binary_data=binary)
    with pytest.raises(InferenceServerException) as exc:
        c.infer("products", bad)
    assert exc.value.status() == "400" and "unknown input 'nope'" in exc.value.message()
    with pytest.raises(InferenceServerException) as exc:
        c.infer("other", _inputs(th, X, binary))
    assert exc.value.status() == "404"
    c.close()


def test_tritonclient_grpc(server):
    import grpc
    import tritonclient.grpc as tg
    from tritonclient.utils import InferenceServerException

    model, X = server["model"], server["X"].head(5)
    c = tg.InferenceServerClient(f"127.0.0.1:{server['grpc_port']}")
    assert c.is_server_live() and c.is_server_ready() and c.is_model_ready("products")
    assert c.is_model_ready("products", "1.4.0") and not c.is_model_ready("products", "9.9.9")
    meta = c.get_server_metadata()
    assert meta.name == "modelci-serving" and "binary_tensor_data" in meta.extensions
    md = c.get_model_metadata("products")
    assert md.versions == ["1.4.0"] and [i.name for i in md.inputs] == list(X.columns)
    assert [o.name for o in md.outputs] == ["predict", "predict_proba"]
    outs = [tg.InferRequestedOutput("predict"), tg.InferRequestedOutput("predict_proba")]
    r = c.infer("products", _inputs(tg, X, None), outputs=outs, request_id="g1")
    assert _decode(r.as_numpy("predict")) == model.predict(X).tolist()
    np.testing.assert_allclose(r.as_numpy("predict_proba"), model.predict_proba(X), rtol=1e-12)
    assert r.get_response().id == "g1"
    r = c.infer("products", _inputs(tg, X, None))  # no outputs named: predict only
    assert _decode(r.as_numpy("predict")) == model.predict(X).tolist()
    assert r.as_numpy("predict_proba") is None
    bad = _inputs(tg, X, None)[:-1]  # an input missing
    with pytest.raises(InferenceServerException) as exc:
        c.infer("products", bad)
    assert exc.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT) and "missing input" in exc.value.message()
    with pytest.raises(InferenceServerException) as exc:
        c.infer("other", _inputs(tg, X, None))
    assert exc.value.status() == str(grpc.StatusCode.NOT_FOUND)
    with pytest.raises(InferenceServerException) as exc:
        c.get_model_metadata("products", "9.9.9")
    assert exc.value.status() == str(grpc.StatusCode.NOT_FOUND)
    c.close()
    # the same statistics and metrics as REST
    status, text = _http(server["port"], "GET", "/metrics")
    assert 'endpoint="/inference.GRPCInferenceService/ModelInfer",method="GRPC",status="200"} 2.0' in text
    assert 'endpoint="/inference.GRPCInferenceService/ModelInfer",method="GRPC",status="400"} 1.0' in text
    status, stats = _http(server["port"], "GET", "/v2/models/products/stats")
    assert status == 200 and stats["model_stats"][0]["inference_stats"]["fail"]["count"] >= 1


def test_shipped_grpc_stubs_match_the_proto(tmp_path):
    """app/proto/*_pb2*.py are generated with grpcio-tools (test extra) and shipped in the image."""
    pytest.importorskip("grpc_tools")
    out = tmp_path / "gen"
    (out / "app" / "proto").mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I.", f"--python_out={out}",
                    f"--pyi_out={out}", f"--grpc_python_out={out}", "app/proto/grpc_predict_v2.proto"],
                   cwd=ROOT, check=True)
    for name in ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi", "grpc_predict_v2_pb2_grpc.py"):
        assert (out / "app" / "proto" / name).read_text() == (ROOT / "app" / "proto" / name).read_text(), \
            f"app/proto/{name} is stale: regenerate it (see app/README.md)"


def _oip_spec() -> dict:
    """dataplane.json from MLServer's pinned wheel (pip download, cached under .modelci-local/)."""
    wheels = sorted(CACHE.glob(f"mlserver-{MLSERVER_VERSION}-*.whl"))
    if not wheels:
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "-d", str(CACHE), f"mlserver=={MLSERVER_VERSION}"], check=True,
                       capture_output=True, timeout=300)
        wheels = sorted(CACHE.glob(f"mlserver-{MLSERVER_VERSION}-*.whl"))
    with zipfile.ZipFile(wheels[0]) as z:
        return json.loads(z.read("mlserver/rest/openapi/dataplane.json"))


def test_schemathesis_oip_rest_spec(server):
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance

    spec = _oip_spec()
    # the protocol's endpoints; MLServer's own generate/infer_stream extensions are not part of it
    spec["paths"] = {p: v for p, v in spec["paths"].items() if not p.endswith(("_stream", "/generate"))}
    # The file declares TensorData as oneOf [array, {"type": "bytes"}]; "bytes" is no JSON Schema type
    # (schemathesis cannot generate it): read it as the string it is on the wire.
    tensor = spec["components"]["schemas"]["TensorData"]
    tensor["oneOf"] = [{"type": "string"} if t.get("type") == "bytes" else t for t in tensor["oneOf"]]
    schema = schemathesis.openapi.from_dict(spec)
    base = f"http://127.0.0.1:{server['port']}"
    ran = 0
    for result in schema.get_all_operations():
        op = result.ok()

        @given(case=op.as_strategy())
        @settings(max_examples=25, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            nonlocal ran
            for real in (False, True):  # random names (404s) and this server's model
                if real and "model_name" in (case.path_parameters or {}):
                    case.path_parameters["model_name"] = "products"
                    if "model_version" in case.path_parameters:
                        case.path_parameters["model_version"] = "1.4.0"
                case.call_and_validate(base_url=base, checks=[not_a_server_error,
                                                              response_schema_conformance], timeout=10)
                ran += 1

        run()
    assert ran >= 50
