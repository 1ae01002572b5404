"""Streaming batch prediction: the same bytes as one in-memory pass, with memory that does not grow with the file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from kfts.core import csvio
from kfts.core.errors import InputError
from kfts.jobs import predict

from helpers import predictions_csv, tiny_inception_time, tiny_lstm_ad


@pytest.fixture(scope="module")
def inception_time():
    return tiny_inception_time(models=2)[0]


def two_waves(n: int) -> np.ndarray:
    t = np.arange(n)
    return np.stack([np.sin(t / 5), np.cos(t / 3)], axis=1).astype(np.float32)


@pytest.fixture(scope="module")
def lstm_ad():
    return tiny_lstm_ad(two_waves(400), sequence_length=5, hidden_size=4, epochs=1)


@pytest.fixture(scope="module", params=[1, 3])
def lstm_ad_paper(request):
    """Paper scoring with prediction-length 1 (no window needed past a chunk) and 3."""
    return tiny_lstm_ad(
        two_waves(400), sequence_length=5, hidden_size=4, scoring="paper", prediction_length=request.param
    )


def series_rows(path, n, length, seed=0):
    rng = np.random.default_rng(seed)
    np.savetxt(path, rng.normal(size=(n, length)).astype(np.float32), delimiter=",", fmt="%.5g")
    return path


@pytest.mark.parametrize("probabilities", [False, True])
def test_inception_time_chunks_give_the_in_memory_bytes(tmp_path, monkeypatch, inception_time, probabilities):
    path = series_rows(tmp_path / "input.csv", 1500, 24)
    expected = predictions_csv(inception_time, csvio.read_series_rows(path), probabilities=probabilities)
    monkeypatch.setattr(csvio, "BLOCK_SIZE", 7 << 10)  # blocks that do not line up with chunks
    output = tmp_path / "out.csv"
    rows = predict.write_predictions(inception_time, path, output, chunk_bytes=1, probabilities=probabilities)
    assert rows == 1500
    assert output.read_text() == expected
    assert expected.count("\n") == 1500 + probabilities


def assert_chunks_give_the_in_memory_bytes(model, tmp_path, monkeypatch, n_rows: int, flag: bool):
    rng = np.random.default_rng(n_rows)
    path = tmp_path / "input.csv"
    np.savetxt(path, rng.normal(size=(n_rows, 2)).astype(np.float32), delimiter=",", fmt="%.6g")
    expected = predictions_csv(model, csvio.read_series_columns(path), flag=flag)
    monkeypatch.setattr(csvio, "BLOCK_SIZE", 5 << 10)  # blocks that do not line up with chunks
    output = tmp_path / "out.csv"
    assert predict.write_predictions(model, path, output, chunk_bytes=1, flag=flag) == n_rows
    assert output.read_text() == expected


@pytest.mark.parametrize("flag", [False, True])
@pytest.mark.parametrize("n_rows", [6, 2560 * 3 + 1, 2560 * 4 + 5, 2560 * 2 + 3])
def test_lstm_ad_chunks_give_the_in_memory_bytes(tmp_path, monkeypatch, lstm_ad, flag, n_rows):
    # with sequence length 5 and chunk_bytes=1 a chunk holds one scoring batch: 512 sequences, 2560 rows
    assert_chunks_give_the_in_memory_bytes(lstm_ad, tmp_path, monkeypatch, n_rows, flag)


@pytest.mark.parametrize("n_rows", [8, 512 * 3 + 1, 512 * 3 + 6, 512 * 4 + 5, 512 * 2 + 3])
def test_lstm_ad_paper_chunks_give_the_in_memory_bytes(tmp_path, monkeypatch, lstm_ad_paper, n_rows):
    # chunk_bytes=1: a chunk holds one scoring batch of 512 windows, plus context
    assert_chunks_give_the_in_memory_bytes(lstm_ad_paper, tmp_path, monkeypatch, n_rows, flag=True)


def test_lstm_ad_paper_streamed_scores_do_not_depend_on_where_the_file_starts(tmp_path, lstm_ad_paper):
    """The same series from row 0 and from row k, streamed in small chunks: the common rows get the same
    scores once the later file has its first full set of predictions."""
    rng = np.random.default_rng(0)
    values = two_waves(2000) + 0.05 * rng.normal(size=(2000, 2)).astype(np.float32)
    values[[300, 1100, 1700], 0] += 3.0  # planted anomalies
    first = lstm_ad_paper.first_scored

    def streamed(k: int) -> np.ndarray:
        path = tmp_path / f"from-{k}.csv"
        np.savetxt(path, values[k:], delimiter=",", fmt="%.7g")
        predict.write_predictions(lstm_ad_paper, path, tmp_path / "out.csv", chunk_bytes=1)
        rows = (tmp_path / "out.csv").read_text().splitlines()
        assert len(rows) == 2000 - k and rows[:first] == [",,"] * first
        return np.array([row.split(",") for row in rows[first:]], dtype=np.float64)

    whole = streamed(0)
    assert set(np.argsort(whole[:, 0])[:3] + first) == {300, 1100, 1700}
    for k in (1, 9, 511, 700):
        shifted = streamed(k)
        np.testing.assert_allclose(shifted[:, 0], whole[k:, 0], rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(shifted[:, 1:], whole[k:, 1:], rtol=1e-6, atol=1e-6)


def test_faults_while_streaming_leave_no_output(tmp_path, inception_time, lstm_ad, monkeypatch):
    monkeypatch.setattr(csvio, "BLOCK_SIZE", 4 << 10)
    output = tmp_path / "out.csv"
    lines = series_rows(tmp_path / "rows.csv", 2000, 24).read_text().splitlines()
    lines[1500] = lines[1500].rsplit(",", 1)[0]  # a short row after many chunks
    (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="row 1501"):
        predict.write_predictions(inception_time, tmp_path / "rows.csv", output, chunk_bytes=1)
    with pytest.raises(InputError, match="trained on 24"):
        predict.write_predictions(inception_time, series_rows(tmp_path / "short.csv", 10, 23), output)
    (tmp_path / "few.csv").write_text("1,2\n" * 5)
    with pytest.raises(InputError, match="at least 6 are needed"):
        predict.write_predictions(lstm_ad, tmp_path / "few.csv", output)
    with pytest.raises(InputError, match="3 columns"):
        predict.write_predictions(lstm_ad, series_rows(tmp_path / "wide.csv", 50, 3), output)
    assert not output.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["few.csv", "rows.csv", "short.csv", "wide.csv"]


# -- memory, through the CLI ----------------------------------------------------------------------------------

RUN_AND_REPORT_PEAK = """
import sys
from kfts.cli import main
code = main(sys.argv[1:])
print("VmHWM", next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
sys.exit(code)
"""


def peak_rss_mib(*args) -> float:
    """Run `kfts ARGS` in a fresh process and return its peak resident memory, as the process itself saw it.

    Not the child's ru_maxrss: Linux carries the parent's resident size at spawn into it, so under a pytest
    process of several hundred MiB both runs would report that size and no growth would show."""
    process = subprocess.run(
        [sys.executable, "-c", RUN_AND_REPORT_PEAK, *map(str, args)], capture_output=True, text=True
    )
    assert process.returncode == 0, process.stderr
    return int(process.stdout.split()[-1]) / 1024


def big_file(path, n_rows: int, length: int) -> int:
    """Short cells (`0.123,`) so that the file is large in float32 values per byte."""
    rng = np.random.default_rng(0)
    with open(path, "w") as f:
        for start in range(0, n_rows, 2000):
            block = rng.integers(0, 1000, size=(min(2000, n_rows - start), length)) / 1000
            np.savetxt(f, block, delimiter=",", fmt="%.3f")
    return os.path.getsize(path)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A saved tiny InceptionTime for series of 500 steps, for `kfts predict` in a process of its own."""
    path = tmp_path_factory.mktemp("model")
    tiny_inception_time(n_per_class=4, length=500, save_to=path)
    return path


def test_predict_memory_does_not_grow_with_the_file(tmp_path, model_dir):
    """Peak RSS of `kfts predict` on a file and on one three times larger: what grows is far less than the
    float32 data (one in-memory pass grows by about three times it: arrow, numpy, the scaled tensor)."""
    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    # Resident memory ramps up over the first ~30k rows (allocator and pyarrow read-ahead; measured quiet:
    # 458, 477, 475 MiB at 10k, 30k, 60k rows), then stays flat: compare two files past most of that ramp.
    big_file(small, 20_000, 500)  # ~57 MB of text
    big_file(large, 60_000, 500)  # ~172 MB
    float32_growth = 40_000 * 500 * 4 / 2**20
    peaks = [
        peak_rss_mib(
            "predict", "--model-dir", model_dir, "--input", path, "--output", tmp_path / "out.csv", "--device", "cpu"
        )
        for path in (small, large)
    ]
    assert (tmp_path / "out.csv").read_text().count("\n") == 60_000
    assert peaks[1] - peaks[0] < 0.5 * float32_growth, (
        f"peak RSS {peaks[0]:.0f} MiB for {small.stat().st_size / 2**20:.0f} MiB of CSV, {peaks[1]:.0f} MiB for "
        f"{large.stat().st_size / 2**20:.0f} MiB: memory grows with the file"
    )


def test_a_terminated_predict_leaves_nothing_behind(tmp_path, model_dir):
    """Kubernetes stops a pod with SIGTERM: kfts exits 143 and removes its temporary output file."""
    big_file(tmp_path / "input.csv", 30_000, 500)
    output = tmp_path / "out" / "predictions.csv"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kfts",
            "predict",
            "--model-dir",
            str(model_dir),
            "--input",
            str(tmp_path / "input.csv"),
            "--output",
            str(output),
            "--device",
            "cpu",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not (output.parent.exists() and any(output.parent.glob(".*.partial"))):  # writing has begun
        assert process.poll() is None, f"predict ended before it was stopped: {process.stderr.read()}"
        assert time.monotonic() < deadline, "predict never started writing"
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, error = process.communicate(timeout=120)
    assert process.returncode == 143, error
    assert error.strip() == "error: terminated (SIGTERM)"
    assert list(output.parent.iterdir()) == []
