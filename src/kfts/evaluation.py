"""What evaluations share: classification metrics and their report, metrics.json and report.html written
together, provenance, the headline figures, the Markdown summary."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from sklearn import metrics as skm

from kfts import report
from kfts.artifact import atomic_directory, check_output_directory

OUTPUT_FILES = ("metrics.json", "report.html", "summary.md")


def classification_metrics(labels: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> dict:
    """Accuracy, balanced accuracy, macro F1, log loss, per-class P/R/F1, confusion matrix, one-vs-rest ROC and
    precision-recall curves."""
    predicted = classes[proba.argmax(axis=1)]
    classes_list = classes.tolist()
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0)
    present = np.isin(classes, labels)
    result = {
        "accuracy": float(skm.accuracy_score(labels, predicted)),
        # the mean recall of the classes present, as skm.balanced_accuracy_score, without its warning when a
        # class is predicted that the data does not hold
        "balanced_accuracy": float(np.mean(recall[present])),
        "macro_f1": float(skm.f1_score(labels, predicted, labels=classes, average="macro", zero_division=0)),
        "log_loss": float(skm.log_loss(labels, np.clip(proba, 1e-7, 1), labels=classes)),
        "per_class": {c: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                      for c, p, r, f, s in zip(classes_list, precision, recall, f1, support)},
        "confusion_matrix": {"labels": classes_list,
                             "matrix": skm.confusion_matrix(labels, predicted, labels=classes).tolist()},
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
    return ({"auc": float(skm.auc(fpr, tpr)), **_thinned(max_points, fpr=fpr, tpr=tpr, thresholds=thresholds)},
            {"ap": float(skm.average_precision_score(positive, score)),
             **_thinned(max_points, precision=precision, recall=recall)})


def _thinned(max_points: int | None, **curve: np.ndarray) -> dict[str, list]:
    """The points of a curve as lists, at most `max_points` of them evenly spaced along it, both ends kept."""
    n = len(next(iter(curve.values())))
    keep = (np.unique(np.linspace(0, n - 1, max_points).round().astype(int)) if max_points and n > max_points
            else slice(None))
    return {name: points[keep].tolist() for name, points in curve.items()}


def classification_report(metrics: dict, history: list[dict], title: str) -> str:
    """The HTML page of a classifier's evaluation: summary, confusion matrix, ROC and PR curves, per class
    figures, learning curves."""
    matrix = np.array(metrics["confusion_matrix"]["matrix"])
    labels = metrics["confusion_matrix"]["labels"]
    fig, ax = report.plt.subplots(figsize=(1.2 + 0.6 * len(labels),) * 2)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center",
                color="white" if count > matrix.max() / 2 else "black")
    headline = {k: metrics[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "log_loss", "roc_auc_ovr")}
    sections = [("Summary", report.table([headline])),
                ("Confusion matrix", report.figure(fig)),
                *([("ROC and precision-recall, each class against the rest",
                    report.figure(report.roc_pr_curves(metrics["roc"], metrics["pr"])))] if metrics["roc"] else []),
                ("Per class", report.table([{"class": c, **m} for c, m in metrics["per_class"].items()]))]
    if history:
        sections.append(("Learning curves", report.figure(report.learning_curves(history))))
    return report.page(title, sections)


# -- what an evaluation shows beyond metrics.json: provenance, a Markdown summary, a flag confusion matrix ------

def provenance(*, data: str, model: str, manifest: dict, labels: str | None = None) -> dict:
    """Where an evaluation's figures come from: data, model, hyperparameters, kfts versions, date."""
    from datetime import datetime, timezone

    from kfts import __version__
    return {"data": data, **({"labels": labels} if labels else {}), "model": model,
            "algorithm": manifest.get("algorithm"),
            "hyperparameters": " ".join(f"{k}={v}" for k, v in manifest.get("hyperparameters", {}).items()),
            "model written by": f"kfts {manifest.get('kfts_version', '?')}", "evaluated by": f"kfts {__version__}",
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def evaluate(model_dir, data, output_dir, *, labels=None, device: str = "auto", split: str | None = None,
             names: dict | None = None) -> dict:
    """The evaluation job behind `kfts evaluate` and the evaluate component: score the model in `model_dir` on
    `data` (with `labels` when they are a separate file) by its algorithm's evaluate(), and write metrics.json,
    report.html (titled with `split`, the data file's name by default, with the provenance) and summary.md
    (the headline table in Markdown) into `output_dir`, together. `names` maps the paths given here to what the
    user knows them as (URIs, in a pipeline), for the provenance. Returns the metrics."""
    from kfts.algorithms import load_model, of
    from kfts.validation import read_manifest
    names = names or {}
    check_output_directory(output_dir, OUTPUT_FILES)
    model = load_model(model_dir, device=device)
    metrics, html = of(model).evaluate(model, data, labels)
    origin = provenance(data=names.get(data, os.fspath(data)), model=names.get(model_dir, os.fspath(model_dir)),
                        labels=names.get(labels, os.fspath(labels)) if labels else None,
                        manifest=read_manifest(model_dir))
    split = split or Path(data).name
    with atomic_directory(output_dir, OUTPUT_FILES) as tmp:
        (Path(tmp) / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        (Path(tmp) / "report.html").write_text(report.with_provenance(html, split, origin))
        (Path(tmp) / "summary.md").write_text(summary_markdown(metrics, split, origin))
    return metrics


def headline(metrics: dict) -> dict:
    """The single figures of an evaluation (no curves, tables or matrices), integers kept integers."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def summary_markdown(metrics: dict, split: str, origin: dict) -> str:
    """The headline table of an evaluation in Markdown (KFP's Markdown artifact, shown in the run's UI)."""
    def number(v):
        return f"{v:.4f}" if isinstance(v, float) else str(v)
    lines = [f"## {origin.get('algorithm')} evaluation: {split}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {number(v)} |" for k, v in headline(metrics).items()]
    if "per_class" in metrics:
        lines += ["", "| class | precision | recall | f1 | support |", "|---|---|---|---|---|"]
        lines += [f"| {c} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['support']} |"
                  for c, m in metrics["per_class"].items()]
    lines += ["", *(f"- {k}: {v}" for k, v in origin.items())]
    return "\n".join(lines) + "\n"


def log_classification(classification, metrics: dict) -> None:
    """Fill a KFP ClassificationMetrics artifact from an evaluation's metrics: InceptionTime's confusion matrix,
    or LSTM-AD's flags against the labels; and one ROC curve from metrics["roc"] (KFP holds one an artifact):
    the positive class's for two classes, else the first curve (LSTM-AD: its only one, the anomaly score's);
    metadata roc_class names it."""
    if "confusion_matrix" in metrics:
        matrix = metrics["confusion_matrix"]
        classification.log_confusion_matrix([str(c) for c in matrix["labels"]], matrix["matrix"])
    elif flag_confusion_matrix(metrics) is not None:
        classification.log_confusion_matrix(["normal", "anomaly"], flag_confusion_matrix(metrics))
    roc = metrics.get("roc") or {}
    if roc:
        names = list(roc)
        name = names[-1] if len(metrics.get("confusion_matrix", {}).get("labels", [])) == 2 else names[0]
        classification.log_roc_curve(roc[name]["fpr"], roc[name]["tpr"], roc[name]["thresholds"])
        classification.metadata["roc_class"] = name


def flag_confusion_matrix(metrics: dict) -> list[list[int]] | None:
    """LSTM-AD's flags against the labels over the scored steps, [[TN, FP], [FN, TP]] (rows: true normal,
    anomaly), from the counts and point-wise recall that detection_metrics reports; None without labels."""
    if not {"recall", "anomalous_steps", "flagged_steps", "scored_steps"} <= metrics.keys():
        return None
    tp = round(metrics["recall"] * metrics["anomalous_steps"])
    fp, fn = metrics["flagged_steps"] - tp, metrics["anomalous_steps"] - tp
    return [[metrics["scored_steps"] - tp - fp - fn, fp], [fn, tp]]
