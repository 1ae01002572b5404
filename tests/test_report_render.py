"""The reports as a reader sees them: LSTM-AD's series-and-score figure keeps the threshold and the bulk of the
scores readable beside a deep anomaly, and report.html pages render in a browser (headless Chromium) with
every embedded image decoded."""

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

THRESHOLD = -12.0


def lstm_ad_like(n=3000, seed=0):
    """values [n, 2], log-likelihood scores (NaN on the first 50 rows; normal around -5; a labelled anomaly at
    1200-1259 scored down to -250; three false alarms just under THRESHOLD; a labelled range at 2500-2519 the
    scores miss) and the 0/1 labels."""
    rng = np.random.default_rng(seed)
    steps = np.arange(n)
    values = np.stack([np.sin(steps / 20), 2 * np.cos(steps / 33)], axis=1) + 0.05 * rng.normal(size=(n, 2))
    values[1200:1260, 0] += 1.5
    scores = rng.normal(-5, 1.2, n)
    scores[:50] = np.nan
    scores[1200:1260] = np.linspace(-30, -250, 60)
    scores[[400, 1800, 2100]] = [-13, -14.5, -12.5]
    labels = np.zeros(n, dtype=np.int8)
    labels[1190:1270] = labels[2500:2520] = 1
    return values.astype(np.float32), scores, labels


def test_the_overview_score_axis_shows_the_threshold_and_the_bulk_not_the_deep_anomaly():
    values, scores, labels = lstm_ad_like()
    fig = report.anomaly_figure(values, scores, THRESHOLD, labels=labels, flags=scores < THRESHOLD)
    series, score, *zooms = fig.axes
    low, high = score.get_ylim()
    assert low < THRESHOLD < high
    assert low < -14.5 and high > np.nanmax(scores)  # every false alarm and the highest score
    assert low > -40  # -250 would squeeze the normal scores (-5 +- 1.2) into a line
    assert (np.nanquantile(scores, 0.99) - np.nanquantile(scores, 0.01)) / (high - low) > 0.25
    assert any("below the axis (lowest -250)" in t.get_text() for t in score.get_legend().get_texts())
    assert len(zooms) == 6  # three close-ups, series over score
    report.plt.close(fig)


def test_close_ups_show_the_labelled_ranges_first_then_the_deepest_false_alarm():
    _, scores, labels = lstm_ad_like()
    flags = scores < THRESHOLD
    windows = report.zoom_windows(scores, labels != 0, flags, 3)
    assert windows == [(1160, 1299), (1770, 1830), (2470, 2549)]  # anomaly, false alarm at -14.5, missed range
    assert report.zoom_windows(scores, None, flags, 2) == [(1170, 1289), (1770, 1830)]  # 30 steps of context
    assert report.zoom_windows(scores, None, np.zeros(len(scores), dtype=bool), 3) == []
    fig = report.anomaly_figure(*lstm_ad_like()[:2], THRESHOLD, flags=flags, zooms=1)
    _, _, close_series, close_score = fig.axes
    assert close_series.get_title() == "steps 1170-1289, lowest score -250"
    assert close_score.get_ylim()[0] < -250  # a close-up is not clipped
    report.plt.close(fig)


def test_score_limits_follow_the_scores_where_most_are_under_the_threshold():
    scores = np.random.default_rng(0).normal(-40, 2, 1000)  # a drifted series: everything flagged
    low, high = report.score_limits(scores, THRESHOLD)
    assert low < np.median(scores) and high >= THRESHOLD
    assert report.score_limits(np.full(5, np.nan), THRESHOLD) == (THRESHOLD - 1, THRESHOLD + 1)


def test_roc_pr_figure_of_the_score():
    _, scores, labels = lstm_ad_like()
    curves = score_curves(labels[50:], -scores[50:])
    fig = report.roc_pr_curves(curves["roc"], curves["pr"])
    roc_axes, pr_axes = fig.axes
    assert [t.get_text() for t in roc_axes.get_legend().get_texts()] == [
        f"anomaly score (AUC {curves['roc']['anomaly score']['auc']:.3f})"]
    assert len(pr_axes.get_lines()) == 1 and len(roc_axes.get_lines()) == 2  # the curve and the chance diagonal
    report.plt.close(fig)


# -- in a browser ---------------------------------------------------------------------------------------------

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
    result = subprocess.run([path, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                             "--disable-background-networking", "--disable-component-update", "--disable-sync",
                             f"--user-data-dir={user_data_dir}", *args],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"chromium {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result.stdout


def rendered(page_path, tmp_path) -> tuple[tuple[int, int, int], np.ndarray]:
    """(images on the page, images decoded, pixels the page is wider than the window) and its screenshot
    [rows, columns, RGB(A)] in 0..1, in a 1200 x 3000 window."""
    counting = page_path.with_name("counting.html")
    counting.write_text(page_path.read_text().replace("</body>", COUNT_IMAGES, 1))
    window = "--window-size=1200,3000"
    dom = chromium(window, "--virtual-time-budget=10000", "--dump-dom", counting.as_uri(),
                   user_data_dir=tmp_path / "profile")
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


@pytest.mark.integration
def test_reports_render_in_chromium_with_every_image_decoded(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.array(["down", "flat", "up"]), 20)
    proba = rng.dirichlet(np.ones(3), size=60) + 0.5 * np.eye(3)[np.repeat([0, 1, 2], 20)]  # mostly right
    metrics = classification_metrics(labels, proba / proba.sum(axis=1, keepdims=True), np.array(["down", "flat", "up"]))
    history = [{"epoch": e, "train_loss": 1 / e, "valid_loss": 1.2 / e, "train_accuracy": 1 - 0.5 / e}
               for e in range(1, 11)]
    (tmp_path / "inception-time").mkdir()
    (tmp_path / "inception-time" / "report.html").write_text(
        classification_report(metrics, history, "InceptionTime evaluation"))
    assert_renders(tmp_path / "inception-time" / "report.html", tmp_path)

    values, scores, labels = lstm_ad_like()
    curves = score_curves(labels[50:], -scores[50:])
    summary = {"roc_auc": curves["roc"]["anomaly score"]["auc"], "pr_auc": curves["pr"]["anomaly score"]["ap"],
               "flagged_steps": int(np.sum(scores < THRESHOLD))}
    page = report.page("LSTM-AD evaluation", [
        ("Summary", report.table([{"metric": k, "value": v} for k, v in summary.items()])),
        ("Series and score", report.figure(report.anomaly_figure(values, scores, THRESHOLD, labels=labels,
                                                                 flags=scores < THRESHOLD))),
        ("ROC and precision-recall of the score", report.figure(report.roc_pr_curves(curves["roc"], curves["pr"])))])
    (tmp_path / "lstm-ad").mkdir()
    (tmp_path / "lstm-ad" / "report.html").write_text(page)
    assert_renders(tmp_path / "lstm-ad" / "report.html", tmp_path)


@pytest.mark.integration
def test_a_broken_image_is_caught(tmp_path):
    """The check itself: an image whose PNG is cut short does not decode."""
    (tmp_path / "broken").mkdir()
    fig, ax = report.plt.subplots()
    ax.plot([0, 1], [1, 0])
    whole = report.figure(fig)
    cut = whole[:len(whole) // 2] + '">'
    (tmp_path / "broken" / "report.html").write_text(report.page("broken", [("whole", whole), ("cut", cut)]))
    (images, decoded, _), _ = rendered(tmp_path / "broken" / "report.html", tmp_path)
    assert (images, decoded) == (2, 1)
