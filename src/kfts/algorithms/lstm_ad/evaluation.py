"""LSTM-AD evaluation: with labels detection metrics (kfts.core.anomaly_metrics), without them reconstruction errors;
and the HTML report. Only the steps from the model's first scored row on are scored and counted."""

from __future__ import annotations

import numpy as np

from kfts.core import anomaly_metrics, csvio, report
from kfts.core.errors import InputError
from kfts.core.metrics import headline, score_curves


def evaluate(model, input_path, labels_path=None) -> tuple[dict, str]:
    values = csvio.read_series_columns(input_path, n_series=model.n_series, min_rows=model.first_scored + 1)
    scores, reconstructions = model.score(values)
    L = model.first_scored
    labels = None
    metrics = {"scored_steps": int(len(values) - L), "threshold": model.threshold}
    if labels_path is not None:
        labels = csvio.read_binary_labels(labels_path, len(values))
        scored = labels[L:]
        if scored.min() == scored.max():
            raise InputError(
                f"the labels of the scored rows (row {L + 1} on) are all {scored[0]}: "
                "detection metrics need both normal and anomalous steps",
                path=labels_path,
            )
        window = 2 * anomaly_metrics.estimate_period(values)
        # higher = more anomalous for the metrics: the negated log-likelihood
        metrics.update(
            anomaly_metrics.detection_metrics(scored, -scores[L:], threshold=-model.threshold, window=window)
        )
        metrics["best_f1_threshold"] = -metrics["best_f1_threshold"]  # back in score units: flag if <=
        metrics.update(score_curves(scored, -scores[L:]))  # metrics["roc"], metrics["pr"]: the score's curves
    else:
        errors = reconstructions[L:].astype(np.float64) - values[L:]
        metrics.update(
            {
                "mse": float(np.mean(errors**2)),
                "mae": float(np.mean(np.abs(errors))),
                "mean_score": float(np.mean(scores[L:])),
                "flagged_steps": int(np.sum(scores[L:] < model.threshold)),
            }
        )
    return metrics, _report(model, values, scores, labels, metrics)


def _report(model, values, scores, labels, metrics) -> str:
    flags = scores < model.threshold  # the unscored rows (NaN) are not flagged
    sections = [
        ("Summary", report.table([{"metric": k, "value": v} for k, v in headline(metrics).items()])),
        (
            "Series and score",
            report.figure(report.anomaly_figure(values, scores, model.threshold, labels=labels, flags=flags)),
        ),
    ]
    if "roc" in metrics:
        sections.append(
            (
                "ROC and precision-recall of the score",
                report.figure(report.roc_pr_curves(metrics["roc"], metrics["pr"])),
            )
        )
    if model.history:
        sections.append(("Learning curves", report.figure(report.learning_curves(model.history))))
    return report.page("LSTM-AD evaluation", sections)
