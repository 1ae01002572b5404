"""LSTM-AD: network shapes, the error Normal, output layout, artifact, resume, CLI end to end, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import stats

from conftest import run_cli, write_csv
from kfts import training
from kfts.algorithms import load_model
from kfts.cli import main
from kfts.errors import InputError
from kfts.lstm_ad import LstmAD, Params, fit_gaussian, log_density
from kfts.models.lstm_ad import LstmReconstructor, cut_sequences, input_sequences

TINY = dict(num_layers=2, sequence_length=10, hidden_size=8, dropout=0.1, batch_size=16)


def waves(n: int, d: int = 2, period: int = 20, seed: int = 0) -> np.ndarray:
    """d noisy, phase-shifted sines: normal behaviour the LSTM can learn in a few epochs."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    return (np.sin(2 * np.pi * t / period + np.arange(d)) + 0.05 * rng.normal(size=(n, d))).astype(np.float32)


def fitted(train=None, epochs=3, **params) -> LstmAD:
    model = LstmAD(Params(**{**TINY, "epochs": epochs, **params}), device="cpu", seed=0)
    return model.fit(waves(400) if train is None else train)


# -- network and sequences ---------------------------------------------------------------------------------------

def test_network_output_has_the_input_shape():
    net = LstmReconstructor(n_series=3, hidden_size=8, num_layers=2, dropout=0.1)
    assert net(torch.zeros(5, 10, 3)).shape == (5, 10, 3)


def test_sequences_pair_each_one_with_the_next():
    values = torch.arange(47.0).reshape(47, 1)
    inputs, targets = cut_sequences(values, 10)
    assert inputs.shape == targets.shape == (3, 10, 1)  # 4 full sequences, the last 7 steps have no pair
    assert torch.equal(targets[0], inputs[1]) and targets[-1, -1, 0] == 39
    # scoring: every step from 10 on is reconstructed, the last shorter sequence from a full input
    inputs = input_sequences(values, 10)
    assert inputs.shape == (4, 10, 1) and inputs[-1, -1, 0] == 39


def test_params_are_validated():
    for name, bad in (("dropout", 1.0), ("sequence_length", 0), ("error_fraction", 1.0), ("threshold_quantile", 0),
                      ("lr", -1.0), ("precision", "int8")):
        with pytest.raises(InputError, match=f"--{name.replace('_', '-')} must be"):
            Params(**{name: bad})
    assert Params(dropout=0.0).dropout == 0.0  # no dropout is allowed, unlike no error-fit part


# -- the Normal of the errors --------------------------------------------------------------------------------------

def test_gaussian_fit_and_log_density_match_numpy_and_scipy():
    rng = np.random.default_rng(0)
    errors = rng.multivariate_normal([0.5, -1.0, 0.0], [[1.0, 0.3, 0.1], [0.3, 2.0, -0.4], [0.1, -0.4, 0.5]],
                                     size=500)
    mean, covariance, ridge = fit_gaussian(errors)
    assert ridge == 0.0
    np.testing.assert_allclose(mean, errors.mean(axis=0))
    np.testing.assert_allclose(covariance, np.cov(errors.T, bias=True))  # maximum likelihood: divided by n
    points = rng.normal(size=(50, 3)) * 3
    expected = stats.multivariate_normal(mean, covariance).logpdf(points)
    np.testing.assert_allclose(log_density(torch.from_numpy(points), mean, covariance).numpy(), expected,
                               rtol=1e-10)


def test_singular_covariance_is_regularised():
    rng = np.random.default_rng(0)
    a = rng.normal(size=200)
    for errors in (np.stack([a, a], axis=1),                  # two identical series
                   np.stack([a, np.zeros(200)], axis=1),      # a series reconstructed without error
                   np.zeros((200, 2))):                       # everything reconstructed without error
        mean, covariance, ridge = fit_gaussian(errors)
        assert ridge > 0
        assert np.all(np.linalg.eigvalsh(covariance) > 0)
        scores = log_density(torch.from_numpy(errors + rng.normal(size=errors.shape)), mean, covariance)
        assert torch.isfinite(scores).all()


def test_constant_and_duplicated_series_give_finite_scores():
    base = waves(400, d=1)
    train = np.concatenate([base, base, np.full_like(base, 3.0)], axis=1)  # identical pair + a constant
    model = fitted(train)
    test = train.copy()
    test[200, 2] = 4.0  # the constant series moves
    scores, reconstructions = model.score(test)
    assert np.isfinite(scores[10:]).all() and np.isfinite(reconstructions[10:]).all()
    assert np.argmin(scores[10:]) + 10 == 200


def test_a_rank_deficient_error_fit_is_regularised_and_logged(capsys):
    # 22 steps with sequence-length 10: 20 train the LSTM, 2 error vectors of 3 series fit the Normal (rank 1)
    model = fitted(waves(22, d=3), error_fraction=0.1)
    assert "near-singular" in capsys.readouterr().out and model.gaussian["ridge"] > 0
    assert np.isfinite(model.score(waves(60, d=3))[0][10:]).all()


# -- scoring and the output layout ----------------------------------------------------------------------------------

def test_score_shapes_and_layout_with_a_last_shorter_sequence():
    model = fitted()
    longer = waves(80, seed=1)
    values = longer[:73]  # 7 full sequences of 10 and 3 more steps
    scores, reconstructions = model.score(values)
    assert scores.shape == (73,) and scores.dtype == np.float64 and reconstructions.shape == (73, 2)
    assert np.isnan(scores[:10]).all() and np.isnan(reconstructions[:10]).all()
    assert np.isfinite(scores[10:]).all() and np.isfinite(reconstructions[10:]).all()
    # a shorter last sequence is reconstructed as the first steps of a full one
    _, full = model.score(longer)
    np.testing.assert_array_equal(reconstructions[70:], full[70:73])

    rows = model.predictions_csv(values).splitlines()
    assert len(rows) == 73 and rows[:10] == [",,"] * 10
    fields = np.array([row.split(",") for row in rows[10:]], dtype=np.float64)
    np.testing.assert_allclose(fields[:, 0], scores[10:], rtol=1e-12)
    np.testing.assert_allclose(fields[:, 1:], reconstructions[10:], rtol=1e-6)

    flagged = model.predictions_csv(values, flag=True).splitlines()
    assert flagged[:10] == [",,,"] * 10
    flags = np.array([row.split(",")[-1] for row in flagged[10:]])
    assert set(flags) <= {"0", "1"}
    np.testing.assert_array_equal(flags == "1", scores[10:] < model.threshold)


def test_threshold_is_the_quantile_of_normal_scores():
    model = fitted(threshold_quantile=0.2)
    scores, _ = model.score(waves(400))
    # on normal data like the training data, about a fifth of the steps falls below it
    assert 0.05 < np.mean(scores[10:] < model.threshold) < 0.5


def test_wrong_input_is_refused():
    model = fitted()
    with pytest.raises(InputError, match="3 columns"):
        model.score(waves(50, d=3))
    with pytest.raises(InputError, match="at least 11"):
        model.score(waves(10))
    with pytest.raises(InputError, match="at least 21"):
        LstmAD(Params(**TINY)).fit(waves(20))


# -- artifact, resume, incremental training ------------------------------------------------------------------------

def test_artifact_round_trip_gives_identical_scores(tmp_path):
    model = fitted()
    model.save(tmp_path / "model")
    manifest = json.loads((tmp_path / "model" / "kfts-model.json").read_text())
    assert manifest["algorithm"] == "lstm-ad" and manifest["input_shape"] == {"series": 2}
    assert set(manifest["gaussian"]) >= {"mean", "covariance"} and manifest["threshold"] == model.threshold
    loaded = load_model(tmp_path / "model", device="cpu")
    values = waves(120, seed=3)
    np.testing.assert_array_equal(loaded.score(values)[0], model.score(values)[0])
    assert loaded.predictions_csv(values, flag=True) == model.predictions_csv(values, flag=True)


def test_checkpoint_resume_continues_where_a_killed_run_stopped(tmp_path, monkeypatch):
    params = Params(**{**TINY, "epochs": 4})
    train = waves(400)
    uninterrupted = LstmAD(params, device="cpu", seed=5).fit(train)

    save = training.Checkpoints.save

    def killed_after_epoch_2(self, state):
        save(self, state)
        if state["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(training.Checkpoints, "save", killed_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        LstmAD(Params(**{**TINY, "epochs": 4}), device="cpu", seed=5).fit(train, checkpoint_dir=tmp_path)
    monkeypatch.setattr(training.Checkpoints, "save", save)
    log = training.MetricLog()
    resumed = LstmAD(Params(**{**TINY, "epochs": 4}), device="cpu", seed=5).fit(train, checkpoint_dir=tmp_path,
                                                                               log=log)
    assert [h["epoch"] for h in log.history] == [3, 4]
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    for key, value in uninterrupted.network.state_dict().items():
        torch.testing.assert_close(resumed.network.state_dict()[key], value)
    with pytest.raises(InputError, match="different training run"):
        LstmAD(Params(**{**TINY, "epochs": 5}), device="cpu", seed=5).fit(train, checkpoint_dir=tmp_path)


def test_init_model_continues_from_the_previous_weights():
    previous = fitted()
    frozen = LstmAD(Params(**{**TINY, "epochs": 1, "lr": 1e-12, "hidden_size": 32}), device="cpu", seed=1)
    frozen.fit(waves(400, seed=2), init_model=previous)
    assert frozen.params.hidden_size == 8  # the previous architecture wins
    for key, value in previous.network.state_dict().items():
        torch.testing.assert_close(frozen.network.state_dict()[key], value)
    with pytest.raises(InputError, match="3 columns"):
        LstmAD(Params(**TINY), device="cpu").fit(waves(400, d=3), init_model=previous)


# -- the CLI, as a user runs it -------------------------------------------------------------------------------------

def test_cli_end_to_end_ranks_injected_anomalies_lowest(tmp_path, capsys):
    normal = waves(1600, d=2, seed=0)
    test = waves(600, d=2, seed=1)
    anomalies = [137, 402, 555]
    test[137] += 3.0          # a spike in both series
    test[402, 1] -= 3.0       # a dip in one series
    test[555, 0] -= 2.5
    labels = np.zeros(600, dtype=int)
    labels[anomalies] = 1
    train = write_csv(tmp_path / "train.csv", normal[:1200])
    valid = write_csv(tmp_path / "valid.csv", normal[1200:])
    data = write_csv(tmp_path / "test.csv", test)
    label_file = write_csv(tmp_path / "labels.csv", labels[:, None])
    model = tmp_path / "model"

    # training as a user runs it (a process of its own); the other commands in this process, to keep it fast
    result = run_cli("train", "lstm-ad", "--train", train, "--valid", valid, "--model-dir", model,
                     "--sequence-length", 20, "--hidden-size", 16, "--epochs", 25, "--seed", 0, check=True)
    epoch_lines = [line for line in result.stdout.splitlines() if line.startswith("epoch=")]
    assert len(epoch_lines) == 25
    assert epoch_lines[-1].startswith("epoch=25 train_loss=") and " valid_loss=" in epoch_lines[-1]

    assert main(["predict", "--model-dir", str(model), "--input", str(data), "--output", str(tmp_path / "out.csv"),
                 "--flag"]) == 0
    rows = (tmp_path / "out.csv").read_text().splitlines()
    assert len(rows) == 600 and rows[:20] == [",,,"] * 20
    scores = np.array([float(row.split(",")[0]) for row in rows[20:]])
    assert sorted(np.argsort(scores)[:3] + 20) == anomalies
    assert all(rows[i].endswith(",1") for i in anomalies)

    assert main(["evaluate", "--model-dir", str(model), "--input", str(data), "--labels", str(label_file),
                 "--output-dir", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["roc_auc"] == pytest.approx(1.0) and metrics["best_f1"] == pytest.approx(1.0)
    assert 0 < metrics["vus_pr"] <= 1 and metrics["range_recall"] == pytest.approx(1.0)
    assert "<img" in (tmp_path / "eval" / "report.html").read_text()

    assert main(["evaluate", "--model-dir", str(model), "--input", str(data),
                 "--output-dir", str(tmp_path / "eval2")]) == 0
    unlabeled = json.loads((tmp_path / "eval2" / "metrics.json").read_text())
    assert unlabeled["mse"] > 0 and unlabeled["mae"] > 0

    # bad input: one line naming the file, exit 2, nothing written
    def fails(*args) -> str:
        capsys.readouterr()
        assert main([str(a) for a in args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
        return err

    wrong = write_csv(tmp_path / "wrong.csv", waves(100, d=3))
    err = fails("predict", "--model-dir", model, "--input", wrong, "--output", tmp_path / "bad.csv")
    assert err.startswith(f"error: {wrong}: row 1:") and "3 columns" in err and not (tmp_path / "bad.csv").exists()
    short = write_csv(tmp_path / "short.csv", waves(20))
    err = fails("predict", "--model-dir", model, "--input", short, "--output", tmp_path / "bad.csv")
    assert err.startswith(f"error: {short}:") and "at least 21" in err
    err = fails("train", "lstm-ad", "--train", short, "--model-dir", tmp_path / "m2", "--sequence-length", 10)
    assert err.startswith("error: --train:") and "at least 21" in err and not (tmp_path / "m2").exists()
    no_anomaly = write_csv(tmp_path / "no_anomaly.csv", np.zeros((600, 1), dtype=int))
    err = fails("evaluate", "--model-dir", model, "--input", data, "--labels", no_anomaly,
                "--output-dir", tmp_path / "eval3")
    assert "all 0" in err and not (tmp_path / "eval3").exists()
