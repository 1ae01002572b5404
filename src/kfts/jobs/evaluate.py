"""The evaluation job: metrics.json, report.html and summary.md written together, with provenance; the
headline figures in Markdown and in KFP's metrics artifacts."""

from __future__ import annotations

import json
import os
from pathlib import Path

from kfts.core import report
from kfts.core.artifact import atomic_directory, check_output_directory
from kfts.core.metrics import headline

OUTPUT_FILES = ("metrics.json", "report.html", "summary.md")


# -- what an evaluation shows beyond metrics.json: provenance, a Markdown summary, a flag confusion matrix ------


def provenance(*, data: str, model: str, manifest: dict, labels: str | None = None) -> dict:
    """Where an evaluation's figures come from: data, model, hyperparameters, kfts versions, date."""
    from datetime import datetime, timezone

    from kfts import __version__

    return {
        "data": data,
        **({"labels": labels} if labels else {}),
        "model": model,
        "algorithm": manifest.get("algorithm"),
        "hyperparameters": " ".join(f"{k}={v}" for k, v in manifest.get("hyperparameters", {}).items()),
        "model written by": f"kfts {manifest.get('kfts_version', '?')}",
        "evaluated by": f"kfts {__version__}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def evaluate(
    model_dir,
    data,
    output_dir,
    *,
    labels=None,
    device: str = "auto",
    split: str | None = None,
    names: dict | None = None,
) -> dict:
    """The evaluation job behind `kfts evaluate` and the evaluate component: score the model in `model_dir` on
    `data` (with `labels` when they are a separate file) by its algorithm's evaluate(), and write metrics.json,
    report.html (titled with `split`, the data file's name by default, with the provenance) and summary.md
    (the headline table in Markdown) into `output_dir`, together. `names` maps the paths given here to what the
    user knows them as (URIs, in a pipeline), for the provenance. Returns the metrics."""
    from kfts.algorithms import of
    from kfts.jobs.load import load_model
    from kfts.jobs.validate import read_checked_manifest

    names = names or {}
    check_output_directory(output_dir, OUTPUT_FILES)
    model = load_model(model_dir, device=device)
    metrics, html = of(model).evaluate(model, data, labels)
    origin = provenance(
        data=names.get(data, os.fspath(data)),
        model=names.get(model_dir, os.fspath(model_dir)),
        labels=names.get(labels, os.fspath(labels)) if labels else None,
        manifest=read_checked_manifest(model_dir),
    )
    split = split or Path(data).name
    with atomic_directory(output_dir, OUTPUT_FILES) as tmp:
        (Path(tmp) / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        (Path(tmp) / "report.html").write_text(report.with_provenance(html, split, origin))
        (Path(tmp) / "summary.md").write_text(summary_markdown(metrics, split, origin))
    return metrics


def summary_markdown(metrics: dict, split: str, origin: dict) -> str:
    """The headline table of an evaluation in Markdown (KFP's Markdown artifact, shown in the run's UI)."""

    def number(v):
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = [f"## {origin.get('algorithm')} evaluation: {split}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {number(v)} |" for k, v in headline(metrics).items()]
    if "per_class" in metrics:
        lines += ["", "| class | precision | recall | f1 | support |", "|---|---|---|---|---|"]
        lines += [
            f"| {c} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['support']} |"
            for c, m in metrics["per_class"].items()
        ]
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
