"""Where the CLI writes: an output directory is replaced only by one of its kind (never emptied of what a user
keeps there), a path that cannot be written is refused before any work with one line and exit 2, and an
output file is written through a symlink or into a device, not put in its place."""

from __future__ import annotations

import os

import numpy as np
import pytest

from kfts.core import artifact
from kfts.core.errors import InputError

from helpers import run_cli, tiny_inception_time, write_csv


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A saved tiny InceptionTime, its labeled data and its series alone: (model_dir, data.csv, series.csv)."""
    folder = tmp_path_factory.mktemp("outputs")
    fitted, values = tiny_inception_time(save_to=folder / "model")
    labels = [fitted.classes[i % len(fitted.classes)] for i in range(len(values))]
    data = write_csv(folder / "data.csv", ([label, *row] for label, row in zip(labels, values)))
    series = write_csv(folder / "series.csv", values)
    return folder / "model", data, series


def one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def test_evaluate_refuses_a_directory_holding_other_files_and_replaces_an_earlier_evaluation(model, tmp_path):
    model_dir, data, _ = model
    kept = tmp_path / "mine"
    kept.mkdir()
    (kept / "notes.txt").write_text("precious\n")
    (kept / "data.csv").write_bytes(data.read_bytes())
    refused = run_cli("evaluate", "--model-dir", model_dir, "--input", kept / "data.csv", "--output-dir", kept)
    one_line_error(refused, str(kept), "data.csv, notes.txt", "new or empty directory")
    assert sorted(p.name for p in kept.iterdir()) == ["data.csv", "notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no temporary left beside it

    report = tmp_path / "report"
    for _ in range(2):  # the second run replaces the first's output
        run_cli("evaluate", "--model-dir", model_dir, "--input", data, "--output-dir", report, check=True)
    assert sorted(p.name for p in report.iterdir()) == ["metrics.json", "report.html", "summary.md"]


def test_train_refuses_unusable_output_directories_before_training(model, tmp_path):
    _, data, _ = model
    a_file = tmp_path / "afile"
    a_file.write_text("keep\n")
    user_dir = tmp_path / "work"
    user_dir.mkdir()
    (user_dir / "train.csv").write_bytes(data.read_bytes())
    tiny = ["--filters", "4", "--depth", "1", "--models", "1", "--epochs", "1"]
    for flags, fragments in [
        (["--model-dir", a_file], [str(a_file), "is a file, not a directory"]),
        (["--model-dir", user_dir], [str(user_dir), "holds train.csv"]),
        (["--model-dir", tmp_path / "m", "--checkpoint-dir", a_file], [str(a_file), "is a file, not a directory"]),
        (["--model-dir", a_file / "model"], ["cannot be created", f"{a_file} is a file"]),
        # writing the model replaces its directory: checkpoints inside it would be lost, or refuse it at the end
        (["--model-dir", tmp_path / "m", "--checkpoint-dir", tmp_path / "m" / "ck"], ["lies inside --model-dir"]),
        (["--model-dir", tmp_path / "m", "--checkpoint-dir", tmp_path / "m"], ["--checkpoint-dir", "is --model-dir"]),
        (["--model-dir", tmp_path / "m", "--seed", 2**64], ["--seed must be in [0, 4294967296)"]),
        (["--model-dir", tmp_path / "m", "--lr", "inf"], ["--lr must be a finite number, not inf"]),
    ]:
        result = run_cli("train", "inception-time", "--train", user_dir / "train.csv", *flags, *tiny)
        one_line_error(result, *fragments)
        assert "epoch=" not in result.stdout  # refused before training, not after
    assert a_file.read_text() == "keep\n" and sorted(p.name for p in user_dir.iterdir()) == ["train.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "work"]


def test_predict_refuses_output_paths_it_cannot_write(model, tmp_path):
    model_dir, _, series = model
    a_file = tmp_path / "afile"
    a_file.write_text("keep\n")
    for output, fragments in [
        (tmp_path, [str(tmp_path), "is a directory"]),
        (a_file / "out.csv", ["cannot be created", f"{a_file} is a file"]),
        ("/proc/kfts-out.csv", ["/proc/kfts-out.csv", "cannot be written"]),
        ("", ["--output is empty", "give a value"]),
        # what the command reads: predictions over the model's weights or the input would destroy them
        (model_dir / "weights.safetensors", ["--output", "lies inside --model-dir"]),
        (series, ["--output", "is --input"]),
    ]:
        one_line_error(run_cli("predict", "--model-dir", model_dir, "--input", series, "--output", output), *fragments)
    assert a_file.read_text() == "keep\n"
    assert artifact.load_weights(model_dir) and series.read_text().count("\n") > 1
    one_line_error(
        run_cli("evaluate", "--model-dir", model_dir, "--input", series, "--output-dir", model_dir / "eval"),
        "--output-dir",
        "lies inside --model-dir",
    )
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(artifact.FILES)


def test_copy_refuses_a_folder_into_itself_and_empty_paths(model, tmp_path):
    model_dir, _, _ = model
    one_line_error(run_cli("copy", model_dir, model_dir / "copy"), "the destination", "lies inside the source")
    for source, destination in [("", tmp_path / "copy"), (model_dir, "")]:
        one_line_error(run_cli("copy", source, destination, cwd=tmp_path), "is empty (''): give a value")
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(artifact.FILES)
    assert list(tmp_path.iterdir()) == []


def test_a_pipe_or_a_device_as_input_is_refused_not_waited_on(model, tmp_path):
    """kfts reads a CSV file more than once (its first row, then its blocks): a pipe would be read empty the
    second time, and opening one without a writer waits for ever; /dev/zero never ends."""
    model_dir, _, series = model
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    for args in [
        ("validate", "inception-time", fifo, "--inference"),
        ("predict", "--model-dir", model_dir, "--input", "/dev/zero", "--output", tmp_path / "p.csv"),
    ]:
        result = run_cli(*args, timeout=120)
        one_line_error(result, "is not a regular file (a pipe or a device)", "save it to a file first")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo.csv"]


def test_a_training_that_diverges_exits_2_and_writes_no_model(model, tmp_path):
    _, data, _ = model
    for algorithm, train, flags in [
        ("inception-time", data, ["--filters", 4, "--depth", 1, "--models", 1]),
        ("lstm-ad", series_of_steps(tmp_path), ["--hidden-size", 8, "--num-layers", 1, "--sequence-length", 10]),
    ]:
        result = run_cli(
            "train",
            algorithm,
            "--train",
            train,
            "--model-dir",
            tmp_path / "m",
            *flags,
            "--epochs",
            3,
            "--lr",
            "1e30",
            "--seed",
            0,
        )
        one_line_error(result, "training diverged: train_loss was", "try a lower --lr")
        assert not (tmp_path / "m").exists()


def series_of_steps(folder) -> os.PathLike:
    steps = np.sin(np.arange(600, dtype=np.float32) / 7)
    return write_csv(folder / "steps.csv", np.stack([steps, np.cos(steps)], axis=1))


def test_predict_writes_through_a_symlink_and_into_a_device(model, tmp_path):
    model_dir, _, series = model
    target = tmp_path / "target.csv"
    target.write_text("old\n")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    run_cli("predict", "--model-dir", model_dir, "--input", series, "--output", link, check=True)
    assert link.is_symlink() and len(target.read_text().splitlines()) == len(series.read_text().splitlines())

    # a link of our own to the process's stdout, so that a regression replaces it, not /dev/stdout
    stdout = tmp_path / "stdout"
    stdout.symlink_to("/dev/stdout")
    result = run_cli("predict", "--model-dir", model_dir, "--input", series, "--output", stdout, check=True)
    assert stdout.is_symlink()
    assert result.stdout.splitlines()[:-1] == target.read_text().splitlines()  # then the "N rows" line


def test_a_typo_in_the_first_column_of_series_is_located_not_taken_for_a_label(model, tmp_path):
    model_dir, _, series = model
    rows = series.read_text().splitlines()
    cells = rows[2].split(",")
    rows[2] = ",".join(["1.2.3", *cells[1:]])
    typo = tmp_path / "typo.csv"
    typo.write_text("\n".join(rows) + "\n")
    for command in (
        ["validate", "inception-time", "--inference", typo],
        ["predict", "--model-dir", model_dir, "--input", typo, "--output", tmp_path / "out.csv"],
    ):
        one_line_error(run_cli(*command), f"{typo}: row 3, column 1: '1.2.3' is not a number")
    assert not (tmp_path / "out.csv").exists()


def test_evaluating_data_of_one_class_prints_no_warning(model, tmp_path):
    model_dir, data, _ = model
    first = data.read_text().splitlines()[0].split(",")[0]
    one_class = tmp_path / "one_class.csv"
    one_class.write_text("".join(row + "\n" for row in data.read_text().splitlines() if row.split(",")[0] == first))
    result = run_cli(
        "evaluate", "--model-dir", model_dir, "--input", one_class, "--output-dir", tmp_path / "ev", check=True
    )
    assert result.stderr == ""


def test_check_output_directory_returns_the_real_path_through_a_symlink(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    assert artifact.check_output_directory(tmp_path / "link", artifact.FILES) == tmp_path / "real"
    with pytest.raises(InputError, match="empty path"):
        artifact.check_output_directory("")
