"""Shared test helpers: the CLI as a user runs it, small generated data, and the shared data folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def run_cli(*args, check: bool = False, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """`python -m kfts ARGS` in a subprocess, as a user would run it; text output captured."""
    result = subprocess.run([sys.executable, "-m", "kfts", *map(str, args)], capture_output=True, text=True,
                            timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"}, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"kfts {' '.join(map(str, args))} exited {result.returncode}:\n{result.stderr}")
    return result


def write_csv(path: Path, rows) -> Path:
    path.write_text("".join(",".join(str(v) for v in row) + "\n" for row in rows))
    return path


def make_classification(n_per_class: int = 20, length: int = 32, classes=("a", "b", "c"), seed: int = 0):
    """Separable toy series: each class is a sine of its own frequency, with noise. -> (labels, values)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, length)
    labels, values = [], []
    for k, label in enumerate(classes):
        for _ in range(n_per_class):
            phase = rng.uniform(0, 2 * np.pi)
            values.append(np.sin(2 * np.pi * (k + 1) * 2 * t + phase) + 0.1 * rng.normal(size=length))
            labels.append(label)
    order = rng.permutation(len(labels))
    return np.array(labels)[order], np.array(values, dtype=np.float32)[order]


@pytest.fixture
def classification_csv(tmp_path):
    """A small InceptionTime training file and its unlabeled twin: (train.csv, test_data.csv, labels)."""
    labels, values = make_classification()
    train = write_csv(tmp_path / "train.csv", ([lab, *row] for lab, row in zip(labels, values)))
    test = write_csv(tmp_path / "test_data.csv", values)
    return train, test, labels


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is not there (CI puts ../shared beside the project)")
    return SHARED_DATA
