"""Self-contained HTML reports: headings, tables and matplotlib figures embedded as PNG (no external files)."""

from __future__ import annotations

import base64
import html
import io

import matplotlib

matplotlib.use("Agg")  # no display on servers, pipelines or CI
from matplotlib import pyplot as plt  # noqa: E402


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
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
            "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style></head>"
            f"<body><h1>{html.escape(title)}</h1>{body}</body></html>\n")


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
                    ax.plot([h["epoch"] for h in rows], [h[f"{split}_{name}"] for h in rows],
                            label=f"{split}{suffix}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.legend(fontsize="small")
    return fig
