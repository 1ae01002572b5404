"""LSTM-AD: network shapes, the error Normal, output layout, artifact, resume, CLI end to end, bad input; the
paper scoring mode: its errors against a step-by-step computation, alignment invariance (in process and
through `kfts predict`), context rows, old artifacts."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest
import torch
from scipy import stats

from kfts.algorithms.lstm_ad.estimator import LstmAD, Params, fit_gaussian, log_density
from kfts.algorithms.lstm_ad.network import (
    LstmReconstructor,
    cut_sequences,
    input_sequences,
    window_targets,
)
from kfts.algorithms.lstm_ad.serving import context_rows
from kfts.cli import main
from kfts.core import training
from kfts.core.errors import InputError
from kfts.jobs.load import load_model

from helpers import predictions_csv, run_cli, write_csv

TINY = dict(num_layers=2, sequence_length=10, hidden_size=8, dropout=0.1, batch_size=16)
PAPER = dict(TINY, scoring="paper", prediction_length=4)  # the first score at row 10 + 4 - 1 = 13


def waves(n: int, d: int = 2, period: int = 20, seed: int = 0) -> np.ndarray:
    """d noisy, phase-shifted sines: normal behaviour the LSTM can learn in a few epochs."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    return (np.sin(2 * np.pi * t / period + np.arange(d)) + 0.05 * rng.normal(size=(n, d))).astype(np.float32)


def fitted(train=None, epochs=3, **params) -> LstmAD:
    model = LstmAD(Params(**{**TINY, "epochs": epochs, **params}), device="cpu", seed=0)
    return model.fit(waves(400) if train is None else train)


def assert_scores_close(actual, expected):
    """Scores of the same windows computed in other batches: float32 predictions may differ in the last
    bit, which the error Normal's Mahalanobis distance scales up by its smallest standard deviation."""
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-4)


def with_anomalies(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """waves with a spike, a dip in one series and a short flat stretch planted: (values, anomalous rows)."""
    values = waves(n, seed=seed)
    rows = [n // 4, n // 2, 3 * n // 4]
    values[rows[0]] += 3.0
    values[rows[1], 1] -= 3.0
    values[rows[2] : rows[2] + 5, 0] = values[rows[2], 0]
    return values, rows


@pytest.fixture(scope="module")
def paper_model() -> LstmAD:
    return LstmAD(Params(**{**PAPER, "epochs": 20, "batch_size": 4}), device="cpu", seed=0).fit(waves(600))


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


def test_paper_windows_target_the_steps_after_each_of_their_steps():
    values = torch.arange(40.0).reshape(20, 2)  # step t holds (2t, 2t + 1)
    inputs, targets = window_targets(values, torch.tensor([0, 7]), length=5, horizon=3)
    assert inputs.shape == (2, 5, 2) and targets.shape == (2, 5, 3 * 2)
    assert torch.equal(inputs[1], values[7:12])
    # window 1, its step 2 (= step 9): the next three steps 10, 11, 12, series by series within each step
    assert targets[1, 2].tolist() == [20.0, 21.0, 22.0, 23.0, 24.0, 25.0]
    net = LstmReconstructor(n_series=2, hidden_size=4, num_layers=1, dropout=0.0, horizon=3)
    assert net(inputs).shape == (2, 5, 6) and net(inputs, last_only=True).shape == (2, 6)


def test_params_are_validated():
    for name, bad in (
        ("dropout", 1.0),
        ("sequence_length", 0),
        ("error_fraction", 1.0),
        ("threshold_quantile", 0),
        ("lr", -1.0),
        ("precision", "int8"),
    ):
        with pytest.raises(InputError, match=f"--{name.replace('_', '-')} must be"):
            Params(**{name: bad})
    assert Params(dropout=0.0).dropout == 0.0  # no dropout is allowed, unlike no error-fit part


# -- the Normal of the errors --------------------------------------------------------------------------------------


def test_gaussian_fit_and_log_density_match_numpy_and_scipy():
    rng = np.random.default_rng(0)
    errors = rng.multivariate_normal([0.5, -1.0, 0.0], [[1.0, 0.3, 0.1], [0.3, 2.0, -0.4], [0.1, -0.4, 0.5]], size=500)
    mean, covariance, ridge = fit_gaussian(errors)
    assert ridge == 0.0
    np.testing.assert_allclose(mean, errors.mean(axis=0))
    np.testing.assert_allclose(covariance, np.cov(errors.T, bias=True))  # maximum likelihood: divided by n
    points = rng.normal(size=(50, 3)) * 3
    expected = stats.multivariate_normal(mean, covariance).logpdf(points)
    np.testing.assert_allclose(log_density(torch.from_numpy(points), mean, covariance).numpy(), expected, rtol=1e-10)


def test_singular_covariance_is_regularised():
    rng = np.random.default_rng(0)
    a = rng.normal(size=200)
    for errors in (
        np.stack([a, a], axis=1),  # two identical series
        np.stack([a, np.zeros(200)], axis=1),  # a series reconstructed without error
        np.zeros((200, 2)),
    ):  # everything reconstructed without error
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

    rows = predictions_csv(model, values).splitlines()
    assert len(rows) == 73 and rows[:10] == [",,"] * 10
    fields = np.array([row.split(",") for row in rows[10:]], dtype=np.float64)
    np.testing.assert_allclose(fields[:, 0], scores[10:], rtol=1e-12)
    np.testing.assert_allclose(fields[:, 1:], reconstructions[10:], rtol=1e-6)

    flagged = predictions_csv(model, values, flag=True).splitlines()
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
    paper = fitted(**PAPER)
    with pytest.raises(InputError, match="sequence-length 10 and prediction-length 4 at least 14"):
        paper.score(waves(13))
    with pytest.raises(InputError, match="at least 15"):  # one window, its 4 steps ahead, one step to fit on
        LstmAD(Params(**PAPER)).fit(waves(14))
    with pytest.raises(InputError, match="context rows"):
        paper.score(waves(30), context_rows=30)


# -- paper scoring ----------------------------------------------------------------------------------------------


def test_paper_errors_are_those_of_each_window_computed_alone(paper_model):
    """The batched scoring against a step-by-step reading of the method: the error vector of step t holds,
    for j = 1..l, x[t] minus the j-steps-ahead prediction of the window of the L steps ending at t - j."""
    model, L, l = paper_model, 10, 4  # noqa: E741 - the paper's L and l
    values, _ = with_anomalies(60, seed=4)
    scores, predictions = model.score(values)
    x = (values - np.float32(model.scaler["mean"])) / np.float32(model.scaler["std"])
    with torch.no_grad():
        ahead = {
            s: model.network(torch.from_numpy(x[s - L + 1 : s + 1])[None], last_only=True).reshape(l, 2)
            for s in range(L - 1, len(x) - 1)
        }
    expected = [np.nan] * (L + l - 1)
    for t in range(L + l - 1, len(x)):
        errors = torch.stack([torch.from_numpy(x[t]) - ahead[t - j][j - 1] for j in range(1, l + 1)])
        expected.append(
            float(
                log_density(
                    errors.reshape(1, -1), np.asarray(model.gaussian["mean"]), np.asarray(model.gaussian["covariance"])
                )[0]
            )
        )
        one_ahead = ahead[t - 1][0].numpy() * np.float32(model.scaler["std"]) + np.float32(model.scaler["mean"])
        np.testing.assert_allclose(predictions[t], one_ahead, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-4)  # NaN where expected is NaN
    assert np.isnan(predictions[: L + l - 1]).all()
    assert len(model.gaussian["mean"]) == l * 2  # one Normal over the l x d errors


def test_paper_scores_do_not_depend_on_where_the_input_starts(paper_model):
    values, anomalies = with_anomalies(700, seed=1)
    first = paper_model.first_scored
    scores, predictions = paper_model.score(values)
    # the lowest scores are at the planted anomalies, or while one is in the windows that predict a step
    lowest = np.argsort(scores[first:])[:6] + first
    assert all(any(a <= row <= a + 5 + first for a in anomalies) for row in lowest), lowest
    assert {anomalies[0], anomalies[1]} <= set(lowest)
    for k in (1, 7, 10, 29, 333):
        shifted, shifted_predictions = paper_model.score(values[k:])
        assert_scores_close(shifted[first:], scores[k + first :])
        np.testing.assert_allclose(shifted_predictions[first:], predictions[k + first :], rtol=1e-6, atol=1e-6)
        assert np.isnan(shifted[:first]).all()


def test_kfts_predict_paper_scores_do_not_depend_on_where_the_file_starts(tmp_path, paper_model):
    """`kfts predict` as a user runs it, on a file and on the same file without its first k rows."""
    paper_model.save(tmp_path / "model")
    values, anomalies = with_anomalies(900, seed=7)
    first = paper_model.first_scored

    def predicted(k: int) -> np.ndarray:
        data = write_csv(tmp_path / f"from-{k}.csv", values[k:])
        run_cli(
            "predict",
            "--model-dir",
            tmp_path / "model",
            "--input",
            data,
            "--output",
            tmp_path / "out.csv",
            "--flag",
            "--device",
            "cpu",
            check=True,
        )
        rows = (tmp_path / "out.csv").read_text().splitlines()
        assert len(rows) == 900 - k and rows[:first] == [",,,"] * first
        return np.array([row.split(",") for row in rows[first:]], dtype=np.float64)

    whole = predicted(0)
    assert {anomalies[0], anomalies[1]} <= set(np.argsort(whole[:, 0])[:6] + first)
    for k in (1, 7, 30):
        shifted = predicted(k)
        assert_scores_close(shifted[:, 0], whole[k:, 0])
        np.testing.assert_allclose(shifted[:, 1:3], whole[k:, 1:3], rtol=1e-6, atol=1e-6)
        assert np.array_equal(shifted[:, 3], whole[k:, 3])  # the same flags


def test_seed_scores_move_with_the_sequence_alignment():
    """What README says of seed scoring: a shift by whole sequences keeps the scores, any other changes them."""
    model = fitted()
    values, _ = with_anomalies(400, seed=2)
    scores, _ = model.score(values)
    assert_scores_close(model.score(values[30:])[0][10:], scores[40:])
    moved = model.score(values[7:])[0][10:] - scores[17:]
    assert np.abs(moved).max() > 0.1


def parse_csv(text: str) -> np.ndarray:
    return np.array([[float(v) if v else np.nan for v in line.split(",")] for line in text.splitlines()])


def test_context_rows_answer_only_the_rows_after_them(paper_model):
    """Chunks sent with the last first_scored rows of the one before as context: together, the answer for
    the whole series (to rounding: a forward pass of other windows may round differently)."""
    values, _ = with_anomalies(500, seed=3)
    whole = parse_csv(predictions_csv(paper_model, values, flag=True))
    context = paper_model.first_scored
    pieces = [predictions_csv(paper_model, values[:120], flag=True)]
    for start, end in ((120, 121), (121, 300), (300, 500)):
        pieces.append(predictions_csv(paper_model, values[start - context : end], flag=True, context_rows=context))
    assert [piece.count("\n") for piece in pieces] == [120, 1, 179, 200]
    chunked = parse_csv("".join(pieces))
    assert_scores_close(chunked[:, 0], whole[:, 0])
    np.testing.assert_allclose(chunked[:, 1:], whole[:, 1:], rtol=1e-6, atol=1e-6)
    scores, predictions = paper_model.score(values[100:200], context_rows=40)
    assert scores.shape == (60,) and predictions.shape == (60, 2) and np.isfinite(scores).all()


def test_context_rows_are_read_from_text_or_numbers():
    assert context_rows(13) == 13 and context_rows(" 0 ") == 0
    for bad in ("-1", "2.5", 2.5, "abc", True, "", "\u00b2"):
        with pytest.raises(InputError, match="context rows must be a whole number"):
            context_rows(bad)


def test_the_predictor_scores_chunks_sent_with_context_as_the_whole_series(tmp_path, paper_model):
    """The in-process KServe model: consecutive chunks, each led by the rows before it marked as context
    (V2 parameter context_rows; V1 and CSV header kfts-context-rows), answer what the whole series gets."""
    import asyncio

    from kserve.errors import InvalidInput
    from kserve.protocol.infer_type import InferInput, InferRequest

    from kfts.serving.model import KftsModel

    paper_model.save(tmp_path / "model")
    predictor = KftsModel("detector", str(tmp_path / "model"), device="cpu")
    predictor.load()
    values, _ = with_anomalies(400, seed=8)
    whole = parse_csv(predictions_csv(paper_model, values, flag=True))
    first = paper_model.first_scored

    def v2(rows, context):
        tensor = InferInput("input-0", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows, binary_data=False)
        request = InferRequest("detector", [tensor], parameters={"context_rows": context})
        outputs = {o.name: o.as_numpy() for o in asyncio.run(predictor.predict(request, {}, {})).outputs}
        return np.column_stack([outputs["score"], outputs["reconstruction"], outputs["anomaly"]])

    def v1(rows, context):
        answer = asyncio.run(predictor.predict({"instances": rows.tolist()}, {"kfts-context-rows": str(context)}, {}))
        return np.array(
            [
                [np.nan] * 4 if p["score"] is None else [p["score"], *p["reconstruction"], p["anomaly"]]
                for p in orjson.loads(answer)["predictions"]
            ]
        )

    def csv(rows, context):
        body = "".join(",".join(map(repr, row)) + "\n" for row in rows.tolist()).encode()
        headers = {"content-type": "text/csv", "kfts-context-rows": str(context), "kfts-flag": "true"}
        return parse_csv(asyncio.run(predictor.predict(body, headers, {})))

    for ask in (v2, v1, csv):
        pieces = []
        for start, end in ((0, 150), (150, 151), (151, 290), (290, 400)):
            lead = min(start, first)
            pieces.append(ask(values[start - lead : end], lead))
            assert len(pieces[-1]) == end - start
        answered = np.concatenate(pieces)
        assert_scores_close(answered[:, 0], whole[:, 0])
        np.testing.assert_allclose(answered[:, 1:3], whole[:, 1:3], rtol=1e-6, atol=1e-6)
        assert np.array_equal(answered[first:, 3], whole[first:, 3])
    with pytest.raises(InvalidInput, match="context rows must be at least 0 and fewer than the 20 rows"):
        v1(values[:20], 20)
    with pytest.raises(InvalidInput, match="context rows must be a whole number"):
        v1(values[:100], "x")


def test_seed_mode_ignores_the_prediction_length():
    values = waves(200, seed=5)
    a, b = fitted(prediction_length=1), fitted(prediction_length=7)
    assert predictions_csv(a, values) == predictions_csv(b, values)


def test_paper_training_learns_to_predict_and_calibrates_its_threshold(paper_model):
    untrained = LstmAD(Params(**{**PAPER, "epochs": 1, "lr": 1e-9}), device="cpu", seed=0).fit(waves(600))
    assert paper_model.metrics["train_loss"] < 0.5 * untrained.metrics["train_loss"]
    assert paper_model.history[-1]["train_loss"] < paper_model.history[0]["train_loss"]
    scores, _ = paper_model.score(waves(600, seed=6))
    assert 0.001 < np.mean(scores[13:] < paper_model.threshold) < 0.1  # threshold-quantile 0.01


# -- artifact, resume, incremental training ------------------------------------------------------------------------


def test_fit_leaves_torchs_thread_count_as_it_found_it(monkeypatch):
    """Training may choose one thread, where that is faster (_choose_threads); the caller's setting is theirs."""
    monkeypatch.setattr(LstmAD, "_choose_threads", lambda self, *args: torch.set_num_threads(1))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fitted(epochs=1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_artifact_round_trip_gives_identical_scores(tmp_path):
    model = fitted()
    model.save(tmp_path / "model")
    manifest = json.loads((tmp_path / "model" / "kfts-model.json").read_text())
    assert manifest["algorithm"] == "lstm-ad" and manifest["input_shape"] == {"series": 2}
    assert set(manifest["gaussian"]) >= {"mean", "covariance"} and manifest["threshold"] == model.threshold
    loaded = load_model(tmp_path / "model", device="cpu")
    values = waves(120, seed=3)
    np.testing.assert_array_equal(loaded.score(values)[0], model.score(values)[0])
    assert predictions_csv(loaded, values, flag=True) == predictions_csv(model, values, flag=True)


def test_the_artifact_records_the_scoring_mode_and_old_artifacts_load_as_seed(tmp_path, paper_model):
    paper_model.save(tmp_path / "paper")
    manifest = json.loads((tmp_path / "paper" / "kfts-model.json").read_text())
    assert manifest["hyperparameters"]["scoring"] == "paper"
    assert manifest["hyperparameters"]["prediction_length"] == 4
    values = waves(120, seed=3)
    assert predictions_csv(load_model(tmp_path / "paper", device="cpu"), values) == predictions_csv(paper_model, values)

    seed = fitted()
    seed.save(tmp_path / "old")
    manifest = json.loads((tmp_path / "old" / "kfts-model.json").read_text())
    for name in ("scoring", "prediction_length"):  # an artifact written before there were scoring modes
        del manifest["hyperparameters"][name]
    (tmp_path / "old" / "kfts-model.json").write_text(json.dumps(manifest))
    old = load_model(tmp_path / "old", device="cpu")
    assert old.params.scoring == "seed"
    assert predictions_csv(old, values, flag=True) == predictions_csv(seed, values, flag=True)


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
    resumed = LstmAD(Params(**{**TINY, "epochs": 4}), device="cpu", seed=5).fit(train, checkpoint_dir=tmp_path, log=log)
    assert [h["epoch"] for h in log.history] == [3, 4]
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    for key, value in uninterrupted.network.state_dict().items():
        torch.testing.assert_close(resumed.network.state_dict()[key], value)
    with pytest.raises(InputError, match="different training run"):
        LstmAD(Params(**{**TINY, "epochs": 5}), device="cpu", seed=5).fit(train, checkpoint_dir=tmp_path)


def test_paper_training_is_reproducible_and_resumes(tmp_path, monkeypatch):
    train = waves(400)
    runs = [LstmAD(Params(**{**PAPER, "epochs": 3}), device="cpu", seed=5) for _ in range(2)]
    save = training.Checkpoints.save

    def killed_after_epoch_1(self, state):
        save(self, state)
        if state["epoch"] == 1:
            raise KeyboardInterrupt

    runs[0].fit(train)
    monkeypatch.setattr(training.Checkpoints, "save", killed_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        runs[1].fit(train, checkpoint_dir=tmp_path)
    monkeypatch.setattr(training.Checkpoints, "save", save)
    runs[1].fit(train, checkpoint_dir=tmp_path)
    for key, value in runs[0].network.state_dict().items():
        torch.testing.assert_close(runs[1].network.state_dict()[key], value)


def test_init_model_continues_from_the_previous_weights():
    previous = fitted()
    given = Params(**{**TINY, "epochs": 1, "lr": 1e-12, "hidden_size": 32})
    frozen = LstmAD(given, device="cpu", seed=1)
    frozen.fit(waves(400, seed=2), init_model=previous)
    assert frozen.params.hidden_size == 8  # the previous architecture wins
    assert given.hidden_size == 32  # in a copy: the caller's Params are left as they were
    paper = LstmAD(Params(**{**PAPER, "epochs": 1, "prediction_length": 2}), device="cpu", seed=1)
    assert paper.fit(waves(400), init_model=previous).params.scoring == "seed"  # and its scoring mode
    for key, value in previous.network.state_dict().items():
        torch.testing.assert_close(frozen.network.state_dict()[key], value)
    with pytest.raises(InputError, match="3 columns"):
        LstmAD(Params(**TINY), device="cpu").fit(waves(400, d=3), init_model=previous)


# -- the CLI, as a user runs it -------------------------------------------------------------------------------------


def test_cli_end_to_end_ranks_injected_anomalies_lowest(tmp_path, capsys):
    normal = waves(1600, d=2, seed=0)
    test = waves(600, d=2, seed=1)
    anomalies = [137, 402, 555]
    test[137] += 3.0  # a spike in both series
    test[402, 1] -= 3.0  # a dip in one series
    test[555, 0] -= 2.5
    labels = np.zeros(600, dtype=int)
    labels[anomalies] = 1
    train = write_csv(tmp_path / "train.csv", normal[:1200])
    valid = write_csv(tmp_path / "valid.csv", normal[1200:])
    data = write_csv(tmp_path / "test.csv", test)
    label_file = write_csv(tmp_path / "labels.csv", labels[:, None])
    model = tmp_path / "model"

    # training as a user runs it (a process of its own); the other commands in this process, to keep it fast
    result = run_cli(
        "train",
        "lstm-ad",
        "--train",
        train,
        "--valid",
        valid,
        "--model-dir",
        model,
        "--sequence-length",
        20,
        "--hidden-size",
        16,
        "--epochs",
        25,
        "--seed",
        0,
        check=True,
    )
    epoch_lines = [line for line in result.stdout.splitlines() if line.startswith("epoch=")]
    assert len(epoch_lines) == 25
    assert epoch_lines[-1].startswith("epoch=25 train_loss=") and " valid_loss=" in epoch_lines[-1]

    assert (
        main(
            [
                "predict",
                "--model-dir",
                str(model),
                "--input",
                str(data),
                "--output",
                str(tmp_path / "out.csv"),
                "--flag",
            ]
        )
        == 0
    )
    rows = (tmp_path / "out.csv").read_text().splitlines()
    assert len(rows) == 600 and rows[:20] == [",,,"] * 20
    scores = np.array([float(row.split(",")[0]) for row in rows[20:]])
    assert sorted(np.argsort(scores)[:3] + 20) == anomalies
    assert all(rows[i].endswith(",1") for i in anomalies)

    assert (
        main(
            [
                "evaluate",
                "--model-dir",
                str(model),
                "--input",
                str(data),
                "--labels",
                str(label_file),
                "--output-dir",
                str(tmp_path / "eval"),
            ]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["roc_auc"] == pytest.approx(1.0) and metrics["best_f1"] == pytest.approx(1.0)
    assert 0 < metrics["vus_pr"] <= 1 and metrics["range_recall"] == pytest.approx(1.0)
    assert "<img" in (tmp_path / "eval" / "report.html").read_text()

    assert (
        main(["evaluate", "--model-dir", str(model), "--input", str(data), "--output-dir", str(tmp_path / "eval2")])
        == 0
    )
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
    err = fails(
        "evaluate", "--model-dir", model, "--input", data, "--labels", no_anomaly, "--output-dir", tmp_path / "eval3"
    )
    assert "all 0" in err and not (tmp_path / "eval3").exists()
