"""Artifacts and checkpoints are data, never code: planted pickles are refused, not run; damage is a clear error."""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from kfts import cli
from kfts.core import artifact, csvio
from kfts.core.errors import InputError
from kfts.core.training import CHECKPOINT, Checkpoints
from kfts.jobs.load import load_model
from kfts.jobs.validate import read_checked_manifest

from helpers import (
    make_classification,
    run_cli,
    tiny_inception_time,
    tiny_lstm_ad,
    write_csv,
)


class Planted:
    """Unpickling this creates `marker`: the proof that a loader ran code from a file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def evil_pickle(marker) -> bytes:
    return pickle.dumps({"weights": Planted(marker)})


def evil_torch_file(marker) -> bytes:
    out = io.BytesIO()
    torch.save({"network": Planted(marker), "epoch": 1}, out)
    return out.getvalue()


def test_the_planted_payload_really_runs_code_when_unpickled(tmp_path):
    """Without this, the refusals below would prove nothing."""
    marker = tmp_path / "ran"
    pickle.loads(evil_pickle(marker))
    assert marker.exists()
    marker.unlink()
    torch.load(io.BytesIO(evil_torch_file(marker)), weights_only=False)
    assert marker.exists()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("artifact") / "model"
    _, values = tiny_inception_time(n_per_class=5, length=16, save_to=path)
    write_csv(path.parent / "input.csv", values)
    return path


@pytest.fixture
def copy(model_dir, tmp_path):
    """A fresh copy of the artifact to damage, and the unlabeled input that goes with it."""
    target = tmp_path / "model"
    shutil.copytree(model_dir, target)
    return target, model_dir.parent / "input.csv"


def predict_in_process(model, input_csv, output) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(["predict", "--model-dir", str(model), "--input", str(input_csv), "--output", str(output)])
    return code, err.getvalue()


def assert_refused(model, input_csv, tmp_path, *words):
    output = tmp_path / "predictions.csv"
    code, err = predict_in_process(model, input_csv, output)
    assert code == 2 and err.startswith(f"error: {model}") and err.count("\n") == 1, err
    for word in words:
        assert word in err
    assert not output.exists()


@pytest.mark.parametrize("payload", [evil_pickle, evil_torch_file])
def test_pickle_in_place_of_the_weights_is_refused(copy, tmp_path, payload):
    model, input_csv = copy
    marker = tmp_path / "ran"
    (model / artifact.WEIGHTS).write_bytes(payload(marker))
    assert_refused(model, input_csv, tmp_path, artifact.WEIGHTS, "cannot be read")
    assert not marker.exists()


@pytest.mark.parametrize("name", ["weights.pt", "model.pkl", "pytorch_model.bin"])
def test_pickle_beside_the_manifest_is_never_opened(copy, tmp_path, name):
    model, input_csv = copy
    marker = tmp_path / "ran"
    (model / artifact.WEIGHTS).unlink()
    (model / name).write_bytes(evil_torch_file(marker))
    assert_refused(model, input_csv, tmp_path, f"no {artifact.WEIGHTS}")
    assert not marker.exists()


def test_pickle_as_a_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / CHECKPOINT).write_bytes(evil_torch_file(marker))
    with pytest.raises(InputError, match="cannot be read as a kfts checkpoint .*never run.*delete it to start over"):
        Checkpoints(tmp_path / "ckpt", {"run": 1}).load()
    (tmp_path / "ckpt" / CHECKPOINT).write_bytes(evil_pickle(marker))  # a plain (not zip) pickle as well
    with pytest.raises(InputError, match="cannot be read"):
        Checkpoints(tmp_path / "ckpt", {"run": 1}).load()
    assert not marker.exists()


def test_pickle_checkpoint_through_the_cli(tmp_path):
    """`kfts train --checkpoint-dir` with a planted checkpoint: exit 2, one line, no model, no code run."""
    labels, values = make_classification(n_per_class=5, length=16)
    train = write_csv(tmp_path / "train.csv", ([lab, *row] for lab, row in zip(labels, values)))
    marker, checkpoints, model = tmp_path / "ran", tmp_path / "ckpt", tmp_path / "model"
    checkpoints.mkdir()
    planted = checkpoints / "members-0-0.pt"  # where the run keeps its one member's training state
    planted.write_bytes(evil_torch_file(marker))
    result = run_cli(
        "train",
        "inception-time",
        "--train",
        train,
        "--model-dir",
        model,
        "--checkpoint-dir",
        checkpoints,
        "--epochs",
        1,
        "--models",
        1,
        "--filters",
        4,
        "--depth",
        1,
        "--ensemble",
        "sequential",
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: {planted}: cannot be read")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not marker.exists() and not model.exists()


def test_newer_format_version_is_refused(copy, tmp_path):
    model, input_csv = copy
    manifest = json.loads((model / artifact.MANIFEST).read_text())
    manifest["format_version"] = artifact.FORMAT_VERSION + 1
    (model / artifact.MANIFEST).write_text(json.dumps(manifest))
    assert_refused(
        model, input_csv, tmp_path, f"model format version {artifact.FORMAT_VERSION + 1} is newer", "upgrade kfts"
    )


@pytest.mark.parametrize(
    "damage",
    ["truncated", "header", "empty", "missing tensor", "wrong shape", "manifest json", "manifest key", "no version"],
)
def test_damaged_artifact_is_a_clear_error(copy, tmp_path, damage):
    model, input_csv = copy
    weights, manifest_path = model / artifact.WEIGHTS, model / artifact.MANIFEST
    data = weights.read_bytes()
    manifest = json.loads(manifest_path.read_text())
    if damage == "truncated":
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "header":
        weights.write_bytes(data[:8] + b"{not json" + data[17:])
    elif damage == "empty":
        weights.write_bytes(b"")
    elif damage in ("missing tensor", "wrong shape"):
        tensors = load_file(weights)
        name = next(k for k in tensors if k.endswith("weight"))
        if damage == "missing tensor":
            del tensors[name]
        else:
            tensors[name] = torch.zeros(3, 3)
        save_file(tensors, weights)
    elif damage == "manifest json":
        manifest_path.write_text("{")
    elif damage == "manifest key":
        del manifest["hyperparameters"]
        manifest_path.write_text(json.dumps(manifest))
    elif damage == "no version":
        del manifest["format_version"]
        manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(InputError):
        load_model(model, device="cpu")
    assert_refused(model, input_csv, tmp_path)


@pytest.mark.parametrize("algorithm", [None, ["inception-time"]], ids=["missing", "a list"])
def test_a_manifest_without_an_algorithm_name_is_refused(copy, algorithm):
    """By both readers of a manifest: the loader, and the one the CLI checks inputs with (a list was a TypeError)."""
    model, _ = copy
    path = model / artifact.MANIFEST
    manifest = json.loads(path.read_text())
    if algorithm is None:
        del manifest["algorithm"]
    else:
        manifest["algorithm"] = algorithm
    path.write_text(json.dumps(manifest))
    for read in (lambda: load_model(model, device="cpu"), lambda: read_checked_manifest(model)):
        with pytest.raises(InputError) as info:
            read()
        assert str(info.value) == f"{path}: has no algorithm: not a kfts model"


def test_truncated_weights_through_the_cli(copy, tmp_path):
    model, input_csv = copy
    weights = model / artifact.WEIGHTS
    weights.write_bytes(weights.read_bytes()[:-100])
    output = tmp_path / "out.csv"
    result = run_cli("predict", "--model-dir", model, "--input", input_csv, "--output", output)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {model}: {artifact.WEIGHTS} cannot be read")
    assert result.stderr.count("\n") == 1
    assert not output.exists()


def test_intact_copy_still_loads_and_predicts(copy):
    """The damage tests start from a working artifact."""
    model, input_csv = copy
    values = csvio.read_series_rows(input_csv)
    assert load_model(model, device="cpu").predict(values).shape == (len(values),)
    assert np.isin(load_model(model, device="cpu").predict(values), ["a", "b", "c"]).all()


# -- crafted artifacts: refused before anything is built (issue #27) ----------------------------------------------


def craft(model, *, hyperparameters=None, input_shape=None, tensors=None):
    """Change an artifact's manifest (keys updated) and weights (a function of its tensors) in place."""
    manifest_path, weights = model / artifact.MANIFEST, model / artifact.WEIGHTS
    manifest = json.loads(manifest_path.read_text())
    manifest["hyperparameters"].update(hyperparameters or {})
    manifest["input_shape"].update(input_shape or {})
    manifest_path.write_text(json.dumps(manifest))
    if tensors is not None:
        state = load_file(weights)
        tensors(state)
        save_file(state, weights)


def assert_the_predictor_refuses(model, *words):
    from kfts.serving.model import KftsModel

    predictor = KftsModel("m", str(model), device="cpu")
    try:
        with pytest.raises(InputError) as info:
            predictor.load()
    finally:
        predictor.stop()
    assert str(info.value).startswith(str(model)) and not predictor.ready
    for word in words:
        assert word in str(info.value)


CRAFTED = {  # what is changed, and what the one line says
    "huge filters": (
        dict(hyperparameters={"filters": 10**6}),
        ["kfts-model.json: hyperparameters.filters is 1,000,000: kfts loads models with 1 to 4,096"],
    ),
    "huge depth": (dict(hyperparameters={"depth": 10**5}), ["kfts-model.json: hyperparameters.depth is 100,000"]),
    "text for a number": (dict(hyperparameters={"models": "1"}), ["hyperparameters.models is '1'"]),
    "other filters": (
        dict(hyperparameters={"filters": 8}),
        [
            "weights.safetensors holds 'modules_.0.convs.0.weight' of shape [4, 1, 1, 10] where "
            "[8, 1, 1, 10] is expected",
            "does not go with the hyperparameters",
        ],
    ),
    "missing tensor": (dict(tensors=lambda t: t.pop("head.bias")), ["weights.safetensors has no tensor 'head.bias'"]),
    "wrong dtype": (
        dict(tensors=lambda t: t.update({"head.bias": t["head.bias"].double()})),
        ["holds 'head.bias' as F64 where F32 is expected"],
    ),
    "extra tensor": (
        dict(tensors=lambda t: t.update({"x" * 100: torch.zeros(1)})),
        [f"holds a tensor {'x' * 40!r}... (100 characters) that the network has not"],
    ),
}


@pytest.mark.parametrize("change, words", CRAFTED.values(), ids=CRAFTED.keys())
def test_crafted_artifact_is_refused_by_predict_and_the_predictor(copy, tmp_path, change, words):
    model, input_csv = copy
    craft(model, **change)
    with pytest.raises(InputError):
        load_model(model, device="cpu")
    assert_refused(model, input_csv, tmp_path, *words)
    assert_the_predictor_refuses(model, *words)


def test_a_huge_input_length_is_refused(copy):
    """(`kfts predict` refuses it earlier: its input is not that long.)"""
    model, _ = copy
    craft(model, input_shape={"length": 10**9})
    assert_the_predictor_refuses(
        model, "kfts-model.json: input_shape.length is 1,000,000,000: kfts loads models with 1 to 1,000,000"
    )


def test_a_huge_lstm_is_refused(tmp_path):
    model = tmp_path / "lstm"
    tiny_lstm_ad(np.random.default_rng(0).normal(size=(60, 2)).astype(np.float32), save_to=model)
    craft(model, hyperparameters={"hidden_size": 10**7})
    assert_the_predictor_refuses(model, "hyperparameters.hidden_size is 10,000,000: kfts loads models with 1 to 65,536")
    shutil.rmtree(model)
    tiny_lstm_ad(np.random.default_rng(0).normal(size=(60, 2)).astype(np.float32), save_to=model)
    craft(model, hyperparameters={"num_layers": 2})
    assert_the_predictor_refuses(model, "has no tensor 'lstm.weight_ih_l1'")


def test_a_weights_header_claimed_huge_is_not_read(copy, tmp_path):
    model, input_csv = copy
    weights = model / artifact.WEIGHTS
    weights.write_bytes((1 << 40).to_bytes(8, "little") + weights.read_bytes()[8:])
    assert_refused(model, input_csv, tmp_path, "its header claims 1,099,511,627,776 bytes")


LOAD_AND_MEASURE = """
import os, resource, sys
# without the check, a failed allocation, not a machine out of memory
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
import kfts.algorithms.inception_time.estimator, kfts.core.artifact  # torch and the rest, imported before measuring
from kfts.jobs.load import load_model
from kfts.core.errors import InputError
def resident(): return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
base = resident()
try:
    load_model(sys.argv[1], device="cpu")
except InputError as e:
    print(e)
peak = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))) * 1024
print(max(peak, resident()) - base)
"""


def test_a_manifest_that_would_need_terabytes_is_refused_without_allocating(copy):
    """4096 filters, depth 100, 100 members: about 3 TB of weights. The network is built on the meta device
    and compared with the weights file's header; resident memory grows by less than 100 MB (measured in a
    fresh process: peak VmHWM above the resident size after the imports)."""
    model, _ = copy
    craft(model, hyperparameters={"filters": 4096, "depth": 100, "models": 100})
    result = subprocess.run(
        [sys.executable, "-c", LOAD_AND_MEASURE, str(model)], capture_output=True, text=True, timeout=300
    )
    message, growth = result.stdout.strip().splitlines()
    assert (
        "weights.safetensors holds 'modules_.0.convs.0.weight' of shape [4, 1, 1, 10] where [409600, 1, 1, 10]"
        in message
    ), result.stdout + result.stderr
    assert int(growth) < 100e6, f"{int(growth) / 1e6:.0f} MB"


def test_a_hyperparameter_its_own_check_refuses_names_the_manifest(copy, tmp_path):
    model, input_csv = copy
    craft(model, hyperparameters={"lr": -1.0})
    assert_refused(model, input_csv, tmp_path, "kfts-model.json: hyperparameters: --lr must be positive, not -1.0")


# -- edited manifests: every field checked when a model is loaded or shown ------------------------------------------


@pytest.fixture(scope="module")
def lstm_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("lstm") / "model"
    values = np.random.default_rng(0).normal(size=(60, 2)).astype(np.float32)
    tiny_lstm_ad(values, save_to=path)
    write_csv(path.parent / "input.csv", values)
    return path


@pytest.fixture
def edited(model_dir, lstm_dir, tmp_path):
    """edited(algorithm, field, value): a copy of that algorithm's artifact with `field` ("scaler.std") set to
    `value` in its manifest; returns (the copy, its input file, the predict options)."""

    def edit(algorithm, field, value):
        source = model_dir if algorithm == "inception-time" else lstm_dir
        target = tmp_path / "model"
        shutil.copytree(source, target)
        manifest = json.loads((target / artifact.MANIFEST).read_text())
        *parents, last = field.split(".")
        place = manifest
        for key in parents:
            place = place[key]
        place[last] = value
        (target / artifact.MANIFEST).write_text(json.dumps(manifest))
        return target, source.parent / "input.csv", [] if algorithm == "inception-time" else ["--flag"]

    return edit


NAN, INF = float("nan"), float("inf")
EDITED = {  # algorithm, field, value: the one line that names it
    "scaler null": ("lstm-ad", "scaler", None, "scaler must be an object, not null"),
    "std NaN": (
        "lstm-ad",
        "scaler.std",
        [NAN, NAN],
        "scaler.std must be a list of 2 finite positive numbers, not [NaN, NaN]",
    ),
    "mean inf": (
        "lstm-ad",
        "scaler.mean",
        [INF, 0],
        "scaler.mean must be a list of 2 finite numbers, not [Infinity, 0]",
    ),
    "mean float32 inf": ("lstm-ad", "scaler.mean", [1e39, 0], "scaler.mean must be a list of 2 finite numbers"),
    "mean short": ("lstm-ad", "scaler.mean", [0.5], "scaler.mean must be a list of 2 finite numbers, not [0.5]"),
    "threshold text": ("lstm-ad", "threshold", "x", "threshold must be a finite number, not 'x'"),
    "gaussian text": ("lstm-ad", "gaussian", "x", "gaussian must be an object, not 'x'"),
    "singular": (
        "lstm-ad",
        "gaussian.covariance",
        [[0, 0], [0, 0]],
        "covariance must be a symmetric positive definite 2 x 2",
    ),
    "negative": ("lstm-ad", "gaussian.covariance", [[-1, 0], [0, -1]], "not [[-1, 0], [0, -1]]"),
    "ragged": ("lstm-ad", "gaussian.covariance", [[1, 0], [0]], "gaussian.covariance must be a symmetric"),
    "asymmetric": ("lstm-ad", "gaussian.covariance", [[1, 5], [0, 1]], "gaussian.covariance must be a symmetric"),
    "history text": ("lstm-ad", "history", "x", "history must be a list of objects of numbers, not 'x'"),
    "length text": ("inception-time", "input_shape.length", "16", "input_shape.length is '16': kfts loads models"),
    "classes null": (
        "inception-time",
        "classes",
        None,
        "classes must be a list of distinct texts, at least 2, not null",
    ),
    "classes twice": ("inception-time", "classes", ["a", "a", "b"], "classes must be a list of distinct texts"),
    "std zero": ("inception-time", "scaler.std", 0, "scaler.std must be a finite positive number, not 0"),
    "metrics text": ("inception-time", "metrics", "x", "metrics must be an object of numbers, not 'x'"),
    "warnings number": ("inception-time", "warnings", 5, "warnings must be a list of texts, not 5"),
    "epochs true": (
        "inception-time",
        "hyperparameters.epochs",
        True,
        "hyperparameters.epochs must be a whole number, not true",
    ),
    "unknown hyperparameter": (
        "inception-time",
        "hyperparameters.bogus",
        1,
        "hyperparameters.bogus is not a hyperparameter",
    ),
}


@pytest.mark.parametrize("algorithm, field, value, words", EDITED.values(), ids=EDITED.keys())
def test_an_edited_manifest_field_is_refused_naming_it(edited, tmp_path, algorithm, field, value, words):
    """By `kfts inspect` and `kfts predict` alike: exit 2, one line naming the manifest and the field, no output
    (these were tracebacks, or wrong predictions: NaN scaling wrote empty scores, a short one was broadcast)."""
    model, input_csv, options = edited(algorithm, field, value)
    output = tmp_path / "predictions.csv"
    for command in (
        ["inspect", model],
        ["predict", "--model-dir", model, "--input", input_csv, "--output", output, *options],
    ):
        result = run_cli(*command)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith(f"error: {model / artifact.MANIFEST}: ") and words in result.stderr
    assert not output.exists()


def test_a_manifest_nested_too_deeply_is_refused(copy):
    model, _ = copy
    (model / artifact.MANIFEST).write_text("[" * 100000 + "]" * 100000)
    result = run_cli("inspect", model)
    assert result.returncode == 2
    assert result.stderr == f"error: {model / artifact.MANIFEST}: is not a kfts model: its JSON is nested too deeply\n"
    with pytest.raises(InputError, match="nested too deeply"):
        load_model(model, device="cpu")


@pytest.mark.parametrize("bad", [NAN, INF])
def test_weights_holding_nan_or_infinity_are_refused(copy, tmp_path, bad):
    model, input_csv = copy
    tensors = load_file(model / artifact.WEIGHTS)
    tensors["head.bias"][0] = bad
    save_file(tensors, model / artifact.WEIGHTS)
    assert_refused(model, input_csv, tmp_path, "weights.safetensors holds NaN or infinite values in 'head.bias'")


def test_serve_refuses_to_start_on_an_edited_manifest(edited):
    from helpers import free_port

    model, _, _ = edited("lstm-ad", "scaler", None)
    result = run_cli(
        "serve",
        "--model-dir",
        model,
        "--host",
        "127.0.0.1",
        "--http-port",
        free_port(),
        "--grpc-port",
        free_port(),
        "--device",
        "cpu",
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr == f"error: {model / artifact.MANIFEST}: scaler must be an object, not null\n"


# -- checkpoints that are not a training state ---------------------------------------------------------------------


def train_with_checkpoints(tmp_path, checkpoints):
    labels, values = make_classification(n_per_class=5, length=16)
    train = write_csv(tmp_path / "train.csv", ([lab, *row] for lab, row in zip(labels, values)))
    options = ["--epochs", 1, "--models", 1, "--filters", 4, "--depth", 1, "--ensemble", "sequential", "--seed", 0]
    model = tmp_path / "model"
    return run_cli(
        "train", "inception-time", "--train", train, "--model-dir", model, "--checkpoint-dir", checkpoints, *options
    ), model


@pytest.fixture(scope="module")
def finished_checkpoints(tmp_path_factory):
    """The checkpoint directory of a finished run (one member: members-0-0.pt)."""
    tmp_path = tmp_path_factory.mktemp("run")
    train_with_checkpoints(tmp_path, tmp_path / "ckpt")[0].check_returncode()
    return tmp_path / "ckpt"


def without(*keys):
    return lambda state: {k: v for k, v in state.items() if k not in keys}


def resumable(state):
    """A finished run's state as that of its first epoch, which the run (of one epoch) resumes after."""
    return {**without("done")(state), "epoch": 1, "generators": [torch.Generator().get_state()]}


CHECKPOINTS = {  # the saved state changed: the one line's reason
    "a list": (lambda state: [1, 2], "it holds a list, not a training state"),
    "no epoch": (without("done"), "its 'epoch' is missing or not of type int"),
    "no weights": (without("network"), "its 'network' is missing or not of type dict"),
    "other optimizer": (
        lambda state: {**without("done")(state), "epoch": 1, "optimizer": {"state": {}, "param_groups": [1]}},
        "TypeError",
    ),
    "best of another kind": (
        lambda state: {**resumable(state), "best": "epoch 1"},
        "its 'best' is missing or not of type dict",
    ),
    "best without a loss": (
        lambda state: {**resumable(state), "best": {"state": None, "epoch": 1}},
        "its 'best.loss' is missing or not of type float",
    ),
    "best of another network": (
        lambda state: {**resumable(state), "best": {"loss": 0.5, "state": {"w": torch.ones(1)}, "epoch": 1}},
        "RuntimeError",
    ),
}


@pytest.mark.parametrize("change, reason", CHECKPOINTS.values(), ids=CHECKPOINTS.keys())
def test_a_checkpoint_that_is_not_a_training_state_is_refused(finished_checkpoints, tmp_path, change, reason):
    """The same train command again, on its checkpoint changed: exit 2, one line naming it and saying to delete it
    (a list was an AttributeError, a missing epoch a KeyError)."""
    checkpoints = tmp_path / "ckpt"
    shutil.copytree(finished_checkpoints, checkpoints)
    saved = checkpoints / "members-0-0.pt"
    torch.save(change(torch.load(saved, weights_only=True)), saved)
    result, model = train_with_checkpoints(tmp_path, checkpoints)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: {saved}: is not a complete kfts checkpoint ({reason}")
    assert result.stderr.endswith("; delete it to start over\n") and not model.exists()
