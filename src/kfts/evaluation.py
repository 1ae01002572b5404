"""Evaluation of a classifier: metrics.json and report.html in an output directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from sklearn import metrics as skm

from kfts import report
from kfts.artifact import atomic_directory


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
        "balanced_accuracy": float(skm.balanced_accuracy_score(labels, predicted)),
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
    aucs = []
    for k, c in enumerate(classes_list):
        positive = labels == c
        if present[k] and not positive.all():
            fpr, tpr, thresholds = skm.roc_curve(positive, proba[:, k])
            result["roc"][c] = {"auc": float(skm.auc(fpr, tpr)), "fpr": fpr.tolist(), "tpr": tpr.tolist(),
                                "thresholds": np.nan_to_num(thresholds, posinf=1.0).tolist()}
            aucs.append(result["roc"][c]["auc"])
            precision_points, recall_points, _ = skm.precision_recall_curve(positive, proba[:, k])
            result["pr"][c] = {"ap": float(skm.average_precision_score(positive, proba[:, k])),
                               "precision": precision_points.tolist(), "recall": recall_points.tolist()}
    result["roc_auc_ovr"] = float(np.mean(aucs)) if aucs else None
    return result


def write_classification_report(output_dir: str | os.PathLike, metrics: dict, history: list[dict],
                                title: str) -> None:
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
    write_outputs(output_dir, metrics, report.page(title, sections))


def write_outputs(output_dir: str | os.PathLike, metrics: dict, html: str) -> None:
    """metrics.json and report.html, written together atomically."""
    with atomic_directory(output_dir) as tmp:
        (Path(tmp) / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        (Path(tmp) / "report.html").write_text(html)


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


def add_provenance(output_dir: str | os.PathLike, split: str, origin: dict) -> None:
    """The split's name in report.html's title and the provenance table in it (kfts.report.with_provenance)."""
    from kfts.artifact import atomic_file
    path = Path(output_dir) / "report.html"
    page = report.with_provenance(path.read_text(), split, origin)
    with atomic_file(path) as f:
        f.write(page)


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


def flag_confusion_matrix(metrics: dict) -> list[list[int]] | None:
    """LSTM-AD's flags against the labels over the scored steps, [[TN, FP], [FN, TP]] (rows: true normal,
    anomaly), from the counts and point-wise recall that detection_metrics reports; None without labels."""
    if not {"recall", "anomalous_steps", "flagged_steps", "scored_steps"} <= metrics.keys():
        return None
    tp = round(metrics["recall"] * metrics["anomalous_steps"])
    fp, fn = metrics["flagged_steps"] - tp, metrics["anomalous_steps"] - tp
    return [[metrics["scored_steps"] - tp - fp - fn, fp], [fn, tp]]
