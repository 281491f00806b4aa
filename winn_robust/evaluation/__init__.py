"""Cross-evaluation of models under attack and the WINN paper's metrics (Tables 2-4).

    cross_evaluate(models, images, labels, eps_values, attack) -> CrossEvalResult  (predictions)
    compute_metrics(labels, clean_preds, adv_preds, baseline) -> Metrics           (numbers)
    evaluate_checkpoints(baseline, models, eps_values, attack, out_dir, ...)       (files)
"""
from winn_robust.evaluation.metrics import EpsMetrics, McNemar, Metrics, ModelEpsMetrics, Rate, compute_metrics
from winn_robust.evaluation.harness import CrossEvalResult, cross_evaluate


def __getattr__(name: str):
    # evaluate_checkpoints writes reports, and reporting imports this package: import it lazily
    # so that importing winn_robust.reporting first does not go round in a circle.
    if name == "evaluate_checkpoints":
        from winn_robust.evaluation.run import evaluate_checkpoints
        return evaluate_checkpoints
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CrossEvalResult", "EpsMetrics", "McNemar", "Metrics", "ModelEpsMetrics", "Rate", "compute_metrics",
           "cross_evaluate", "evaluate_checkpoints"]
