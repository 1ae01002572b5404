"""Metrics every algorithm's evaluation draws on: a classifier's (accuracy, per class figures, confusion
matrix, ROC and PR curves), score curves thinned for a report, the headline figures of any evaluation."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as skm


def classification_metrics(labels: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> dict:
    """Accuracy, balanced accuracy, macro F1, log loss, per-class P/R/F1, confusion matrix, one-vs-rest ROC and
    precision-recall curves."""
    predicted = classes[proba.argmax(axis=1)]
    classes_list = classes.tolist()
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0
    )
    present = np.isin(classes, labels)
    result: dict[str, Any] = {
        "accuracy": float(skm.accuracy_score(labels, predicted)),
        # the mean recall of the classes present, as skm.balanced_accuracy_score, without its warning when a
        # class is predicted that the data does not hold
        "balanced_accuracy": float(np.mean(recall[present])),
        "macro_f1": float(skm.f1_score(labels, predicted, labels=classes, average="macro", zero_division=0)),
        "log_loss": float(skm.log_loss(labels, np.clip(proba, 1e-7, 1), labels=classes)),
        "per_class": {
            c: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for c, p, r, f, s in zip(classes_list, precision, recall, f1, support)
        },
        "confusion_matrix": {
            "labels": classes_list,
            "matrix": skm.confusion_matrix(labels, predicted, labels=classes).tolist(),
        },
        "roc": {},
        "pr": {},
    }
    # one-vs-rest ROC for each class present with both positives and negatives in the data
    for k, c in enumerate(classes_list):
        positive = labels == c
        if present[k] and not positive.all():
            result["roc"][c], result["pr"][c] = _curves(positive, proba[:, k])
    aucs = [curve["auc"] for curve in result["roc"].values()]
    result["roc_auc_ovr"] = float(np.mean(aucs)) if aucs else None
    return result


# KFP keeps a ClassificationMetrics' ROC curve in its metadata, one entry a point: a few hundred points draw the
# curve and keep the artifact small, where a long series would give one point per distinct score
SCORE_CURVE_POINTS = 200


def score_curves(labels: np.ndarray, scores: np.ndarray, max_points: int = SCORE_CURVE_POINTS) -> dict:
    """The ROC and precision-recall curves of an anomaly score (higher = more anomalous; for LSTM-AD the negated
    log-likelihood) against 0/1 labels, under the keys classification_metrics uses, so that the report and the
    evaluate component read both algorithms alike: {"roc": {"anomaly score": {auc, fpr, tpr, thresholds}},
    "pr": {"anomaly score": {ap, precision, recall}}}. AUC and AP are computed from every point; each curve
    keeps at most `max_points` of its points."""
    roc, pr = _curves(np.asarray(labels) != 0, np.asarray(scores, dtype=np.float64), max_points)
    return {"roc": {"anomaly score": roc}, "pr": {"anomaly score": pr}}


def _curves(positive: np.ndarray, score: np.ndarray, max_points: int | None = None) -> tuple[dict, dict]:
    """ROC {auc, fpr, tpr, thresholds} and precision-recall {ap, precision, recall} of `score` against the
    boolean `positive`, at most `max_points` points each (all when None). scikit-learn's first threshold, above
    every score, is infinite; KFP and JSON want a finite number, so it becomes the next float above the
    highest score."""
    fpr, tpr, thresholds = skm.roc_curve(positive, score)
    thresholds[0] = np.nextafter(score.max(), np.inf)
    precision, recall, _ = skm.precision_recall_curve(positive, score)
    return (
        {"auc": float(skm.auc(fpr, tpr)), **_thinned(max_points, fpr=fpr, tpr=tpr, thresholds=thresholds)},
        {
            "ap": float(skm.average_precision_score(positive, score)),
            **_thinned(max_points, precision=precision, recall=recall),
        },
    )


def _thinned(max_points: int | None, **curve: np.ndarray) -> dict[str, list]:
    """The points of a curve as lists, at most `max_points` of them evenly spaced along it, both ends kept."""
    n = len(next(iter(curve.values())))
    keep = (
        np.unique(np.linspace(0, n - 1, max_points).round().astype(int))
        if max_points and n > max_points
        else slice(None)
    )
    return {name: points[keep].tolist() for name, points in curve.items()}


def headline(metrics: dict) -> dict:
    """The single figures of an evaluation (no curves, tables or matrices), integers kept integers."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
