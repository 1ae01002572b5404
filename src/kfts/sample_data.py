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
