"""modelci serving app: serves one modelci model directory over the Open Inference Protocol (V2),
a plain JSON /predict endpoint, /lineage and Prometheus /metrics. Run: `python -m app`."""
__version__ = "0.1.0"
