"""Fail fast with kfp.local: inputs that do not fit together stop a run before the train task starts, and
`kfts pipeline run` says so in one line per task, with the failing task's own error."""

from __future__ import annotations

import re

import pytest

from helpers import make_classification, run_cli, write_csv


@pytest.fixture
def train_csv(tmp_path):
    labels, values = make_classification(n_per_class=4, length=150)
    return write_csv(tmp_path / "train.csv", ([lab, *row] for lab, row in zip(labels, values))), values


def _run(tmp_path, train, test):
    return run_cli(
        "pipeline",
        "run",
        "inception-time",
        "--train",
        train,
        "--test",
        test,
        "--filters",
        "4",
        "--depth",
        "3",
        "--models",
        "1",
        "--epochs",
        "1",
        "--output-dir",
        tmp_path / "out",
    )


def _never_trained(tmp_path, result):
    assert result.returncode == 2
    assert not list((tmp_path / "out").rglob("train")), "the train task ran"
    assert not re.search(r"^train\b", result.stdout, re.M)
    [log] = (tmp_path / "out").glob("inception-time-*/pipeline.log")
    assert "Executing task 'train'" not in log.read_text() and "Executing task" in log.read_text()


def test_a_test_file_one_step_longer_than_training_stops_the_run_before_train(tmp_path, train_csv):
    train, values = train_csv
    test = write_csv(tmp_path / "test.csv", ([*row, 0.0] for row in values))  # 151 steps
    result = _run(tmp_path, train, test)
    _never_trained(tmp_path, result)
    assert re.search(r"^check inputs together +FAILURE +\d+\.\d s$", result.stdout, re.M)
    assert (
        f"  error: {test}: row 1: rows have 151 time steps, {train} has 150; one more than expected: is it in "
        "the labeled layout"
    ) in result.stdout
    assert re.search(r"^validate test +SUCCESS", result.stdout, re.M)
    assert "error: pipeline inception-time failed at 'check inputs together'; its full log: " in result.stderr
    assert len(result.stdout.splitlines()) < 12  # one line per task, not kfp.local's log


def test_a_test_file_with_a_header_row_stops_the_run_before_train(tmp_path, train_csv):
    train, values = train_csv
    test = write_csv(tmp_path / "test.csv", [[f"t{i}" for i in range(150)], *values])
    result = _run(tmp_path, train, test)
    _never_trained(tmp_path, result)
    assert re.search(r"^validate test +FAILURE", result.stdout, re.M)
    assert (
        f"  error: {test}: row 1, column 1: 't0' is not a number (kfts CSV files have no header row)" in result.stdout
    )
