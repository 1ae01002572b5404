"""report.html pages as a reader sees them: rendered in a browser (headless Chromium) with every embedded
image decoded."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
from matplotlib import image

from kfts.core import report
from kfts.core.metrics import classification_metrics, score_curves
from kfts.core.report import classification_report

from helpers import THRESHOLD, lstm_ad_like

COUNT_IMAGES = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  document.body.dataset.images = images.length;
  document.body.dataset.decoded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.overflow = document.documentElement.scrollWidth - document.documentElement.clientWidth;
});
</script></body>"""


def chromium(*args, user_data_dir) -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is not on PATH: install Debian's `chromium` package (.ci/run does, as root)")
    result = subprocess.run(
        [
            path,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={user_data_dir}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"chromium {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result.stdout


def rendered(page_path, tmp_path) -> tuple[tuple[int, int, int], np.ndarray]:
    """(images on the page, images decoded, pixels the page is wider than the window) and its screenshot
    [rows, columns, RGB(A)] in 0..1, in a 1200 x 3000 window."""
    counting = page_path.with_name("counting.html")
    counting.write_text(page_path.read_text().replace("</body>", COUNT_IMAGES, 1))
    window = "--window-size=1200,3000"
    dom = chromium(
        window, "--virtual-time-budget=10000", "--dump-dom", counting.as_uri(), user_data_dir=tmp_path / "profile"
    )
    counts = re.search(r'data-images="(\d+)" data-decoded="(\d+)" data-overflow="(-?\d+)"', dom)
    assert counts, f"the page's image count did not run:\n{dom[:2000]}"
    screenshot = tmp_path / f"{page_path.parent.name}.png"
    chromium(window, f"--screenshot={screenshot}", page_path.as_uri(), user_data_dir=tmp_path / "profile")
    return tuple(map(int, counts.groups())), image.imread(screenshot)


def assert_renders(page_path, tmp_path) -> None:
    (images, decoded, overflow), screenshot = rendered(page_path, tmp_path)
    assert images == page_path.read_text().count("<img") and images > 0
    assert decoded == images, f"{images - decoded} of {images} images did not decode"
    assert overflow <= 0, f"the page is {overflow} pixels wider than the window"
    rgb = screenshot[..., :3]
    colourful = (rgb.max(axis=2) - rgb.min(axis=2)) > 0.3  # plot lines and shading, not text or background
    assert colourful.mean() > 0.002, "the screenshot shows no plots"


def test_reports_render_in_chromium_with_every_image_decoded(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.array(["down", "flat", "up"]), 20)
    proba = rng.dirichlet(np.ones(3), size=60) + 0.5 * np.eye(3)[np.repeat([0, 1, 2], 20)]  # mostly right
    metrics = classification_metrics(labels, proba / proba.sum(axis=1, keepdims=True), np.array(["down", "flat", "up"]))
    history = [
        {"epoch": e, "train_loss": 1 / e, "valid_loss": 1.2 / e, "train_accuracy": 1 - 0.5 / e} for e in range(1, 11)
    ]
    (tmp_path / "inception-time").mkdir()
    (tmp_path / "inception-time" / "report.html").write_text(
        classification_report(metrics, history, "InceptionTime evaluation")
    )
    assert_renders(tmp_path / "inception-time" / "report.html", tmp_path)

    values, scores, labels = lstm_ad_like()
    curves = score_curves(labels[50:], -scores[50:])
    summary = {
        "roc_auc": curves["roc"]["anomaly score"]["auc"],
        "pr_auc": curves["pr"]["anomaly score"]["ap"],
        "flagged_steps": int(np.sum(scores < THRESHOLD)),
    }
    page = report.page(
        "LSTM-AD evaluation",
        [
            ("Summary", report.table([{"metric": k, "value": v} for k, v in summary.items()])),
            (
                "Series and score",
                report.figure(
                    report.anomaly_figure(values, scores, THRESHOLD, labels=labels, flags=scores < THRESHOLD)
                ),
            ),
            ("ROC and precision-recall of the score", report.figure(report.roc_pr_curves(curves["roc"], curves["pr"]))),
        ],
    )
    (tmp_path / "lstm-ad").mkdir()
    (tmp_path / "lstm-ad" / "report.html").write_text(page)
    assert_renders(tmp_path / "lstm-ad" / "report.html", tmp_path)


def test_a_broken_image_is_caught(tmp_path):
    """The check itself: an image whose PNG is cut short does not decode."""
    (tmp_path / "broken").mkdir()
    fig, ax = report.plt.subplots()
    ax.plot([0, 1], [1, 0])
    whole = report.figure(fig)
    cut = whole[: len(whole) // 2] + '">'
    (tmp_path / "broken" / "report.html").write_text(report.page("broken", [("whole", whole), ("cut", cut)]))
    (images, decoded, _), _ = rendered(tmp_path / "broken" / "report.html", tmp_path)
    assert (images, decoded) == (2, 1)
