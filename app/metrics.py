"""Prometheus metrics: HTTP traffic, predictions, and input summaries for drift checks.

Request counters/histograms use prometheus-client. The per-feature input summaries and prediction
counts are plain accumulators updated on the event loop thread (no locks on the hot path) and are
exported by a custom collector at scrape time.

Exported families (all prefixed ``modelci_``):
  http_requests_total{endpoint,method,status}            counter
  http_request_duration_seconds{endpoint,status}         histogram
  predictions_total{model,class}                         counter (classification)
  prediction_value{model}                                summary count/sum (regression) + _sum_squares gauge
  inference_rows_total{model}                            counter
  feature_value{model,feature}                           histogram of non-missing numeric values; buckets
                                                         are the training's decile edges (feature_stats)
  feature_value_sum_squares{model,feature}               gauge (with count and sum: mean and variance)
  feature_missing_total{model,feature}                   counter (null / NaN numeric values, null strings)
  feature_out_of_range_total{model,feature}              counter (numeric values that are infinite or beyond
                                                         +-1e100: excluded from the value metrics above, so
                                                         one absurd input cannot turn a sum into +Inf)
  feature_category_total{model,feature,value}            counter (categorical; the training's categories,
                                                         plus up to MAX_CATEGORIES unseen ones, the rest
                                                         counted as "__other__"; values longer than
                                                         MAX_LABEL_CHARS are cut and suffixed with a hash)
  text_length_chars{model,feature}                       histogram of text lengths (training edges) + _sum_squares
  model_info{model,version,sha256}                       gauge = 1
  model_ready                                            gauge 0/1
"""
from __future__ import annotations

import contextlib
from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    SummaryMetricFamily,
)
from prometheus_client.utils import floatToGoString

MAX_CATEGORIES = 100
OTHER = "__other__"
MAX_LABEL_CHARS = 64
# Values beyond this magnitude (and infinities) are counted apart, never summed or squared.
MAX_MAGNITUDE = 1e100


def bounded_label(value: str, limit: int = MAX_LABEL_CHARS) -> str:
    """A label value of at most `limit` characters: longer values keep a prefix and a hash of the
    whole value (distinct values stay distinct; nothing large is held or exported)."""
    if len(value) <= limit:
        return value
    import hashlib

    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{value[:max(limit - 14, 1)]}~{digest}"
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Moments:
    """count/sum/sum of squares of finite values, missing (null/NaN) count and, when the training
    statistics give bin edges, counts per bin (upper bounds = the training's decile edges)."""

    __slots__ = ("bounds", "buckets", "count", "missing", "out_of_range", "squares", "total")

    def __init__(self, edges: list[float] | None = None) -> None:
        self.count = 0
        self.total = 0.0
        self.squares = 0.0
        self.missing = 0
        self.out_of_range = 0
        # bucket i counts values in (bounds[i-1], bounds[i]]; the last bucket is +Inf
        self.bounds = [float(e) for e in edges[1:]] if edges and len(edges) >= 2 else []
        self.buckets = [0] * (len(self.bounds) + 1)

    def add_array(self, arr: np.ndarray) -> None:
        if arr.shape[0] == 1:
            v = float(arr[0])
            if -MAX_MAGNITUDE < v < MAX_MAGNITUDE:
                self.count += 1
                self.total += v
                self.squares += v * v
                self.buckets[bisect_left(self.bounds, v)] += 1
            elif v != v:
                self.missing += 1
            else:
                self.out_of_range += 1
            return
        a = arr.astype(np.float64, copy=False)
        with np.errstate(invalid="ignore"):
            ok = np.abs(a) < MAX_MAGNITUDE  # False for NaN and +-inf
        n = int(ok.sum())
        if n != a.shape[0]:
            nan = int(np.isnan(a).sum())
            self.missing += nan
            self.out_of_range += a.shape[0] - n - nan
            a = a[ok]
        self.count += n
        self.total += float(a.sum())
        self.squares += float(np.dot(a, a))
        self.add_buckets(a)

    def add_buckets(self, a: np.ndarray) -> None:
        """Bucket counts for finite values `a` (count/total are kept by the caller)."""
        if self.bounds:
            idx = np.searchsorted(np.asarray(self.bounds), a, side="left")
            for i, c in enumerate(np.bincount(idx, minlength=len(self.buckets)).tolist()):
                self.buckets[i] += c
        else:
            self.buckets[0] += a.shape[0]

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        acc = 0
        for bound, c in zip(self.bounds, self.buckets):
            acc += c
            out.append((floatToGoString(bound), acc))
        out.append(("+Inf", self.count))
        return out


def _edges(stats: Any, name: str, key: str | None = None) -> list[float] | None:
    st = stats.get(name) if isinstance(stats, dict) else None
    if isinstance(st, dict) and key:
        st = st.get(key)
    hist = st.get("histogram") if isinstance(st, dict) else None
    edges = hist.get("edges") if isinstance(hist, dict) else None
    if isinstance(edges, list) and all(isinstance(e, (int, float)) for e in edges):
        return sorted(float(e) for e in edges)
    return None


class ModelStats:
    """Accumulators for one model's inputs and outputs."""

    def __init__(self, model: Any) -> None:
        self.model_name = model.name
        self.rows = 0
        fstats = model.meta.get("feature_stats") or {}
        self.numeric = {c.name: _Moments(_edges(fstats, c.name)) for c in model.columns if c.numeric}
        self.categorical: dict[str, dict[str, int]] = {}
        self.cat_cap: dict[str, int] = {}
        for c in model.columns:
            if not c.numeric and c.kind == "categorical":
                st = fstats.get(c.name) if isinstance(fstats, dict) else None
                freqs = st.get("frequencies") if isinstance(st, dict) else None
                known = [bounded_label(str(k)) for k in freqs if k != OTHER] if isinstance(freqs, dict) else []
                # the training's categories are always exported (0 until seen): drift checks compare
                # the same label set; unseen values get room too, then go to "__other__"
                self.categorical[c.name] = dict.fromkeys(known, 0)
                self.cat_cap[c.name] = len(known) + MAX_CATEGORIES
        self.cat_missing = {c.name: 0 for c in model.columns if not c.numeric}
        self.text = {c.name: _Moments(_edges(fstats, c.name, "length")) for c in model.columns
                     if not c.numeric and c.kind != "categorical"}
        self.classification = model.task == "classification"
        self.classes: dict[str, int] = {}
        self._class_arr: np.ndarray | None = None
        if self.classification and model.classes is not None:
            self.classes = {str(c): 0 for c in model.classes}
            with contextlib.suppress(TypeError, ValueError):
                arr = np.asarray(model.classes)
                if arr.ndim == 1 and arr.size and bool(np.all(arr[:-1] < arr[1:])):
                    self._class_arr = arr  # sorted (as scikit-learn keeps classes_): searchsorted works
        self.pred = _Moments()

    def observe(self, batch: Any, y: np.ndarray) -> None:
        self.rows += batch.rows
        block = batch.block
        if block is not None and batch.rows > 1 and batch.checked:
            # all-numeric batch without missing values: a few vectorised operations for all columns
            sums = block.sum(axis=1).tolist()
            squares = np.einsum("ij,ij->i", block, block).tolist()
            n = batch.rows
            for j, mom in enumerate(self.numeric.values()):
                mom.count += n
                mom.total += sums[j]
                mom.squares += squares[j]
                mom.add_buckets(block[j])
        else:
            for name, arr in batch.numeric.items():
                self.numeric[name].add_array(arr)
        for name, values in batch.strings.items():
            counts = self.categorical.get(name)
            if counts is not None:
                for v in values:
                    if v is None:
                        self.cat_missing[name] += 1
                        continue
                    if v not in counts:
                        if len(v) > MAX_LABEL_CHARS:
                            v = bounded_label(v)
                        if v not in counts:
                            v = v if len(counts) < self.cat_cap[name] else OTHER
                            counts.setdefault(v, 0)
                    counts[v] += 1
            else:
                mom = self.text[name]
                lengths = [len(v) for v in values if v is not None]
                self.cat_missing[name] += len(values) - len(lengths)
                if lengths:
                    mom.add_array(np.asarray(lengths, dtype=np.float64))
        if self.classification:
            classes = self.classes
            if y.shape[0] == 1:
                k = str(y[0].item() if hasattr(y[0], "item") else y[0])
                classes[k] = classes.get(k, 0) + 1
            else:
                self._count_classes(y)
        else:
            self.pred.add_array(np.asarray(y, dtype=np.float64).ravel())


    def _count_classes(self, y: np.ndarray) -> None:
        classes = self.classes
        arr = self._class_arr
        if arr is not None:
            with contextlib.suppress(TypeError, ValueError):
                idx = np.searchsorted(arr, y)
                np.clip(idx, 0, arr.size - 1, out=idx)
                if bool(np.all(arr[idx] == y)):
                    for k, c in zip(classes, np.bincount(idx, minlength=arr.size).tolist()):
                        classes[k] += c
                    return
        vals, counts = np.unique(y, return_counts=True)
        for v, c in zip(vals.tolist(), counts.tolist()):
            k = str(v)
            classes[k] = classes.get(k, 0) + c


class InferStats:
    """Per-model inference statistics in Triton's format (GET /v2/models/{name}/stats)."""

    DURATIONS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output",
                 "cache_hit", "cache_miss")

    def __init__(self) -> None:
        self.inference_count = 0  # rows
        self.execution_count = 0  # model calls
        self.last_inference = 0  # ms since the epoch
        self.durations = {k: [0, 0] for k in self.DURATIONS}  # name -> [count, ns]

    def add(self, kind: str, ns: int) -> None:
        d = self.durations[kind]
        d[0] += 1
        d[1] += ns

    def snapshot(self) -> dict[str, Any]:
        return {"inference_count": self.inference_count, "execution_count": self.execution_count,
                "last_inference": self.last_inference, "durations": self.durations}

    @classmethod
    def merged(cls, snaps: list[dict[str, Any]]) -> dict[str, Any]:
        out = cls().snapshot()
        for s in snaps:
            out["inference_count"] += s["inference_count"]
            out["execution_count"] += s["execution_count"]
            out["last_inference"] = max(out["last_inference"], s["last_inference"])
            for k, (c, ns) in s["durations"].items():
                out["durations"][k][0] += c
                out["durations"][k][1] += ns
        return out


class _StatsCollector:
    def __init__(self, state: Any) -> None:
        self.state = state  # ServingState: .stats (ModelStats | None), .model, .ready

    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        st = self.state
        ready = GaugeMetricFamily("modelci_model_ready", "1 when the model is loaded and warmed up")
        ready.add_metric([], 1.0 if st.ready else 0.0)
        yield ready
        stats: ModelStats | None = st.stats
        model = st.model
        if stats is None or model is None:
            return
        m = stats.model_name
        info = GaugeMetricFamily("modelci_model_info", "The model being served",
                                 labels=["model", "version", "sha256"])
        info.add_metric([m, model.version or "", model.sha256], 1.0)
        yield info
        rows = CounterMetricFamily("modelci_inference_rows", "Rows predicted", labels=["model"])
        rows.add_metric([m], stats.rows)
        yield rows
        if stats.classification:
            preds = CounterMetricFamily("modelci_predictions", "Predictions per class",
                                        labels=["model", "class"])
            for k, v in list(stats.classes.items()):
                preds.add_metric([m, k], v)
            yield preds
        else:
            pv = SummaryMetricFamily("modelci_prediction_value", "Predicted values (regression)",
                                     labels=["model"])
            pv.add_metric([m], stats.pred.count, stats.pred.total)
            yield pv
            pq = GaugeMetricFamily("modelci_prediction_value_sum_squares",
                                   "Sum of squared predicted values (regression)", labels=["model"])
            pq.add_metric([m], stats.pred.squares)
            yield pq
        fv = HistogramMetricFamily("modelci_feature_value", "Numeric input values (non-missing); buckets "
                                   "are the training data's decile edges", labels=["model", "feature"])
        fq = GaugeMetricFamily("modelci_feature_value_sum_squares", "Sum of squared numeric input values",
                               labels=["model", "feature"])
        for name, mom in stats.numeric.items():
            fv.add_metric([m, name], mom.cumulative(), mom.total)
            fq.add_metric([m, name], mom.squares)
        yield fv
        yield fq
        miss = CounterMetricFamily("modelci_feature_missing", "Missing (null/NaN) input values",
                                   labels=["model", "feature"])
        for name, mom in stats.numeric.items():
            miss.add_metric([m, name], mom.missing)
        for name, n in stats.cat_missing.items():
            miss.add_metric([m, name], n)
        yield miss
        oor = CounterMetricFamily("modelci_feature_out_of_range", "Numeric input values that are infinite "
                                  "or beyond +-1e100 (excluded from the value metrics)",
                                  labels=["model", "feature"])
        for name, mom in stats.numeric.items():
            oor.add_metric([m, name], mom.out_of_range)
        yield oor
        if stats.categorical:
            cat = CounterMetricFamily("modelci_feature_category", "Categorical input values seen",
                                      labels=["model", "feature", "value"])
            for name, counts in stats.categorical.items():
                for category, n in list(counts.items()):
                    cat.add_metric([m, name, category], n)
            yield cat
        if stats.text:
            tl = HistogramMetricFamily("modelci_text_length_chars", "Length of text inputs in characters",
                                       labels=["model", "feature"])
            tq = GaugeMetricFamily("modelci_text_length_chars_sum_squares",
                                   "Sum of squared text input lengths", labels=["model", "feature"])
            for name, mom in stats.text.items():
                tl.add_metric([m, name], mom.cumulative(), mom.total)
                tq.add_metric([m, name], mom.squares)
            yield tl
            yield tq


class Metrics:
    """One registry per app instance (several apps can live in one process, e.g. in tests)."""

    def __init__(self, state: Any) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter("modelci_http_requests", "HTTP requests", ["endpoint", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram("modelci_http_request_duration_seconds", "HTTP request latency",
                                 ["endpoint", "status"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.load_seconds = Gauge("modelci_model_load_seconds", "Time to verify, load and warm up the model",
                                  registry=self.registry)
        self.registry.register(_StatsCollector(state))
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        key = (endpoint, method, status)
        child = self._children.get(key)
        if child is None:
            child = (self.requests.labels(endpoint, method, str(status)),
                     self.latency.labels(endpoint, str(status)))
            self._children[key] = child
        child[0].inc()
        child[1].observe(seconds)
