"""Self-contained HTML reports: headings, tables and matplotlib figures embedded as PNG (no external files)."""

from __future__ import annotations

import base64
import html
import io

import matplotlib
import numpy as np

matplotlib.use("Agg")  # no display on servers, pipelines or CI
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.gridspec import SubplotSpec  # noqa: E402


def figure(fig) -> str:
    """An <img> holding the figure as an embedded PNG; closes the figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def table(rows: list[dict]) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row.values()) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else html.escape(str(value))


def page(title: str, sections: list[tuple[str, str]]) -> str:
    body = "".join(f"<h2>{html.escape(heading)}</h2>{content}" for heading, content in sections)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
        # a figure wider than the window (or the frame a UI shows the page in) shrinks to fit it
        "body{font-family:sans-serif;margin:2em}img{max-width:100%;height:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )


def with_provenance(page_html: str, split: str, provenance: dict) -> str:
    """A page() with the split it shows in its title and heading, and a Provenance table (the data, the model,
    its hyperparameters, the kfts versions, the date) below the heading."""
    start, end = page_html.index("<title>") + len("<title>"), page_html.index("</title>")
    title = page_html[start:end]
    titled = f"{title}: {html.escape(split)}"
    section = "<h2>Provenance</h2>" + table([{"": k, "value": v} for k, v in provenance.items()])
    page_html = page_html.replace(f"<title>{title}</title>", f"<title>{titled}</title>", 1)
    return page_html.replace(f"<h1>{title}</h1>", f"<h1>{titled}</h1>{section}", 1)


def roc_pr_curves(roc: dict[str, dict], pr: dict[str, dict]):
    """ROC and precision-recall curves, one line per class (or score), from their points:
    roc[name] = {fpr, tpr, auc}, pr[name] = {precision, recall, ap}."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, c in roc.items():
        left.plot(c["fpr"], c["tpr"], label=f"{name} (AUC {c['auc']:.3f})")
    left.plot([0, 1], [0, 1], color="#bbb", linestyle=":")
    left.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    for name, c in pr.items():
        right.plot(c["recall"], c["precision"], label=f"{name} (AP {c['ap']:.3f})")
    right.set(xlabel="recall", ylabel="precision", title="precision-recall", ylim=(0, 1.05))
    for ax in (left, right):
        ax.legend(fontsize="small")
    return fig


def learning_curves(history: list[dict]):
    """Loss (and accuracy, where logged) per epoch; one line per member when members trained one by one."""
    names = [k for k in ("loss", "accuracy") if any(f"train_{k}" in h for h in history)]
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.5), squeeze=False)
    for ax, name in zip(axes[0], names):
        for member in sorted({h.get("member") for h in history}, key=lambda m: m or 0):
            rows = [h for h in history if h.get("member") == member]
            suffix = f" (member {member})" if member else ""
            for split in ("train", "valid"):
                if f"{split}_{name}" in rows[0]:
                    ax.plot([h["epoch"] for h in rows], [h[f"{split}_{name}"] for h in rows], label=f"{split}{suffix}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.legend(fontsize="small")
    return fig


def anomaly_figure(values, scores, threshold: float, labels=None, flags=None, zooms: int = 3):
    """An anomaly detector's series and score over time, labelled ranges shaded, flagged steps marked, and below
    close-ups of the `zooms` most anomalous labelled or flagged regions (lowest score first), in time order.

    values [T, d]; scores [T] log-likelihoods, lower = more anomalous, NaN on the rows not scored; threshold:
    a step is flagged when its score is below it; labels, flags: 0/1 per step. The overview's score axis
    spans score_limits (one deep anomaly would flatten every other score into a line); the scores below it
    are drawn on its lower edge. The close-ups show their scores unclipped."""
    from kfts.core.anomaly_metrics import label_ranges

    values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    scores = np.asarray(scores, dtype=np.float64)
    labels, flags = (None if m is None else np.asarray(m) != 0 for m in (labels, flags))
    windows = zoom_windows(scores, labels, flags, zooms)
    heights = [3, 3, 2, 2] if windows else [3, 3]
    fig = plt.figure(figsize=(12, sum(heights)), layout="constrained")
    grid = fig.add_gridspec(len(heights), max(len(windows), 1), height_ratios=heights)
    # (steps, series cell, score cell, the score axis's limits; None: the scores' own)
    panels: list[tuple[slice, SubplotSpec, SubplotSpec, tuple[float, float] | None]] = [
        (slice(None), grid[0, :], grid[1, :], score_limits(scores, threshold))
    ]
    panels += [(slice(s, e + 1), grid[2, k], grid[3, k], None) for k, (s, e) in enumerate(windows)]
    for part, series_cell, score_cell, limits in panels:
        series = fig.add_subplot(series_cell)
        score = fig.add_subplot(score_cell, sharex=series)
        steps = np.arange(len(scores))[part]
        for j in range(values.shape[1]):
            series.plot(steps, values[part, j], linewidth=0.6, label=f"series {j + 1}")
        shown = scores[part] if limits is None else np.maximum(scores[part], limits[0])
        score.plot(steps, shown, linewidth=0.6, color="black", label="score (log-likelihood)")
        score.axhline(threshold, color="tab:orange", linestyle="--", linewidth=0.8, label="flag threshold")
        if limits is not None:
            score.set_ylim(*limits)
            below = scores < limits[0]
            if below.any():
                score.plot(
                    steps[below],
                    np.full(below.sum(), limits[0]),
                    "v",
                    color="tab:purple",
                    markersize=4,
                    clip_on=False,
                    zorder=3,
                    label=f"below the axis (lowest {_lowest(scores):.4g})",
                )
        if labels is not None:
            for k, (s, e) in enumerate(label_ranges(labels[part]) + steps[0]):
                for ax in (series, score):
                    ax.axvspan(
                        s - 0.5,
                        e + 0.5,
                        color="tab:red",
                        alpha=0.2,
                        linewidth=0,
                        label="labelled anomaly" if k == 0 else None,
                    )
        if flags is not None and flags[part].any():
            flagged = flags[part]
            score.plot(steps[flagged], shown[flagged], "o", color="tab:orange", markersize=2.5, label="flagged")
            series.plot(
                steps[flagged],
                np.zeros(flagged.sum()),
                "|",
                color="tab:orange",
                markersize=8,
                transform=series.get_xaxis_transform(),
                label="flagged",
            )
        series.tick_params(labelbottom=False)
        score.set_xlabel("time step")
        if limits is not None:  # the overview: titles and legends once
            series.set_ylabel("value")
            score.set_ylabel("score (lower = more anomalous)")
            # beside the panels: inside they would hide the end of the series
            if values.shape[1] <= 10:
                series.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
            score.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
        else:
            lowest = _lowest(scores[part])
            series.set_title(
                f"steps {steps[0]}-{steps[-1]}"
                + (f", lowest score {lowest:.4g}" if lowest < np.inf else ", not scored"),
                fontsize="medium",
            )
    return fig


def score_limits(scores, threshold: float) -> tuple[float, float]:
    """y limits that show the threshold, the bulk of the scores and the scores just below the threshold: from the
    highest score down to as far below the threshold as the highest score is above it (below the median score
    instead where most scores are under the threshold; never below the lowest score), with a margin."""
    scores = np.asarray(scores, dtype=np.float64)
    scores = scores[np.isfinite(scores)]
    if not len(scores):
        return threshold - 1, threshold + 1
    high = max(scores.max(), threshold)
    base = min(threshold, np.median(scores))
    span = (high - base) or 1.0
    low = max(scores.min(), base - span)
    return low - 0.05 * span, high + 0.05 * span


def zoom_windows(scores, labels, flags, count: int) -> list[tuple[int, int]]:
    """Up to `count` (start, end) windows around the labelled or flagged steps, nearby ones merged, each with
    context on both sides, in time order: first those holding labelled steps (a missed anomaly is worth a
    close look), then the flagged ones, each group by its lowest score (unscored windows last)."""
    from kfts.core.anomaly_metrics import label_ranges, widened_ranges

    marked = np.zeros(len(scores), dtype=bool)
    for mask in (labels, flags):
        if mask is not None:
            marked |= mask
    ranges = label_ranges(marked)
    if not len(ranges) or count < 1:
        return []
    windows = widened_ranges(ranges, max(10, len(scores) // 100), len(scores))

    def rank(window):
        part = slice(window[0], window[1] + 1)
        return labels is None or not labels[part].any(), _lowest(scores[part])

    return sorted((int(s), int(e)) for s, e in sorted(windows, key=rank)[:count])


def _lowest(scores: np.ndarray) -> float:
    """The lowest score, inf where none is scored (NaN)."""
    scored = scores[np.isfinite(scores)]
    return float(scored.min()) if len(scored) else np.inf


def classification_report(metrics: dict, history: list[dict], title: str) -> str:
    """The HTML page of a classifier's evaluation: summary, confusion matrix, ROC and PR curves, per class
    figures, learning curves."""
    matrix = np.array(metrics["confusion_matrix"]["matrix"])
    labels = metrics["confusion_matrix"]["labels"]
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * len(labels),) * 2)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > matrix.max() / 2 else "black")
    headline = {k: metrics[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "log_loss", "roc_auc_ovr")}
    sections = [
        ("Summary", table([headline])),
        ("Confusion matrix", figure(fig)),
        *(
            [
                (
                    "ROC and precision-recall, each class against the rest",
                    figure(roc_pr_curves(metrics["roc"], metrics["pr"])),
                )
            ]
            if metrics["roc"]
            else []
        ),
        ("Per class", table([{"class": c, **m} for c, m in metrics["per_class"].items()])),
    ]
    if history:
        sections.append(("Learning curves", figure(learning_curves(history))))
    return page(title, sections)
