"""kfts.jobs.validate: every input checked alone and against the others, and `kfts train/predict/evaluate`
refusing a mismatch before any work (the model directories here are a kfts-model.json alone: a refusal must
come before the weights are ever read)."""

from __future__ import annotations

import json

import pytest

from kfts.core.errors import InputError
from kfts.jobs import validate as validation

from helpers import run_cli, write_csv


def labeled(path, rows, length, classes=("a", "b")):
    return write_csv(path, ([classes[i % len(classes)], *[float(i + j) for j in range(length)]] for i in range(rows)))


def series(path, rows, length):
    return write_csv(path, ([float(i + j) for j in range(length)] for i in range(rows)))


# the fields of a manifest that checking files against a model does not compare, but that a model holds
# (kfts.core.manifest: a manifest is checked whole before anything reads it)
COMPLETE = {
    "inception-time": {"hyperparameters": {}, "scaler": {"mean": 0.0, "std": 1.0}},
    "lstm-ad": {
        "hyperparameters": {},
        "scaler": {"mean": [0.0] * 4, "std": [1.0] * 4},
        "gaussian": {"mean": [0.0] * 4, "covariance": [[float(i == j) for j in range(4)] for i in range(4)]},
        "threshold": -10.0,
    },
}


def fake_model(path, **manifest):
    """A model's kfts-model.json without its weights: `manifest` completed with COMPLETE's fields."""
    path.mkdir()
    manifest = {"format_version": 1, **COMPLETE[manifest["algorithm"]], **manifest}
    (path / "kfts-model.json").write_text(json.dumps(manifest))
    return path


def refused(algorithm, files, **kwargs) -> str:
    with pytest.raises(InputError) as e:
        validation.check_files(algorithm, files, **kwargs)
    return str(e.value)


def test_series_lengths_must_agree_and_the_layout_hint_says_which_was_given(tmp_path):
    train = labeled(tmp_path / "train.csv", 6, 150)
    message = refused(
        "inception-time", {"train": (train, "training"), "test": (series(tmp_path / "test.csv", 4, 151), "inference")}
    )
    assert message.startswith(f"{tmp_path / 'test.csv'}: row 1: rows have 151 time steps, {train} has 150")
    # a labeled file given where series alone are expected: one step too many
    message = refused(
        "inception-time",
        {"train": (train, "training"), "test": (labeled(tmp_path / "t.csv", 4, 150, ("1", "2")), "inference")},
    )
    assert "one more than expected: is it in the labeled layout" in message
    # and series alone given as labeled data: one step short
    message = refused(
        "inception-time", {"train": (train, "training"), "valid": (series(tmp_path / "v.csv", 4, 150), "training")}
    )
    assert "one fewer than expected: is it in the inference layout" in message


def test_a_labeled_file_with_text_labels_given_as_inference_data_is_named_so(tmp_path):
    message = refused("inception-time", {"test": (labeled(tmp_path / "t.csv", 4, 10), "inference")})
    assert "was given in the inference layout (series only) but has a label in its first column" in message


def test_a_header_row_is_refused_with_its_hint(tmp_path):
    (tmp_path / "test.csv").write_text("t1,t2,t3\n1,2,3\n")
    message = refused("inception-time", {"test": (tmp_path / "test.csv", "inference")})
    assert message == (
        f"{tmp_path / 'test.csv'}: row 1, column 1: 't1' is not a number (kfts CSV files have no header row)"
    )


def test_classes_outside_the_training_classes_are_named_plainly(tmp_path):
    train = labeled(tmp_path / "train.csv", 6, 8, ("up", "down"))
    valid = labeled(tmp_path / "valid.csv", 6, 8, ("up", "sideways"))
    message = refused("inception-time", {"train": (train, "training"), "valid": (valid, "training")})
    assert message == f"{valid}: class 'sideways' is not among the classes of {train} (down, up)"
    labels = write_csv(tmp_path / "labels.csv", [["up"], ["left"], ["right"], ["down"]])
    message = refused(
        "inception-time",
        {
            "train": (train, "training"),
            "test": (series(tmp_path / "test.csv", 4, 8), "inference"),
            "test_labels": (labels, "labels"),
        },
    )
    assert "class 'left' (and 1 more) is not among the classes" in message and "np.str_" not in message


def test_a_label_file_has_one_label_per_row_of_the_file_it_labels(tmp_path):
    test = series(tmp_path / "test.csv", 5, 8)
    labels = write_csv(tmp_path / "labels.csv", [["a"]] * 4)
    message = refused("inception-time", {"test": (test, "inference"), "test_labels": (labels, "labels")})
    assert message == f"{labels}: has 4 labels for the 5 rows of {test}"
    # lstm-ad: 0/1 labels, one per time step
    ad_test = series(tmp_path / "ad.csv", 30, 2)
    ad_labels = write_csv(tmp_path / "ad_labels.csv", [[0]] * 29)
    message = refused("lstm-ad", {"test": (ad_test, "inference"), "test_labels": (ad_labels, "labels")})
    assert message == f"{ad_labels}: has 29 labels for the 30 rows of {ad_test}"


def test_lstm_ad_column_counts_must_agree(tmp_path):
    train, test = series(tmp_path / "train.csv", 40, 3), series(tmp_path / "test.csv", 40, 2)
    message = refused("lstm-ad", {"train": (train, "training"), "test": (test, "inference")})
    assert message == f"{test}: row 1: has 2 columns (series), {train} has 3"


def test_inputs_that_agree_pass_and_are_summed_up(tmp_path):
    summaries = validation.check_files(
        "inception-time",
        {
            "train": (labeled(tmp_path / "train.csv", 6, 8), "training"),
            "test": (series(tmp_path / "test.csv", 3, 8), "inference"),
            "test_labels": (write_csv(tmp_path / "l.csv", [["a"], ["b"], ["a"]]), "labels"),
            "valid": (None, "training"),
        },
    )
    assert summaries["train"] == {
        "source": str(tmp_path / "train.csv"),
        "layout": "training",
        "algorithm": "inception-time",
        "rows": 6,
        "length": 8,
        "classes": ["a", "b"],
        "n_classes": 2,
    }
    assert set(summaries) == {"train", "test", "test_labels"} and summaries["test_labels"]["rows"] == 3


# -- the command line, before any work ------------------------------------------------------------------------


def test_kfts_train_refuses_a_validation_file_of_another_length_before_training(tmp_path):
    train, valid = labeled(tmp_path / "train.csv", 6, 10), labeled(tmp_path / "valid.csv", 6, 11)
    result = run_cli("train", "inception-time", "--train", train, "--valid", valid, "--model-dir", tmp_path / "m")
    assert result.returncode == 2
    assert result.stderr == f"error: {valid}: row 1: rows have 11 time steps, {train} has 10\n"
    assert "epoch" not in result.stdout and not (tmp_path / "m").exists()


def test_kfts_predict_and_evaluate_check_the_input_against_the_model(tmp_path):
    model = fake_model(
        tmp_path / "model", algorithm="inception-time", input_shape={"length": 10, "channels": 1}, classes=["a", "b"]
    )
    test = series(tmp_path / "test.csv", 3, 12)
    result = run_cli("predict", "--model-dir", model, "--input", test, "--output", tmp_path / "p.csv")
    assert result.returncode == 2 and not (tmp_path / "p.csv").exists()
    assert result.stderr == f"error: {test}: row 1: rows have 12 time steps, the model was trained on 10\n"
    valid = labeled(tmp_path / "valid.csv", 4, 10, ("a", "c"))
    result = run_cli("evaluate", "--model-dir", model, "--input", valid, "--output-dir", tmp_path / "e")
    assert result.returncode == 2 and not (tmp_path / "e").exists()
    assert result.stderr == f"error: {valid}: class 'c' is not among the classes of the model (a, b)\n"


@pytest.mark.parametrize(
    "algorithm, flag, option",
    [("inception-time", "--flag", "--probabilities"), ("lstm-ad", "--probabilities", "--flag")],
)
def test_kfts_predict_refuses_the_other_algorithms_option(tmp_path, algorithm, flag, option):
    fields = (
        {"input_shape": {"length": 4}, "classes": ["a", "b"]} if flag == "--flag" else {"input_shape": {"series": 4}}
    )
    model = fake_model(tmp_path / "model", algorithm=algorithm, **fields)
    result = run_cli(
        "predict",
        "--model-dir",
        model,
        "--input",
        series(tmp_path / "t.csv", 3, 4),
        "--output",
        tmp_path / "p.csv",
        flag,
    )
    assert result.returncode == 2
    assert result.stderr == (f"error: {flag} does not apply to {model}, an {algorithm} model (its options: {option})\n")


def test_kfts_validate_says_which_layout_a_file_looks_like(tmp_path):
    path = labeled(tmp_path / "labeled.csv", 4, 6)
    result = run_cli("validate", "inception-time", path, "--inference")
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"error: {path}: was given in the inference layout (series only) but has a label in its first column"
    )
    assert (
        run_cli("validate", "inception-time", path, check=True).stdout == f"ok: {path}: 4 series of length 6, "
        "2 classes\n"
    )
