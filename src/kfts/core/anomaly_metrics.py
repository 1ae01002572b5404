"""Detection quality of an anomaly score against 0/1 labels: point, range-based and volume-under-surface metrics.

Every function takes `score` with higher = more anomalous (for LSTM-AD: the negated log-likelihood).

- ROC-AUC and PR-AUC (average precision): scikit-learn, over single time steps.
- Best F1: the best point-wise F1 over all thresholds, with the threshold that reaches it.
- Range-based precision and recall (Tatbul et al., "Precision and Recall for Time Series", NeurIPS 2018):
  flat positional bias, cardinality factor 1/(number of overlapping ranges), existence weight alpha for recall
  and none for precision -- the settings of TSB-AD (Liu & Paparrizos, NeurIPS 2024).
- VUS-ROC and VUS-PR (Paparrizos et al., "Volume Under the Surface: a New Accuracy Evaluation Measure for
  Time-Series Anomaly Detection", PVLDB 15(11), 2022): range-based ROC and PR curves over the score
  thresholds, for label buffers of every width from 0 to `window`, averaged. The formulas are those of the
  authors' maintained implementation (TSB-AD, `RangeAUC_volume_opt`), so figures compare with published
  TSB-AD results; here they are computed in closed form with array operations instead of a loop over the
  series for every threshold and width. The maintained packages (`vus`, `TSB-AD`) pull TensorFlow or a
  second torch into the environment, which is why this module exists.

  For one buffer width w and one threshold (prediction `pred` = score >= threshold):
    soft labels: 1 inside each labeled range; within w//2 steps around it sqrt(1 - distance / w);
                 clipped at 1 where buffers meet
    TP        = sum of pred over labeled steps + sum of soft label * pred over buffer steps
    P         = labeled steps;  P_w = (P + P + sum of soft label * pred over buffer steps) / 2
    existence = share of the buffered ranges (overlapping ones merged) holding at least one predicted step
    TPR = min(TP / P_w, 1) * existence;  FPR = (#pred - TP) / (n - P_w);  precision = TP / #pred
  Thresholds: `thresholds` scores taken at evenly spaced ranks of the sorted scores. ROC-AUC_w is the
  trapezoid area from (0, 0) through the thresholds to (1, 1); PR-AUC_w is sum(delta TPR * precision).
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

VUS_THRESHOLDS = 250


def label_ranges(binary: np.ndarray) -> np.ndarray:
    """[k, 2] inclusive (start, end) of the runs of non-zero values."""
    padded = np.concatenate([[0], (np.asarray(binary) != 0).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return np.stack([edges[::2], edges[1::2] - 1], axis=1)


def best_f1(labels: np.ndarray, score: np.ndarray) -> dict:
    """The highest point-wise F1 over all thresholds (anomalous: score >= threshold)."""
    precision, recall, thresholds = skm.precision_recall_curve(labels, score)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    k = int(np.argmax(f1))
    return {
        "f1": float(f1[k]),
        "threshold": float(thresholds[k]),
        "precision": float(precision[k]),
        "recall": float(recall[k]),
    }


def range_recall(labels: np.ndarray, predicted: np.ndarray, alpha: float = 0.2) -> float:
    """Tatbul et al.'s range recall: per labeled range alpha * existence + (1 - alpha) * overlap share
    / (number of predicted ranges it touches), averaged over the labeled ranges (0 if there are none)."""
    real, pred = label_ranges(labels), label_ranges(predicted)
    if len(real) == 0:
        return 0.0
    hits = np.concatenate([[0], np.cumsum(np.asarray(predicted) != 0)])
    overlap = hits[real[:, 1] + 1] - hits[real[:, 0]]
    # predicted ranges are sorted and disjoint: those touching [s, e] end at or after s and start at or before e
    touching = (
        (np.searchsorted(pred[:, 0], real[:, 1], side="right") - np.searchsorted(pred[:, 1], real[:, 0], side="left"))
        if len(pred)
        else np.zeros(len(real))
    )
    cardinality = np.where(touching > 0, 1.0 / np.maximum(touching, 1), 0.0)
    size = real[:, 1] - real[:, 0] + 1
    per_range = alpha * (overlap > 0) + (1 - alpha) * cardinality * overlap / size
    return float(per_range.mean())


def range_precision(labels: np.ndarray, predicted: np.ndarray) -> float:
    """Tatbul et al.'s range precision: range recall with the roles swapped and no existence reward."""
    return range_recall(predicted, labels, alpha=0.0)


def vus(labels: np.ndarray, score: np.ndarray, window: int, thresholds: int = VUS_THRESHOLDS) -> tuple[float, float]:
    """(VUS-ROC, VUS-PR) for label buffers of width 0..window (see the module docstring)."""
    labels = np.asarray(labels) != 0
    score = np.asarray(score, dtype=np.float64)
    n, positives = len(score), int(labels.sum())
    if positives == 0 or positives == n:
        raise ValueError("VUS needs both anomalous and normal steps")
    ranges = label_ranges(labels)
    # thresholds at evenly spaced ranks of the scores, from the highest down
    ascending = np.sort(score)
    cut = ascending[::-1][np.linspace(0, n - 1, thresholds).astype(int)]
    n_pred = n - np.searchsorted(ascending, cut, side="left")  # steps >= threshold
    tp_labeled = positives - np.searchsorted(np.sort(score[labels]), cut, side="left")  # labeled ones

    # Buffer steps: unlabeled steps within window//2 of a labeled range, as (step, distance) pairs, one per
    # range that reaches the step (a step between two close ranges gets a share from each).
    distance = np.arange(1, window // 2 + 1)
    step_parts, distance_parts = [], []
    for s, e in ranges:
        for t in (e + distance, s - distance):
            keep = (t >= 0) & (t < n)
            keep[keep] &= ~labels[t[keep]]
            step_parts.append(t[keep])
            distance_parts.append(distance[keep])
    steps, distances = np.concatenate(step_parts), np.concatenate(distance_parts)
    buffer_steps, pair_step = np.unique(steps, return_inverse=True)
    # buffer steps from the highest score down: the predicted ones at a threshold are a prefix
    order = np.argsort(-score[buffer_steps], kind="stable")
    predicted_prefix = np.searchsorted(-score[buffer_steps][order], -cut, side="right")
    padded = np.append(score, -np.inf)  # reduceat needs an index past each segment's end

    roc, pr = np.empty(window + 1), np.empty(window + 1)
    for w in range(window + 1):
        soft = np.zeros(len(buffer_steps))
        if w:
            reach = distances <= w // 2
            soft = np.bincount(
                pair_step[reach], weights=np.sqrt(1 - distances[reach] / w), minlength=len(buffer_steps)
            ).clip(max=1.0)
        buffered = np.concatenate([[0.0], np.cumsum(soft[order])])[predicted_prefix]  # sum soft * pred
        tp = tp_labeled + buffered
        p_w = positives + buffered / 2
        # existence: a buffered range (overlapping ones merged) counts when its highest score passes
        segments = widened_ranges(ranges, w // 2, n)
        segment_max = np.maximum.reduceat(padded, (segments + [0, 1]).ravel())[::2]
        existence = (segment_max[:, None] >= cut[None, :]).mean(axis=0)
        tpr = np.minimum(tp / p_w, 1.0) * existence
        fpr = (n_pred - tp) / (n - p_w)
        precision = tp / n_pred
        tpr_curve = np.concatenate([[0.0], tpr, [1.0]])
        fpr_curve = np.concatenate([[0.0], fpr, [1.0]])
        roc[w] = np.sum(np.diff(fpr_curve) * (tpr_curve[1:] + tpr_curve[:-1]) / 2)
        pr[w] = np.sum(np.diff(tpr_curve[:-1]) * precision)
    return float(roc.mean()), float(pr.mean())


def widened_ranges(ranges: np.ndarray, half: int, n: int) -> np.ndarray:
    """[k, 2] labeled ranges widened by `half` steps on both sides (within the series), overlapping ones merged."""
    starts, ends = np.maximum(ranges[:, 0] - half, 0), np.minimum(ranges[:, 1] + half, n - 1)
    first = np.concatenate([[True], starts[1:] > ends[:-1]])  # starts a new merged range
    last = np.concatenate([first[1:], [True]])
    return np.stack([starts[first], ends[last]], axis=1)


def estimate_period(values: np.ndarray, max_lag: int = 400, fallback: int = 125) -> int:
    """The series' dominant period from its autocorrelation (the strongest local maximum at lags 3..max_lag,
    averaged over the series), as TSB-AD picks the VUS window; `fallback` when there is none, or it is under
    6 steps (a ripple of noise on a slowly decaying autocorrelation) or over 300."""
    x = np.asarray(values, dtype=np.float64).reshape(len(values), -1)[:20000]
    x = x - x.mean(axis=0)
    power = (x**2).sum(axis=0)
    x = x[:, power > 0]
    if x.shape[1] == 0 or len(x) < 8:
        return fallback
    size = 1 << (2 * len(x) - 1).bit_length()
    spectrum = np.fft.rfft(x, n=size, axis=0)
    acf = np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=0)[: max_lag + 1]
    acf = (acf / acf[0]).mean(axis=1)[3:]
    peaks = np.flatnonzero((acf[1:-1] > acf[:-2]) & (acf[1:-1] > acf[2:])) + 1
    if len(peaks) == 0:
        return fallback
    period = int(peaks[np.argmax(acf[peaks])]) + 3
    return period if 6 <= period <= 300 else fallback


def detection_metrics(labels: np.ndarray, score: np.ndarray, *, threshold: float, window: int) -> dict:
    """All labeled metrics; `threshold` (score >= threshold is anomalous) is the model's own decision rule,
    at which point-wise and range-based precision and recall are reported."""
    labels = (np.asarray(labels) != 0).astype(np.int8)
    predicted = (score >= threshold).astype(np.int8)
    vus_roc, vus_pr = vus(labels, score, window)
    point_precision, point_recall, point_f1, _ = skm.precision_recall_fscore_support(
        labels, predicted, average="binary", zero_division=0
    )
    best = best_f1(labels, score)
    return {
        "roc_auc": float(skm.roc_auc_score(labels, score)),
        "pr_auc": float(skm.average_precision_score(labels, score)),
        "vus_roc": vus_roc,
        "vus_pr": vus_pr,
        "vus_window": int(window),
        "best_f1": best["f1"],
        "best_f1_threshold": best["threshold"],
        "best_f1_precision": best["precision"],
        "best_f1_recall": best["recall"],
        "precision": float(point_precision),
        "recall": float(point_recall),
        "f1": float(point_f1),
        "range_precision": range_precision(labels, predicted),
        "range_recall": range_recall(labels, predicted),
        "anomalous_steps": int(labels.sum()),
        "anomalous_ranges": int(len(label_ranges(labels))),
        "flagged_steps": int(predicted.sum()),
    }
