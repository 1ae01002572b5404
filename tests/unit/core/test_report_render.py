"""The reports' figures as a reader sees them: LSTM-AD's series-and-score figure keeps the threshold and the
bulk of the scores readable beside a deep anomaly; ROC and PR curves of a score (the pages in a browser:
tests/integration/core/test_report_browser.py)."""

from __future__ import annotations

import numpy as np

from kfts.core import report
from kfts.core.metrics import score_curves

from helpers import THRESHOLD, lstm_ad_like


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
        f"anomaly score (AUC {curves['roc']['anomaly score']['auc']:.3f})"
    ]
    assert len(pr_axes.get_lines()) == 1 and len(roc_axes.get_lines()) == 2  # the curve and the chance diagonal
    report.plt.close(fig)


# -- in a browser ---------------------------------------------------------------------------------------------
