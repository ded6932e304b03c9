"""The promotion gate: may this candidate model replace the champion? (docs/gate.md)

  policy.py     the `gate:` section of modelci.yml, validated, with defaults
  stats.py      vectorised metrics, ROC AUC, the paired bootstrap (fail closed on bad numbers)
  behaviour.py  expectations (named input cases) and slices of the hold-out rows
  decision.py   the decision order, exit codes and the verdict check deploy uses
  evidence.py   JUnit XML, the metrics report, the markdown summary and the plot

The gate step (modelci.steps.gate) loads the models and data and writes the evidence files.
"""
from __future__ import annotations

from .decision import (
                       INCONCLUSIVE,
                       NO_CHANGE,
                       PROMOTE,
                       REJECT,
                       VERDICT_SCHEMA,
                       VERDICTS,
                       decide,
                       evaluate,
                       exit_code,
                       require_passing_verdict,
)
from .evidence import VERDICT_ICON, junit_xml, metrics_text, plot_png, public_result, summary_markdown
from .policy import PER_CLASS_METRICS, higher_is_better, normalize_policy
from .stats import (
                       AUC,
                       Encoded,
                       as_array,
                       classification_metrics_from_cm,
                       paired_bootstrap,
                       per_class_from_cm,
                       point_metrics,
                       roc_auc,
                       rows_needed,
                       supported_metrics,
)

__all__ = ["AUC", "Encoded", "INCONCLUSIVE", "NO_CHANGE", "PER_CLASS_METRICS", "PROMOTE", "REJECT",
           "VERDICTS", "VERDICT_ICON", "VERDICT_SCHEMA", "as_array", "classification_metrics_from_cm", "decide",
           "evaluate", "exit_code", "higher_is_better", "junit_xml", "metrics_text", "normalize_policy",
           "paired_bootstrap", "per_class_from_cm", "plot_png", "point_metrics", "public_result",
           "require_passing_verdict", "roc_auc", "rows_needed", "summary_markdown", "supported_metrics"]
