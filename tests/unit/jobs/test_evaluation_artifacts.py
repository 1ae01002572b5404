"""What an evaluation shows in the KFP UI and its report: the evaluate component's Metrics (natural types),
ClassificationMetrics (confusion matrix and a ROC curve; LSTM-AD's flags against the labels), Markdown
summary, and an HTML report with the split in its title, the provenance and ROC / precision-recall plots."""

from __future__ import annotations

import numpy as np
import pytest
from kfp.dsl import (
    HTML,
    Artifact,
    ClassificationMetrics,
    Dataset,
    Markdown,
    Metrics,
    Model,
)
from sklearn import metrics as skm

from kfts.algorithms.inception_time.estimator import InceptionTime, Params
from kfts.core.csvio import LabeledSeries
from kfts.core.metrics import (
    SCORE_CURVE_POINTS,
    classification_metrics,
    headline,
    score_curves,
)
from kfts.jobs.evaluate import flag_confusion_matrix, log_classification
from kfts.kubeflow.components import evaluate

from helpers import make_classification, write_csv


def _outputs(tmp_path):
    return {
        "evaluation": Artifact(uri=str(tmp_path / "evaluation")),
        "metrics": Metrics(uri=str(tmp_path / "m")),
        "classification": ClassificationMetrics(uri=str(tmp_path / "c")),
        "report": HTML(uri=str(tmp_path / "report.html")),
        "summary": Markdown(uri=str(tmp_path / "s.md")),
    }


def test_inception_time_evaluation_artifacts(tmp_path):
    labels, values = make_classification(n_per_class=8, length=16, classes=("up", "down", "flat"))
    InceptionTime(Params(filters=4, depth=3, models=1, epochs=3), device="cpu", seed=0).fit(
        LabeledSeries(labels=labels, values=values)
    ).save(tmp_path / "model")
    test = write_csv(tmp_path / "test.csv", ([lab, *row] for lab, row in zip(labels, values)))
    data = Dataset(uri=str(test), metadata={"source": "s3://b/test.csv"})
    out = _outputs(tmp_path)
    accuracy = evaluate.python_func(
        model=Model(uri=str(tmp_path / "model")), data=data, metric="accuracy", split="test", **out
    )
    assert out["metrics"].metadata["accuracy"] == accuracy
    matrix = out["classification"].metadata["confusionMatrix"]
    assert [c["displayName"] for c in matrix["annotationSpecs"]] == ["down", "flat", "up"]
    assert sum(map(sum, (row["row"] for row in matrix["rows"]))) == 24
    assert out["classification"].metadata["confidenceMetrics"]
    page = (tmp_path / "report.html").read_text()
    assert "<title>InceptionTime evaluation: test</title>" in page and "<h2>Provenance</h2>" in page
    assert "s3://b/test.csv" in page and "filters=4 depth=3" in page
    assert "<h2>ROC and precision-recall, each class against the rest</h2><img" in page
    assert page.count('src="data:image/png;base64,') >= 3  # confusion matrix, ROC/PR, learning curves
    summary = (tmp_path / "s.md").read_text()
    assert summary.startswith("## inception-time evaluation: test\n") and f"| accuracy | {accuracy:.4f} |" in summary
    assert "| up | " in summary and "- data: s3://b/test.csv" in summary


def test_lstm_ad_flags_against_the_labels_as_a_confusion_matrix():
    metrics = {"scored_steps": 100, "anomalous_steps": 10, "flagged_steps": 12, "recall": 0.8}
    assert flag_confusion_matrix(metrics) == [[86, 4], [2, 8]]  # TP 8, FP 4, FN 2, TN 86
    assert sum(map(sum, flag_confusion_matrix(metrics))) == 100
    assert flag_confusion_matrix({"scored_steps": 100, "mse": 0.1}) is None


def _anomaly_scores(n=20000, seed=0):
    """0/1 labels with a few anomalous ranges and a score (higher = more anomalous) that mostly separates them:
    one distinct value a step, so scikit-learn's curves have thousands of points."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(n, dtype=np.int8)
    for start in (3000, 9000, 15000):
        labels[start : start + 200] = 1
    return labels, rng.normal(size=n) + 2.5 * labels


def test_score_curves_are_thinned_finite_and_keep_the_exact_areas():
    labels, scores = _anomaly_scores()
    curves = score_curves(labels, scores)
    roc, pr = curves["roc"]["anomaly score"], curves["pr"]["anomaly score"]
    assert len(skm.roc_curve(labels, scores)[0]) > 2 * SCORE_CURVE_POINTS  # there was something to thin
    assert len(roc["fpr"]) == len(roc["tpr"]) == len(roc["thresholds"]) == SCORE_CURVE_POINTS
    assert len(pr["precision"]) == len(pr["recall"]) == SCORE_CURVE_POINTS
    assert roc["auc"] == pytest.approx(skm.roc_auc_score(labels, scores), abs=1e-12)
    assert pr["ap"] == pytest.approx(skm.average_precision_score(labels, scores), abs=1e-12)
    assert (roc["fpr"][0], roc["tpr"][0], roc["fpr"][-1], roc["tpr"][-1]) == (0, 0, 1, 1)
    assert (pr["recall"][0], pr["recall"][-1]) == (1, 0)
    thresholds = np.array(roc["thresholds"])
    assert np.isfinite(thresholds).all() and np.all(np.diff(thresholds) < 0)
    assert thresholds[0] > scores.max() and thresholds[-1] == scores.min()
    assert np.all(np.diff(roc["fpr"]) >= 0) and np.all(np.diff(roc["tpr"]) >= 0)


def test_short_score_curves_keep_every_point():
    curves = score_curves([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert curves["roc"]["anomaly score"]["fpr"] == skm.roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])[0].tolist()
    assert curves["roc"]["anomaly score"]["auc"] == 0.75


def test_lstm_ad_classification_metrics_hold_the_flags_and_the_roc_of_the_score():
    labels, scores = _anomaly_scores()
    flagged = scores >= 2.0
    metrics = {
        "scored_steps": len(labels),
        "anomalous_steps": int(labels.sum()),
        "flagged_steps": int(flagged.sum()),
        "recall": float(flagged[labels == 1].mean()),
        "roc_auc": 0.9,
        **score_curves(labels, scores),
    }
    assert headline(metrics) == {k: v for k, v in metrics.items() if k not in ("roc", "pr")}
    classification = ClassificationMetrics(uri="unused")
    log_classification(classification, metrics)
    matrix = classification.metadata["confusionMatrix"]
    assert [c["displayName"] for c in matrix["annotationSpecs"]] == ["normal", "anomaly"]
    assert [row["row"] for row in matrix["rows"]] == flag_confusion_matrix(metrics)
    points = classification.metadata["confidenceMetrics"]
    assert classification.metadata["roc_class"] == "anomaly score" and len(points) == SCORE_CURVE_POINTS
    assert [p["falsePositiveRate"] for p in points] == metrics["roc"]["anomaly score"]["fpr"]


def test_two_classes_log_the_roc_of_the_positive_class():
    labels = np.array(["no", "yes", "yes", "no", "yes"])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3], [0.1, 0.9]])
    metrics = classification_metrics(labels, proba, np.array(["no", "yes"]))
    classification = ClassificationMetrics(uri="unused")
    log_classification(classification, metrics)
    assert classification.metadata["roc_class"] == "yes"
    assert [p["confidenceThreshold"] for p in classification.metadata["confidenceMetrics"]] == metrics["roc"]["yes"][
        "thresholds"
    ]
    assert metrics["roc"]["yes"]["thresholds"][0] > 0.9  # above every probability of "yes", and finite
