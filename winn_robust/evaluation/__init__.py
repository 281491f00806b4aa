"""Cross-evaluation of models under attack and the WINN paper's metrics (Tables 2-4).

    EvalSpec(eps, attack, batch_size, limit)                                 (what to do, validated)
    cross_evaluate(models, images, labels, spec) -> CrossEvalResult           (predictions)
    compute_metrics(labels, clean_preds, adv_preds, baseline) -> Metrics      (numbers)

Files (reports) are written a layer above, by `winn_robust.reporting` and `winn_robust.experiments`."""
from winn_robust.evaluation.harness import CrossEvalResult, cross_evaluate
from winn_robust.evaluation.metrics import EpsMetrics, McNemar, Metrics, ModelEpsMetrics, Rate, compute_metrics
from winn_robust.evaluation.spec import EvalSpec

__all__ = ["CrossEvalResult", "EpsMetrics", "EvalSpec", "McNemar", "Metrics", "ModelEpsMetrics", "Rate",
           "compute_metrics", "cross_evaluate"]
