"""kfts.core.anomaly_metrics against hand-worked cases and a plain, loop-by-loop transcription of the definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kfts.core import anomaly_metrics as am


def test_label_ranges_include_runs_at_both_ends():
    assert am.label_ranges(np.array([1, 1, 0, 0, 1, 0, 1])).tolist() == [[0, 1], [4, 4], [6, 6]]
    assert am.label_ranges(np.zeros(4)).shape == (0, 2)


def test_range_recall_and_precision_by_hand():
    labels = np.array([0, 1, 1, 1, 1, 0, 0, 0, 1, 1])
    # one predicted range covering half of the first labeled range, nothing of the second
    predicted = np.array([0, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    # range 1: 0.2 * existence + 0.8 * (2/4 overlap); range 2: 0
    assert am.range_recall(labels, predicted) == pytest.approx((0.2 + 0.8 * 0.5 + 0) / 2)
    assert am.range_precision(labels, predicted) == pytest.approx(1.0)
    # the first labeled range hit by two predicted ranges: the cardinality factor halves its overlap reward
    predicted = np.array([0, 1, 0, 1, 0, 0, 1, 0, 0, 0])
    assert am.range_recall(labels, predicted) == pytest.approx((0.2 + 0.8 * 0.5 * 2 / 4) / 2)
    assert am.range_precision(labels, predicted) == pytest.approx((1 + 1 + 0) / 3)
    assert am.range_precision(labels, np.zeros(10)) == 0.0


def test_best_f1_by_hand():
    labels = np.array([0, 0, 1, 1, 0, 0])
    score = np.array([0.1, 0.5, 0.9, 0.4, 0.2, 0.3])
    best = am.best_f1(labels, score)
    # score >= 0.4 flags both anomalies and one normal step (0.5): precision 2/3, recall 1, the best F1
    assert best["threshold"] == pytest.approx(0.4)
    assert best["f1"] == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))


def vus_by_definition(labels, score, window, thresholds=am.VUS_THRESHOLDS):
    """VUS written out step by step from the definitions in the module docstring."""
    labels = np.asarray(labels).astype(bool)
    n, positives = len(score), labels.sum()
    ranges, start = [], None
    for t in range(n + 1):
        if t < n and labels[t] and start is None:
            start = t
        if (t == n or not labels[t]) and start is not None:
            ranges.append((start, t - 1))
            start = None
    ranked = sorted(score, reverse=True)
    cuts = [ranked[int(k)] for k in np.linspace(0, n - 1, thresholds)]
    rocs, prs = [], []
    for w in range(window + 1):
        soft = [0.0] * n
        for s, e in ranges:
            for t in range(e + 1, min(e + w // 2, n - 1) + 1):
                soft[t] += math.sqrt(1 - (t - e) / w)
            for t in range(max(s - w // 2, 0), s):
                soft[t] += math.sqrt(1 - (s - t) / w)
        soft = [1.0 if labels[t] else min(soft[t], 1.0) for t in range(n)]
        segments = []
        for s, e in ranges:
            a, b = max(s - w // 2, 0), min(e + w // 2, n - 1)
            if segments and a <= segments[-1][1]:
                segments[-1][1] = b
            else:
                segments.append([a, b])
        tpr, fpr, precision = [0.0], [0.0], []
        for cut in cuts:
            pred = [score[t] >= cut for t in range(n)]
            tp = sum(soft[t] for t in range(n) if pred[t])
            in_buffer = sum(soft[t] for t in range(n) if pred[t] and not labels[t])
            p_w = (positives + positives + in_buffer) / 2
            existence = sum(any(pred[a : b + 1]) for a, b in segments) / len(segments)
            tpr.append(min(tp / p_w, 1) * existence)
            fpr.append((sum(pred) - tp) / (n - p_w))
            precision.append(tp / sum(pred))
        tpr.append(1.0)
        fpr.append(1.0)
        rocs.append(sum((fpr[k + 1] - fpr[k]) * (tpr[k + 1] + tpr[k]) / 2 for k in range(len(tpr) - 1)))
        prs.append(sum((tpr[k] - tpr[k - 1]) * precision[k - 1] for k in range(1, thresholds + 1)))
    return sum(rocs) / len(rocs), sum(prs) / len(prs)


@pytest.mark.parametrize("seed", range(4))
def test_vus_matches_the_definition(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(80, 160))
    labels = np.zeros(n, dtype=int)
    for _ in range(int(rng.integers(1, 5))):  # ranges of any length, close ranges whose buffers meet
        s = int(rng.integers(0, n - 3))
        labels[s : s + int(rng.integers(1, 8))] = 1
    if seed == 0:
        labels[:2] = 1  # ranges touching both ends of the series
        labels[-1] = 1
    score = rng.normal(size=n) + 1.2 * labels
    if seed == 1:
        score = np.round(score)  # many ties
    window = int(rng.integers(0, 24))
    expected = vus_by_definition(labels, score, window, thresholds=40)
    assert am.vus(labels, score, window, thresholds=40) == pytest.approx(expected, abs=1e-12)


def test_vus_perfect_and_reversed_detector():
    labels = np.zeros(300, dtype=int)
    labels[100:110] = 1
    labels[200:205] = 1
    roc, pr = am.vus(labels, labels.astype(float), window=20)
    assert roc == pytest.approx(1.0)
    worse_roc, worse_pr = am.vus(labels, -labels.astype(float) + np.linspace(0, 0.1, 300), window=20)
    assert worse_roc < 0.5 and worse_pr < pr
    with pytest.raises(ValueError):
        am.vus(np.zeros(10), np.arange(10.0), window=2)


def test_estimate_period():
    t = np.arange(3000)
    rng = np.random.default_rng(0)
    series = np.stack([np.sin(2 * np.pi * t / 37), np.cos(2 * np.pi * t / 37)], axis=1)
    assert am.estimate_period(series + 0.1 * rng.normal(size=series.shape)) == 37
    assert am.estimate_period(np.ones((500, 1))) == 125  # nothing periodic: the fallback


def test_detection_metrics_of_a_perfect_score():
    labels = np.zeros(400, dtype=int)
    labels[150:160] = 1
    score = labels + 0.01 * np.random.default_rng(0).random(400)
    m = am.detection_metrics(labels, score, threshold=0.5, window=10)
    assert m["roc_auc"] == pytest.approx(1.0) and m["pr_auc"] == pytest.approx(1.0)
    assert m["best_f1"] == pytest.approx(1.0) and 0.5 < m["best_f1_threshold"] <= 1.01
    assert m["precision"] == m["recall"] == m["range_precision"] == m["range_recall"] == pytest.approx(1.0)
    assert (m["anomalous_steps"], m["anomalous_ranges"], m["flagged_steps"]) == (10, 1, 10)
