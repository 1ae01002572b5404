"""Shared test helpers: the CLI as a user runs it, small generated data, and the shared data folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kfts import sample_data

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
    sample_data.write_csv(path, rows)
    return path


make_classification = sample_data.classification


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
