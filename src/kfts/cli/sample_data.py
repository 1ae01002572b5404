"""Built-in sample data for `make demo` and the tests: small, generated, in the kfts CSV layouts."""

from __future__ import annotations

import numpy as np


def classification(n_per_class: int = 20, length: int = 32, classes=("a", "b", "c"), seed: int = 0):
    """Separable series: class k is a noisy sine of frequency 2(k+1) with a random phase. -> (labels, values)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, length)
    labels = np.repeat(np.array(classes), n_per_class)
    frequency = 2 * (np.repeat(np.arange(len(classes)), n_per_class) + 1)
    phase = rng.uniform(0, 2 * np.pi, size=len(labels))
    values = np.sin(2 * np.pi * frequency[:, None] * t + phase[:, None]) + 0.1 * rng.normal(size=(len(labels), length))
    order = rng.permutation(len(labels))
    return labels[order], values[order].astype(np.float32)


def write_csv(path, rows) -> None:
    with open(path, "w") as f:
        f.writelines(",".join(str(v) for v in row) + "\n" for row in rows)


def waves(n: int, d: int = 2, period: int = 20, seed: int = 0) -> np.ndarray:
    """d noisy, phase-shifted sines, [n, d]: normal behaviour an LSTM learns in a few epochs."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    return (np.sin(2 * np.pi * t / period + np.arange(d)) + 0.05 * rng.normal(size=(n, d))).astype(np.float32)


def with_anomalies(values: np.ndarray, starts, width: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """A copy of `values` where the system misbehaves at each start for `width` steps (every series flattens
    out at an offset), and the 0/1 label of every row."""
    values, labels = values.copy(), np.zeros(len(values), dtype=np.int8)
    for start in starts:
        values[start : start + width] = values[start] + 1.5
        labels[start : start + width] = 1
    return values, labels
