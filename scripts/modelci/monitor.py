"""Drift monitoring: compare production's live input distribution with the training data's.

Live side: production's Prometheus /metrics (app/metrics.py). Numeric inputs are exported as a
histogram whose bucket bounds are the training data's decile edges (`modelci_feature_value`), text
inputs as a histogram of their length (`modelci_text_length_chars`), categorical inputs as counts
per value (`modelci_feature_category_total`), plus missing-value counters. The counts are cumulative
since the serving process started (a deploy starts a new one).

Training side: `feature_stats` of the model (model.json or run.json): numeric histogram edges +
counts, categorical frequencies, text length histogram.

Per feature, with method
  psi  Population Stability Index over the training bins (numeric/text: the decile bins plus one
       bin above the training maximum; categorical: the training's values plus the unseen ones):
       PSI = sum((a - e) * ln(a / e)), proportions floored at 1e-4. Rule of thumb: < 0.1 stable,
       0.1-0.2 moderate, > 0.2 significant. Default threshold 0.2.
  ks   numeric/text: the Kolmogorov-Smirnov distance between the binned CDFs (max |F_live - F_train|
       at the training edges, a lower bound of the exact KS statistic); categorical: total variation
       distance. Default threshold 0.1.
A feature drifts when its statistic exceeds the threshold and production saw at least `min_rows`
non-missing values of it (fewer: "insufficient-data", never drift).

Boundary note: the training histogram counts values in [e_i, e_i+1) (numpy), Prometheus buckets
in (e_i, e_i+1]; for continuous inputs the difference is negligible, for integer-valued inputs
whose values sit on the edges it shifts mass between neighbouring bins.
"""
from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

import requests

from . import log
from .errors import ModelCIError

EPS = 1e-4
DEFAULT_THRESHOLDS = {"psi": 0.2, "ks": 0.1}
OTHER = "__other__"


# ----------------------------------------------------------------------------------------- live side
def scrape(url: str, timeout: float = 10.0) -> tuple[str, dict[str, Any] | None]:
    """GET <url>/metrics (text) and <url>/lineage (JSON or None)."""
    base = url.rstrip("/")
    try:
        resp = requests.get(base + "/metrics", timeout=timeout)
    except requests.RequestException as exc:
        raise ModelCIError(f"--production-url {url}: cannot reach {base}/metrics ({exc.__class__.__name__}); "
                           f"check MODELCI_PRODUCTION_URL and that production is up") from None
    if resp.status_code != 200:
        raise ModelCIError(f"--production-url {url}: GET /metrics answered {resp.status_code}; point "
                           f"MODELCI_PRODUCTION_URL at the modelci serving app")
    lineage = None
    try:
        lr = requests.get(base + "/lineage", timeout=timeout)
        if lr.status_code == 200:
            lineage = lr.json()
    except (requests.RequestException, ValueError):
        lineage = None
    return resp.text, lineage


def parse_metrics(text: str) -> dict[str, Any]:
    """The drift-relevant families of the app's /metrics, per feature."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, Any] = {"model": None, "numeric": {}, "text": {}, "categorical": {}, "missing": {}}
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise ModelCIError(f"/metrics: not Prometheus text format ({exc}); is this the modelci serving app?") \
            from None
    for fam in families:
        for s in fam.samples:
            labels, name, value = s.labels, s.name, s.value
            if fam.name == "modelci_model_info":
                out["model"] = {"name": labels.get("model"), "version": labels.get("version") or None,
                                "sha256": labels.get("sha256")}
            elif fam.name in ("modelci_feature_value", "modelci_text_length_chars"):
                kind = "numeric" if fam.name == "modelci_feature_value" else "text"
                h = out[kind].setdefault(labels["feature"], {"buckets": [], "count": 0.0, "sum": 0.0})
                if name.endswith("_bucket"):
                    le = labels["le"]
                    h["buckets"].append((math.inf if le in ("+Inf", "Inf") else float(le), value))
                elif name.endswith("_count"):
                    h["count"] = value
                elif name.endswith("_sum"):
                    h["sum"] = value
            elif fam.name in ("modelci_feature_value_sum_squares", "modelci_text_length_chars_sum_squares"):
                kind = "numeric" if fam.name.startswith("modelci_feature") else "text"
                out[kind].setdefault(labels["feature"], {"buckets": [], "count": 0.0, "sum": 0.0})["sumsq"] = value
            elif fam.name == "modelci_feature_category" and name.endswith("_total"):
                out["categorical"].setdefault(labels["feature"], {})[labels["value"]] = value
            elif fam.name == "modelci_feature_missing" and name.endswith("_total"):
                out["missing"][labels["feature"]] = value
    for kind in ("numeric", "text"):
        for h in out[kind].values():
            h["buckets"].sort(key=lambda b: b[0])
    return out


# ----------------------------------------------------------------------------------------- statistics
def _props(counts: list[float]) -> list[float]:
    total = sum(counts)
    return [max(c / total, EPS) if total else EPS for c in counts]


def psi(expected: list[float], actual: list[float]) -> float:
    e, a = _props(expected), _props(actual)
    return float(sum((ai - ei) * math.log(ai / ei) for ei, ai in zip(e, a)))


def ks_binned(expected: list[float], actual: list[float]) -> float:
    te, ta = sum(expected) or 1.0, sum(actual) or 1.0
    ce = ca = d = 0.0
    for e, a in zip(expected, actual):
        ce += e / te
        ca += a / ta
        d = max(d, abs(ce - ca))
    return float(d)


def tvd(expected: list[float], actual: list[float]) -> float:
    te, ta = sum(expected) or 1.0, sum(actual) or 1.0
    return float(0.5 * sum(abs(e / te - a / ta) for e, a in zip(expected, actual)))


def _live_bins(hist: dict[str, Any], edges: list[float]) -> list[float] | None:
    """Per-bin live counts in the training's bins (+ one above the max), or None if the bounds differ."""
    bounds = [b for b, _ in hist["buckets"]]
    want = [float(e) for e in edges[1:]] + [math.inf]
    if len(bounds) != len(want) or any(not math.isclose(b, w, rel_tol=1e-9, abs_tol=1e-12)
                                       for b, w in zip(bounds, want) if not (math.isinf(b) and math.isinf(w))):
        return None
    cum = [c for _, c in hist["buckets"]]
    return [cum[0]] + [cum[i] - cum[i - 1] for i in range(1, len(cum))]


def _hist_stats(st: dict[str, Any] | None) -> tuple[list[float], list[float]] | None:
    hist = (st or {}).get("histogram") if isinstance(st, dict) else None
    if not isinstance(hist, dict) or not hist.get("edges") or not hist.get("counts"):
        return None
    return [float(e) for e in hist["edges"]], [float(c) for c in hist["counts"]]


def compare_feature(name: str, kind: str, train: dict[str, Any] | None, live: dict[str, Any], method: str,
                    threshold: float, min_rows: int) -> dict[str, Any]:
    res: dict[str, Any] = {"feature": name, "kind": kind, "method": method, "threshold": threshold,
                           "statistic": None, "drift": False, "status": "ok"}
    missing_live = live.get("missing", {}).get(name, 0.0)
    if kind in ("numeric", "text"):
        h = live[kind].get(name)
        tstats = (train or {}).get("length") if kind == "text" else train
        ts = _hist_stats(tstats)
        if h is None or ts is None:
            res["status"] = "no-data" if h is None else "no-training-stats"
            return res
        edges, tcounts = ts
        lcounts = _live_bins(h, edges)
        if lcounts is None:
            res.update(status="bins-mismatch", message="the app's buckets are not this model's training edges")
            return res
        expected = tcounts + [0.0]
        n = h["count"]
        res["live_rows"] = int(n)
        res["training_rows"] = int(sum(tcounts))
        if n:
            mean = h["sum"] / n
            res["live_mean"] = mean
            if "sumsq" in h and n > 1:
                res["live_std"] = math.sqrt(max(0.0, (h["sumsq"] - n * mean * mean) / (n - 1)))
        if isinstance(tstats, dict) and tstats.get("mean") is not None:
            res["training_mean"] = tstats["mean"]
            sd = tstats.get("std") or 0.0
            if n and sd > 0:
                res["mean_shift_sd"] = (res["live_mean"] - tstats["mean"]) / sd
        labels = [f"({edges[i]:g}, {edges[i + 1]:g}]" for i in range(len(edges) - 1)] + [f"> {edges[-1]:g}"]
        stat = psi(expected, lcounts) if method == "psi" else ks_binned(expected, lcounts)
    else:
        counts = live["categorical"].get(name)
        freqs = (train or {}).get("frequencies") if isinstance(train, dict) else None
        if counts is None or not isinstance(freqs, dict) or not freqs:
            res["status"] = "no-data" if counts is None else "no-training-stats"
            return res
        labels = list(freqs) + [k for k in counts if k not in freqs]
        expected = [float(freqs.get(k, 0.0)) for k in labels]
        lcounts = [float(counts.get(k, 0.0)) for k in labels]
        n = sum(lcounts)
        res["live_rows"] = int(n)
        res["training_rows"] = int(sum(expected))
        unseen = [k for k in counts if k not in freqs and counts[k] > 0]
        if unseen:
            res["unseen_values"] = unseen[:20]
        stat = psi(expected, lcounts) if method == "psi" else tvd(expected, lcounts)
    res["statistic"] = round(stat, 6)
    te, tl = sum(expected) or 1.0, sum(lcounts) or 1.0
    res["bins"] = [{"bin": lab, "training": round(e / te, 6), "live": round(a / tl, 6)}
                   for lab, e, a in zip(labels, expected, lcounts)]
    total_live = n + missing_live
    res["live_missing_rate"] = round(missing_live / total_live, 6) if total_live else None
    if isinstance(tstats if kind != "categorical" else train, dict):
        t = train or {}
        tc, tm = t.get("count"), t.get("missing")
        if isinstance(tc, (int, float)) and isinstance(tm, (int, float)) and tc + tm:
            res["training_missing_rate"] = round(tm / (tc + tm), 6)
    if n < min_rows:
        res["status"] = "insufficient-data"
        res["message"] = f"{int(n)} live values < min_rows {min_rows}"
        return res
    if stat > threshold:
        res.update(drift=True, status="drift")
    return res


def analyse(live: dict[str, Any], stats: dict[str, Any], method: str, threshold: float,
            min_rows: int) -> list[dict[str, Any]]:
    """One result per feature of the training statistics (numeric, categorical, text)."""
    results = []
    for name, st in stats.items():
        kind = st.get("kind") if isinstance(st, dict) else None
        if kind not in ("numeric", "categorical", "text"):
            continue
        results.append(compare_feature(name, kind, st, live, method, threshold, min_rows))
    return results


# ----------------------------------------------------------------------------------------- report
def build_report(*, production_url: str, lineage: dict[str, Any] | None, live: dict[str, Any],
                 stats_source: str, stats_sha256: str | None, method: str, threshold: float, min_rows: int,
                 features: list[dict[str, Any]]) -> dict[str, Any]:
    drifted = [f["feature"] for f in features if f["drift"]]
    model = live.get("model") or {}
    evaluated = [f for f in features if f["status"] in ("ok", "drift")]
    status = "drift" if drifted else ("ok" if evaluated else "insufficient-data")
    return {"status": status, "drift": bool(drifted), "drifted_features": drifted,
            "generated_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "production_url": production_url,
            "model": {"name": (lineage or {}).get("name") or model.get("name"),
                      "version": (lineage or {}).get("model_version") or model.get("version"),
                      "sha256": (lineage or {}).get("sha256") or model.get("sha256")},
            "training_stats": {"source": stats_source, "sha256": stats_sha256},
            "method": method, "threshold": threshold, "min_rows": min_rows,
            "features": features, "trigger": None, "issue": None}


def markdown(report: dict[str, Any]) -> str:
    m = report["model"]
    icon = {"ok": "✅", "drift": "⚠️", "triggered": "🔁", "insufficient-data": "…"}.get(report["status"], "")
    lines = [f"## modelci drift report {icon} {report['status']}", "",
             (f"Production `{report['production_url']}` serves **{m.get('name')} {m.get('version')}** "
              f"(sha256 `{str(m.get('sha256'))[:12]}`), compared with its training data "
              f"({report['training_stats']['source']})."), "",
             (f"Method **{report['method']}**, threshold **{report['threshold']}**, at least "
              f"{report['min_rows']} live values per feature."), "",
             "| feature | kind | statistic | live rows | live mean | training mean | status |",
             "|---|---|---:|---:|---:|---:|---|"]

    def num(v: Any) -> str:
        return "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)

    for f in report["features"]:
        lines.append(f"| `{f['feature']}` | {f['kind']} | {num(f.get('statistic'))} | {num(f.get('live_rows'))} | "
                     f"{num(f.get('live_mean'))} | {num(f.get('training_mean'))} | "
                     f"{'**drift**' if f['drift'] else f['status']} |")
    trig = report.get("trigger")
    lines.append("")
    if trig:
        lines.append(f"Retraining pipeline triggered: [#{trig.get('id')}]({trig.get('web_url')}) on "
                     f"`{trig.get('ref')}` (an API pipeline: its jobs retrain without reusing a cached model).")
    elif report["drift"]:
        lines.append("Drift found; no retraining pipeline was started (the config's monitor.on_drift does not "
                     "list retrain, or --no-trigger).")
    else:
        lines.append("No feature drifted beyond the threshold.")
    issue = report.get("issue") or {}
    if issue.get("web_url"):
        lines.append(f"Drift issue #{issue.get('iid')} {issue.get('action')}: {issue['web_url']}")
    return "\n".join(lines) + "\n"


def trigger_retrain(client: Any, ref: str | None) -> dict[str, Any]:
    """POST /projects/:id/pipeline on the default branch, with no pipeline variables: the components'
    rules recognise a pipeline whose `$CI_PIPELINE_SOURCE` is `api` on the default branch as a retrain
    (docs/design.md, "Which pipeline does what"), so this works where pipeline variables are blocked."""
    with client.errors("triggering the retraining pipeline"):
        if not ref:
            ref = client.gl.projects.get(client.project_id).attributes.get("default_branch")
        if not ref:
            raise ModelCIError(f"GitLab project {client.project_id}: no default branch; pass --ref")
        pipeline = client.project.pipelines.create({"ref": ref})
    attrs = pipeline.attributes
    log.info(f"monitor: triggered retraining pipeline {attrs.get('id')} on {ref}: {attrs.get('web_url')}")
    return {"id": attrs.get("id"), "ref": ref, "web_url": attrs.get("web_url"), "status": attrs.get("status")}
