"""InceptionTime: the network's structure, the ensemble, training, the artifact and the CLI end to end."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from kfts.algorithms.inception_time import batch_norm
from kfts.algorithms.inception_time.estimator import InceptionTime, Params, fit_warnings
from kfts.algorithms.inception_time.network import (
    KERNEL_SIZES,
    GlobalAveragePool,
    InceptionNetworks,
    SameConv,
    concatenate,
    ensemble_probabilities,
    merge_members,
    split_members,
)
from kfts.core.csvio import LabeledSeries
from kfts.core.errors import InputError
from kfts.core.training import MetricLog, cpu_count, resolve_device, resolve_precision
from kfts.jobs.load import load_model
from kfts.jobs.model_info import describe_model

from helpers import (
    assert_statistics_of,
    make_classification,
    predictions_csv,
    run_cli,
    write_csv,
)

TINY = dict(filters=4, depth=3, models=2, epochs=3, batch_size=16)


def n_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_count_follows_the_papers_structure():
    # one network, univariate input, 3 classes, the paper's filters=32 and depth=6, counted by hand:
    filters, width, classes = 32, 128, 3
    first = filters * 1 * (10 + 20 + 40) + filters * 1 + 2 * width  # no bottleneck on 1 channel
    later = 32 * width + filters * 32 * (10 + 20 + 40) + filters * width + 2 * width  # bottleneck 32
    shortcuts = (1 * width + 2 * width) + (width * width + 2 * width)  # after modules 3 and 6
    head = width * classes + classes
    expected = first + 5 * later + shortcuts + head
    assert n_parameters(InceptionNetworks(1, classes, members=1)) == expected == 420_579
    # members are independent copies: five members hold exactly five times the parameters
    assert n_parameters(InceptionNetworks(1, classes, members=5)) == 5 * expected


@pytest.mark.parametrize("kernel_size", [*KERNEL_SIZES, 1, 7])
def test_convolutions_are_padded_as_keras_same(kernel_size):
    """The paper's Keras code pads 'same': (k-1)//2 steps before the series and k//2 after, for even kernels too.
    A reference: torch's Conv1d on the series padded that way, with the same weights."""
    torch.manual_seed(0)
    conv = SameConv(6, 4, kernel_size, groups=2)
    x = torch.randn(3, 6, 1, 50)
    padded = torch.nn.functional.pad(x[:, :, 0], ((kernel_size - 1) // 2, kernel_size // 2))
    expected = torch.nn.functional.conv1d(padded, conv.weight[:, :, 0], groups=2)
    torch.testing.assert_close(conv(x)[:, :, 0], expected)
    conv(x).sum().backward()  # the weights keep their k taps, and every one of them is trained
    assert conv.weight.grad.shape == (4, 3, 1, kernel_size) and bool((conv.weight.grad != 0).all())


def test_global_average_pool_is_the_mean_over_time_with_its_gradient():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 1, 7, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(GlobalAveragePool.apply(x), x.mean(-1, keepdim=True))
    assert torch.autograd.gradcheck(GlobalAveragePool.apply, (x,))
    bf16 = x.detach().bfloat16().contiguous(memory_format=torch.channels_last).requires_grad_()
    grad = torch.randn(3, 4, 1, 1).bfloat16()
    got = torch.autograd.grad(GlobalAveragePool.apply(bf16), bf16, grad)[0]
    expected = torch.autograd.grad(torch.nn.functional.avg_pool2d(bf16, (1, 7)), bf16, grad)[0]
    assert torch.equal(got, expected) and got.is_contiguous(memory_format=torch.channels_last)


def test_concatenate_puts_each_members_pieces_together():
    pieces = [torch.arange(6.0).view(1, 6, 1, 1) + 10 * p for p in range(3)]  # 2 members of 3 channels each
    channels = concatenate(pieces, members=2).flatten().tolist()
    assert channels == [0, 1, 2, 10, 11, 12, 20, 21, 22, 3, 4, 5, 13, 14, 15, 23, 24, 25]


@pytest.mark.parametrize("channels,length", [(1, 37), (3, 64)])
def test_output_shape_is_batch_members_classes(channels, length):
    net = InceptionNetworks(channels, 4, members=3, filters=8, depth=6).eval()
    assert net(torch.randn(5, channels, length)).shape == (5, 3, 4)


def test_members_are_independent_and_the_ensemble_averages_their_probabilities():
    torch.manual_seed(0)
    ensemble = InceptionNetworks(1, 3, members=3, filters=8, depth=3).eval()
    x = torch.randn(6, 1, 40)
    logits = ensemble(x)
    singles = []
    for state in split_members(ensemble.state_dict(), 3):
        single = InceptionNetworks(1, 3, members=1, filters=8, depth=3).eval()
        single.load_state_dict(state)
        singles.append(torch.softmax(single(x)[:, 0], dim=-1))
    torch.testing.assert_close(ensemble_probabilities(logits), torch.stack(singles).mean(0), atol=1e-5, rtol=0)
    rebuilt = InceptionNetworks(1, 3, members=3, filters=8, depth=3).eval()
    rebuilt.load_state_dict(merge_members(split_members(ensemble.state_dict(), 3)))
    torch.testing.assert_close(rebuilt(x), logits)


def test_members_start_from_different_weights():
    net = InceptionNetworks(1, 2, members=2, filters=4, depth=3)
    a, b = split_members(net.state_dict(), 2)
    assert not torch.equal(a["modules_.0.convs.2.weight"], b["modules_.0.convs.2.weight"])


def tiny_data(seed=0, classes=("a", "b", "c"), n=12):
    labels, values = make_classification(n_per_class=n, length=24, classes=classes, seed=seed)
    return LabeledSeries(labels, values)


@pytest.mark.parametrize("ensemble", ["sequential", "stacked"])
def test_fit_learns_a_separable_problem(ensemble):
    model = InceptionTime(Params(**{**TINY, "epochs": 15, "ensemble": ensemble}), device="cpu", seed=0)
    model.fit(tiny_data(seed=0))
    test = tiny_data(seed=1)
    assert (model.predict(test.values) == test.labels).mean() >= 0.9
    assert len(model.history) == 15 * (2 if ensemble == "sequential" else 1)


def test_metric_lines_are_fixed_point_and_match_history(capsys):
    model = InceptionTime(Params(**{**TINY, "ensemble": "stacked"}), device="cpu", seed=0)
    data = tiny_data()
    model.fit(data, valid=tiny_data(seed=1))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch=")]
    assert len(lines) == 3
    for line, record in zip(lines, model.history):
        pairs = dict(pair.split("=") for pair in line.split())
        assert list(pairs) == ["epoch", "train_loss", "train_accuracy", "valid_loss", "valid_accuracy"]
        assert all("e" not in v for v in pairs.values())  # Katib reads fixed-point only
        assert float(pairs["train_loss"]) == pytest.approx(record["train_loss"], abs=1e-6)
    assert set(model.metrics) == {"train_loss", "train_accuracy", "valid_loss", "valid_accuracy"}


@pytest.mark.parametrize("ensemble", ["sequential", "stacked"])
def test_same_seed_same_model(ensemble):
    # per layout: `auto` picks one by timing, which a loaded machine can tip either way
    data = tiny_data()
    a = InceptionTime(Params(**TINY, ensemble=ensemble), device="cpu", seed=7).fit(data)
    b = InceptionTime(Params(**TINY, ensemble=ensemble), device="cpu", seed=7).fit(data)
    np.testing.assert_array_equal(a.predict_proba(data.values), b.predict_proba(data.values))


def test_artifact_round_trip_predicts_identically(tmp_path):
    data = tiny_data()
    model = InceptionTime(Params(**TINY), device="cpu", seed=0).fit(data)
    model.save(tmp_path / "model")
    loaded = load_model(tmp_path / "model", device="cpu")
    np.testing.assert_array_equal(loaded.predict_proba(data.values), model.predict_proba(data.values))
    manifest = json.loads((tmp_path / "model" / "kfts-model.json").read_text())
    assert manifest["algorithm"] == "inception-time" and manifest["classes"] == ["a", "b", "c"]
    assert manifest["input_shape"] == {"length": 24, "channels": 1}
    assert manifest["hyperparameters"]["filters"] == 4 and len(manifest["history"]) == len(model.history)


def test_scaling_is_fitted_on_training_data_and_applied_at_inference():
    data = tiny_data()
    shifted = LabeledSeries(data.labels, data.values * 50 + 1000)
    model = InceptionTime(Params(**{**TINY, "epochs": 15}), device="cpu", seed=0).fit(shifted)
    assert model.scaler["mean"] == pytest.approx(float((data.values.astype(np.float64) * 50 + 1000).mean()))
    test = tiny_data(seed=1)
    assert (model.predict(test.values * 50 + 1000) == test.labels).mean() >= 0.9


def test_init_model_continues_or_replaces_the_head(capsys):
    first = InceptionTime(Params(**TINY), device="cpu", seed=0).fit(tiny_data())
    same = InceptionTime(Params(**TINY), device="cpu", seed=1).fit(tiny_data(seed=2), init_model=first)
    assert list(same.classes) == ["a", "b", "c"]
    assert "replaced" not in capsys.readouterr().out
    # a learning rate too small to move any weight: the continued model holds the weights it started from
    frozen = Params(**{**TINY, "epochs": 1, "lr": 1e-12})
    new_classes = tiny_data(seed=3, classes=("x", "y"))
    other = InceptionTime(frozen, device="cpu", seed=1).fit(new_classes, init_model=first)
    assert list(other.classes) == ["x", "y"]
    assert "classifier heads are replaced" in capsys.readouterr().out
    # the convolutional layers started from the first model's weights, not from scratch; the heads are new
    scratch = dict(InceptionTime(frozen, device="cpu", seed=1).fit(new_classes).network.named_parameters())
    started = dict(first.network.named_parameters())
    body = [name for name in started if not name.startswith("head.")]
    assert body and set(started) == set(scratch)
    continued = dict(other.network.named_parameters())
    for name in body:
        torch.testing.assert_close(continued[name], started[name], rtol=0, atol=1e-6)
        assert not torch.allclose(scratch[name], started[name], rtol=0, atol=1e-6), name  # would have told
    assert continued["head.weight"].shape[0] == 2 * 2 != started["head.weight"].shape[0]  # 2 members x 2 classes
    # the new heads start where a model trained from scratch with this seed starts: one seed, one model
    torch.manual_seed(12345)  # whatever state torch's generator is in
    refit = InceptionTime(frozen, device="cpu", seed=1).fit(new_classes, init_model=first)
    again = dict(refit.network.named_parameters())
    for name in ("head.weight", "head.bias"):
        torch.testing.assert_close(continued[name], scratch[name], rtol=0, atol=1e-6)
        torch.testing.assert_close(again[name], continued[name], rtol=0, atol=0)


def mislabelled(data: LabeledSeries) -> LabeledSeries:
    """The same kind of series under the wrong classes: the better a model learns, the worse it scores here."""
    wrong = {"a": "b", "b": "c", "c": "a"}
    return LabeledSeries(np.array([wrong[label] for label in data.labels]), data.values)


@pytest.mark.parametrize("ensemble", ["sequential", "stacked"])
def test_early_stopping_keeps_the_best_validation_epoch(ensemble, capsys):
    params = Params(
        **{
            **TINY,
            "epochs": 40,
            "ensemble": ensemble,
            "precision": "fp32",
            "early_stopping": 2,
            "batch_norm_stats": "running",
        }
    )
    model = InceptionTime(params, device="cpu", seed=0).fit(tiny_data(), valid=mislabelled(tiny_data(seed=1)))
    groups = [
        [h for h in model.history if h.get("member") == member]
        for member in ([1, 2] if ensemble == "sequential" else [None])
    ]
    out = capsys.readouterr().out
    for history in groups:
        losses = [h["valid_loss"] for h in history]
        best = int(np.argmin(losses))
        assert len(history) == best + 1 + 2 < 40  # two epochs without improvement, then it stopped
        assert f"stopped after epoch {len(history)}, keeping epoch {best + 1}'s weights" in out
    if ensemble == "stacked":  # the kept weights are the best epoch's: they score its validation loss again
        assert model.metrics["valid_loss"] == pytest.approx(min(losses), rel=1e-5)
    assert params.early_stopping == 2 and params.epochs == 40  # the caller's Params are left alone


def assert_training_set_statistics(model: InceptionTime, data: LabeledSeries) -> None:
    assert_statistics_of(model.network, model._tensor(data.values))


@pytest.mark.parametrize(
    "ensemble,precision,options",
    [
        ("sequential", "fp32", {}),
        ("stacked", "bf16", {}),  # the CPU kernels add-on trains it, where installed
        ("stacked", "fp32", {"early_stopping": 1}),  # the statistics are the kept epoch's weights'
        ("sequential", "fp32", {"schedule": "plateau", "epochs": 4}),
    ],
)
def test_the_saved_model_normalizes_with_the_training_sets_statistics_for_its_weights(ensemble, precision, options):
    params = Params(**{**TINY, "ensemble": ensemble, "precision": precision, **options})
    data = tiny_data()
    valid = mislabelled(tiny_data(seed=1)) if params.early_stopping else None
    model = InceptionTime(params, device="cpu", seed=0).fit(data, valid)
    assert_training_set_statistics(model, data)
    # in evaluation the network computes what a training-mode pass of the whole set as one batch computes
    x = model._tensor(data.values)
    as_one_batch = copy.deepcopy(model.network).double().train()
    with torch.no_grad():
        torch.testing.assert_close(model.network.double()(x.double()), as_one_batch(x.double()), rtol=0, atol=1e-4)


def test_fine_tuning_recomputes_the_statistics_on_its_own_data():
    first = InceptionTime(Params(**TINY, batch_norm_stats="running"), device="cpu", seed=0).fit(tiny_data())
    new_data = tiny_data(seed=2)
    tuned = InceptionTime(Params(**{**TINY, "epochs": 1}), device="cpu", seed=1).fit(new_data, init_model=first)
    assert tuned.params.batch_norm_stats == "precise"
    assert_training_set_statistics(tuned, new_data)


def test_running_keeps_the_running_averages_and_the_artifact_says_which(tmp_path):
    data = tiny_data()
    running = InceptionTime(Params(**TINY, batch_norm_stats="running"), device="cpu", seed=0).fit(data)
    precise = InceptionTime(Params(**TINY), device="cpu", seed=0).fit(data)
    weights = [name for name in precise.network.state_dict() if "running_" not in name]
    for name in weights:  # the same training: only the statistics differ
        assert torch.equal(running.network.state_dict()[name], precise.network.state_dict()[name]), name
    assert not torch.allclose(
        running.network.modules_[2].norm.running_var, precise.network.modules_[2].norm.running_var
    )
    for model, stats in ((running, "running"), (precise, "precise")):
        model.save(tmp_path / stats)
        manifest = json.loads((tmp_path / stats / "kfts-model.json").read_text())
        assert manifest["hyperparameters"]["batch_norm_stats"] == stats
        loaded = load_model(tmp_path / stats, device="cpu")
        assert loaded.params.batch_norm_stats == stats
        np.testing.assert_array_equal(loaded.predict_proba(data.values), model.predict_proba(data.values))
    # an artifact written before the option holds running averages, and says so once loaded
    manifest = json.loads((tmp_path / "running" / "kfts-model.json").read_text())
    del manifest["hyperparameters"]["batch_norm_stats"], manifest["warnings"]
    (tmp_path / "running" / "kfts-model.json").write_text(json.dumps(manifest))
    old = load_model(tmp_path / "running", device="cpu")
    assert old.params.batch_norm_stats == "running" and old.warnings == []


def test_moments_merged_in_parts_are_the_moments_of_the_whole():
    x = torch.randn(10, 3, 1, 7) * 5 + 2
    moments = batch_norm.Moments()
    for part in (x[:1], x[1:6], x[6:]):
        moments.add(part)
    whole = x.double()
    torch.testing.assert_close(moments.mean, whole.mean((0, 2, 3)), rtol=1e-6, atol=0)
    torch.testing.assert_close(moments.variance(), whole.var((0, 2, 3), unbiased=False), rtol=1e-6, atol=0)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_one_seed_one_model_whatever_the_layout(precision):
    """Member m starts from the weights seeded seed + m and takes its own batches, in a stacked network as on
    its own: the layouts differ only in how their arithmetic rounds."""
    data = tiny_data()
    params = dict(**TINY, precision=precision)
    models = {
        layout: InceptionTime(Params(**params, ensemble=layout), device="cpu", seed=3).fit(data)
        for layout in ("sequential", "stacked")
    }
    alone = [InceptionTime(Params(**{**params, "models": 1}), device="cpu", seed=3 + m).fit(data) for m in (0, 1)]
    test = tiny_data(seed=1).values
    sequential, stacked = (models[layout].predict_proba(test) for layout in ("sequential", "stacked"))
    tolerance = 1e-5 if precision == "fp32" else 1e-3
    np.testing.assert_allclose(stacked, sequential, rtol=0, atol=tolerance)
    np.testing.assert_array_equal(stacked.argmax(1), sequential.argmax(1))
    members = np.mean([m.predict_proba(test) for m in alone], axis=0)
    np.testing.assert_allclose(members, sequential, rtol=0, atol=tolerance)
    first, second = split_members(models["stacked"].network.state_dict(), 2)
    for name, value in alone[1].network.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(second[name], value, rtol=0, atol=tolerance * 10)
    # the epochs' figures agree too: each member's train_accuracy and loss
    stacked_rows = [h for h in models["stacked"].history]
    member_rows = [[h for h in models["sequential"].history if h["member"] == m] for m in (1, 2)]
    for row, one, two in zip(stacked_rows, *member_rows):
        assert row["train_accuracy"] == pytest.approx((one["train_accuracy"] + two["train_accuracy"]) / 2)
        assert row["train_loss"] == pytest.approx((one["train_loss"] + two["train_loss"]) / 2, abs=tolerance)


def test_a_failed_fit_ends_with_a_warning(tmp_path, capsys):
    # a learning rate too small to move any weight: the model predicts what its random weights do
    frozen = Params(**{**TINY, "epochs": 1, "lr": 1e-12})
    model = InceptionTime(frozen, device="cpu", seed=0).fit(tiny_data())
    err = capsys.readouterr().err
    assert model.metrics["train_accuracy"] < 0.5
    assert err.startswith(f"warning: the saved model scores train_accuracy={model.metrics['train_accuracy']:.3f} ")
    assert "near chance (always answering the largest class scores 0.333)" in err
    assert "--epochs" in err and "--schedule plateau" in err and "--early-stopping" in err
    model.save(tmp_path / "model")
    assert json.loads((tmp_path / "model" / "kfts-model.json").read_text())["warnings"] == [err[9:-1]]
    assert f"warning:         {err[9:-1]}" in describe_model(tmp_path / "model")
    good = InceptionTime(Params(**{**TINY, "epochs": 15}), device="cpu", seed=0).fit(tiny_data())
    assert good.warnings == [] and capsys.readouterr().err == ""


def test_fit_warnings_name_chance_and_a_fall_from_the_epochs():
    balanced, skewed = torch.tensor([0, 1] * 50), torch.tensor([0] * 80 + [1] * 20)
    params = Params()
    assert fit_warnings(0.95, 0.9, balanced, params) == []
    assert (
        "near chance (always answering the largest class scores 0.500)" in fit_warnings(0.55, 0.6, balanced, params)[0]
    )
    assert fit_warnings(0.55, 0.6, torch.tensor([0, 1] * 5000), params) == []  # 10,000 series: 0.55 is no guess
    assert fit_warnings(1.0, 1.0, torch.tensor([0, 1, 0, 1]), params) == []  # 4 series, all right: no failure
    assert "near chance" in fit_warnings(0.75, 0.75, torch.tensor([0, 1, 0, 1]), params)[0]
    assert (
        "near chance (always answering the largest class scores 0.800)" in fit_warnings(0.85, 0.85, skewed, params)[0]
    )
    fall = fit_warnings(0.8, 0.97, balanced, params)
    assert (
        len(fall) == 1 and "near chance" not in fall[0] and "far below the 0.970 its training epochs showed" in fall[0]
    )
    assert "--batch-norm-stats precise" in fit_warnings(0.8, 0.97, balanced, Params(batch_norm_stats="running"))[0]
    assert "--batch-norm-stats" not in fall[0]


class Interrupted(Exception):
    pass


class InterruptAfter(MetricLog):
    """A training killed once `epoch` has been logged, before its checkpoint is written."""

    def __init__(self, epoch: int):
        super().__init__(quiet=True)
        self.epoch = epoch

    def log(self, values):
        super().log(values)
        if values["epoch"] == self.epoch:
            raise Interrupted


def test_a_resumed_run_stops_early_where_an_uninterrupted_one_does(tmp_path):
    params = Params(**{**TINY, "epochs": 40, "ensemble": "stacked", "precision": "fp32", "early_stopping": 2})
    train, valid = tiny_data(), mislabelled(tiny_data(seed=1))
    whole = InceptionTime(params, device="cpu", seed=0).fit(train, valid)
    last = len(whole.history)
    with pytest.raises(Interrupted):
        InceptionTime(params, device="cpu", seed=0).fit(
            train, valid, checkpoint_dir=tmp_path, log=InterruptAfter(last - 1)
        )
    resumed = InceptionTime(params, device="cpu", seed=0).fit(train, valid, checkpoint_dir=tmp_path)
    assert resumed.history == whole.history and last < 40
    np.testing.assert_array_equal(resumed.predict_proba(train.values), whole.predict_proba(train.values))


def test_early_stopping_is_off_by_default_and_needs_validation_data():
    model = InceptionTime(Params(**{**TINY, "epochs": 6, "ensemble": "stacked"}), device="cpu", seed=0)
    assert len(model.fit(tiny_data(), valid=mislabelled(tiny_data(seed=1))).history) == 6
    with pytest.raises(InputError, match="--early-stopping needs validation data"):
        InceptionTime(Params(**TINY, early_stopping=3), device="cpu").fit(tiny_data())
    with pytest.raises(InputError, match=r"--early-stopping must be in \[0, "):
        Params(early_stopping=-1)


def test_predictions_csv_layout_keeps_labels_verbatim():
    labels = np.array(["1.0", "2.0", "abnormal,odd"])
    model = InceptionTime(Params(**TINY), device="cpu", seed=0)
    values = make_classification(n_per_class=6, length=16, classes=tuple(labels))[1]
    model.fit(LabeledSeries(np.repeat(labels, 6), values))
    plain = predictions_csv(model, values[:4]).splitlines()
    assert len(plain) == 4 and set(plain) <= {"1.0", "2.0", '"abnormal,odd"'}
    with_p = predictions_csv(model, values[:4], probabilities=True).splitlines()
    assert with_p[0] == 'label,p_1.0,p_2.0,"p_abnormal,odd"'
    for row in with_p[1:]:
        probabilities = [float(v) for v in row.rsplit(",", 3)[1:]]
        assert sum(probabilities) == pytest.approx(1, abs=1e-5)


def test_wrong_length_at_inference_is_refused():
    model = InceptionTime(Params(**TINY), device="cpu", seed=0).fit(tiny_data())
    with pytest.raises(InputError, match="24 time steps"):
        model.predict(np.zeros((2, 30), dtype=np.float32))


def test_hyperparameters_are_checked():
    with pytest.raises(InputError, match="--batch-size must be positive"):
        Params(batch_size=0)
    with pytest.raises(InputError, match="--schedule must be one of"):
        Params(schedule="cosine")


def test_device_and_precision_choice(monkeypatch):
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(InputError, match="no CUDA GPU"):
            resolve_device("cuda")
    cpu = torch.device("cpu")
    monkeypatch.setattr("kfts.core.training.cpu_supports_bf16", lambda: False)
    assert resolve_precision("auto", cpu) is None
    monkeypatch.setattr("kfts.core.training.cpu_supports_bf16", lambda: True)
    assert resolve_precision("auto", cpu) is torch.bfloat16
    assert resolve_precision("fp32", cpu) is None


def test_threads_respect_the_pods_cpu_quota(tmp_path):
    cores = len(__import__("os").sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text("100000 100000\n")  # limits.cpu: 1
    assert cpu_count(tmp_path / "cpu.max") == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")  # no limit
    assert cpu_count(tmp_path / "cpu.max") == cores
    assert cpu_count(tmp_path / "absent") == cores


def test_freed_memory_is_reused_instead_of_faulted_in_again():
    """Training steps free and allocate the same large buffers every time. After reuse_freed_memory, once the
    heap has grown to a step's size, a step gets its memory without the kernel zeroing fresh pages for it;
    under glibc's defaults blocks above 32 MB are fresh mappings, step after step."""
    script = """
import resource, sys, torch
from kfts.core.training import reuse_freed_memory
if sys.argv[1] == "reuse":
    assert reuse_freed_memory()
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for step in range(8):
    before = faults()
    activations = [torch.ones(mb << 18) for mb in (40, 16, 40, 8, 40)]  # float32: mb megabytes each
    del activations
print(faults() - before)
"""

    def last_step_faults(mode: str) -> int:
        return int(
            subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True).stdout
        )

    assert last_step_faults("reuse") < 1000
    assert last_step_faults("default") > 40 * 256  # more than a 40 MB block's 4 KiB pages, mapped afresh


def test_cli_end_to_end(tmp_path, classification_csv):
    train, test, labels = classification_csv
    model_dir = tmp_path / "model"
    result = run_cli(
        "train",
        "inception-time",
        "--train",
        train,
        "--valid",
        train,
        "--model-dir",
        model_dir,
        "--filters",
        4,
        "--depth",
        3,
        "--models",
        2,
        "--epochs",
        12,
        "--seed",
        0,
        check=True,
    )
    assert "epoch=12 train_loss=" in result.stdout and "valid_accuracy=" in result.stdout
    run_cli("validate", "inception-time", test, "--inference", check=True)

    run_cli("predict", "--model-dir", model_dir, "--input", test, "--output", tmp_path / "pred.csv", check=True)
    predicted = (tmp_path / "pred.csv").read_text().splitlines()
    assert len(predicted) == len(labels) and (np.array(predicted) == labels).mean() >= 0.9

    run_cli(
        "predict",
        "--model-dir",
        model_dir,
        "--input",
        test,
        "--output",
        tmp_path / "proba.csv",
        "--probabilities",
        check=True,
    )
    assert (tmp_path / "proba.csv").read_text().splitlines()[0] == "label,p_a,p_b,p_c"

    run_cli("evaluate", "--model-dir", model_dir, "--input", train, "--output-dir", tmp_path / "eval", check=True)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.9 and metrics["confusion_matrix"]["labels"] == ["a", "b", "c"]
    assert np.array(metrics["confusion_matrix"]["matrix"]).sum() == len(labels)
    report = (tmp_path / "eval" / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 3  # confusion matrix, ROC / precision-recall, learning curves


def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path):
    bad = write_csv(tmp_path / "train.csv", [["a", 1, 2], ["b", 3, "x"]])
    result = run_cli("train", "inception-time", "--train", bad, "--model-dir", tmp_path / "model")
    assert result.returncode == 2
    assert result.stderr == f"error: {bad}: row 2, column 3: 'x' is not a number\n"
    assert not (tmp_path / "model").exists() and list(tmp_path.iterdir()) == [bad]
