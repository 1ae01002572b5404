"""LSTM-AD anomaly detector: fit / score on arrays, save / load as a kfts model artifact.

The network itself is in network.py beside this file. This module owns the recipe around it, in two scoring modes
(the `scoring` hyperparameter):

- seed (the default, the reference product's): the series is cut into non-overlapping sequences of L steps, each
  reconstructing the next one. A step's error vector is its d reconstruction errors. The sequences start at
  the input's first row, so a step's error depends on its position in its sequence (the reconstruction at a
  sequence's first step has seen one step of its input, at the last step all L): the same data started at
  another row gets other scores.
- paper (Malhotra et al. 2015): at every step t the network reads the window of the last L values and
  predicts the next l (prediction_length) values of every series. Step t is then predicted l times, from the
  windows ending at t-1, ..., t-l; its error vector holds those l x d errors. A score depends only on the
  L + l - 1 steps before it and the step itself, wherever the input starts, so a stream can be scored in
  pieces that each carry that many rows of context (`context_rows`). The first L + l - 1 rows get no score.

Common to both:

- The training series is split chronologically: the first part (1 - error_fraction) trains the LSTM, the
  second part is only predicted, and a multivariate Normal (mean vector, full covariance, maximum
  likelihood) is fitted to its error vectors. The scaling (per series mean and standard deviation) is fitted
  on the first part. In seed mode the split falls on a sequence boundary.
- The normality score of a time step is the log-likelihood of its error vector under that Normal: lower =
  more anomalous. Errors are taken in scaled units, so no series dominates by its units alone.
- A decision threshold, the `threshold_quantile` quantile of the scores of the error-fit part (normal data the
  LSTM never trained on), flags anomalies (`kfts predict --flag`).
- A near-singular error covariance (a constant series, two identical series) gets a small ridge on its diagonal,
  and the log says so: the scores stay finite.

Precision: on GPUs the LSTM trains under fp16 autocast with loss scaling (the precision cuDNN's autocast LSTM
runs in); on CPUs in fp32, where bf16 LSTMs measured slower. Reconstructions for scoring are always computed
in fp32: a score is the density of small errors, and half-precision outputs would add noise of their size.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import asdict

import numpy as np
import torch

from kfts.algorithms.lstm_ad.network import LstmReconstructor, cut_sequences, input_sequences, window_targets, windows
from kfts.algorithms.lstm_ad.params import LstmADParams
from kfts.core import artifact, training_loop
from kfts.core.errors import InputError, check_fitted
from kfts.core.training import MetricLog, resolve_device, resolve_precision, standardize
from kfts.core.training_loop import Task, Trainer

ALGORITHM = "lstm-ad"
Params = LstmADParams  # the estimator's hyperparameters, importable beside it
SCORE_BATCH = 512  # sequences (seed) or windows (paper) per forward pass when scoring: keeps the cores busy
# Covariance regularisation: eigenvalues are raised to at least RCOND times the largest one, and at least
# MIN_VARIANCE in scaled units (where every series has unit variance), before the Normal is used.
RCOND = 1e-6
MIN_VARIANCE = 1e-12


class LstmAD:
    """An LSTM-AD anomaly detector: scores every time step of a multivariate series by a log-likelihood.

    fit() or from_artifact() sets the fitted attributes: network, n_series, scaler ({"mean": [d], "std": [d]},
    input units), gaussian ({"mean", "covariance", "ridge"} of the error vectors, scaled units), threshold,
    history, metrics, and device_ (the torch device `device` resolved to). fit() never changes the Params it
    was given: continuing from an init_model, `params` becomes a copy with that model's architecture.
    """

    algorithm = ALGORITHM
    Params = LstmADParams
    # fitted attributes that fit() resets first; None: not fitted (kfts.core.errors.check_fitted)
    network: LstmReconstructor | None
    n_series: int | None
    threshold: float | None

    def __init__(self, params: LstmADParams | None = None, *, device: str = "auto", seed: int | None = None):
        self.params = params if params is not None else LstmADParams()
        self.device = device
        self.seed = seed

    @property
    def first_scored(self) -> int:
        """The first row that gets a score: seed, after the first sequence (L); paper, the first with all l
        predictions from full windows (L + l - 1)."""
        p = self.params
        return p.sequence_length if p.scoring == "seed" else p.sequence_length + p.prediction_length - 1

    def _scale(self, values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(standardize(values, self.scaler["mean"], self.scaler["std"]))

    def _check_values(self, values: np.ndarray, what: str, min_rows: int) -> np.ndarray:
        values = np.asarray(values, dtype=np.float32)
        if values.ndim != 2:
            raise InputError(f"expected [time steps, series], got shape {list(values.shape)}", path=what)
        if getattr(self, "n_series", None) is not None and values.shape[1] != self.n_series:
            raise InputError(f"has {values.shape[1]} columns (series), the model has {self.n_series}", path=what)
        if len(values) < min_rows:
            p = self.params
            setting = (
                f"sequence-length {p.sequence_length}"
                if p.scoring == "seed"
                else f"sequence-length {p.sequence_length} and prediction-length {p.prediction_length}"
            )
            raise InputError(f"has {len(values)} time steps; with {setting} at least {min_rows} are needed", path=what)
        return values

    # -- training --------------------------------------------------------------------------------------------

    def fit(
        self,
        train: np.ndarray,
        valid: np.ndarray | None = None,
        *,
        init_model: LstmAD | None = None,
        checkpoint_dir=None,
        log: MetricLog | None = None,
    ) -> LstmAD:
        threads = torch.get_num_threads()
        try:
            return self._fit(train, valid, init_model=init_model, checkpoint_dir=checkpoint_dir, log=log)
        finally:  # training may have chosen one thread (_choose_threads): the caller's setting is theirs
            torch.set_num_threads(threads)

    def _fit(self, train, valid, *, init_model, checkpoint_dir, log) -> LstmAD:
        # under torchrun: data-parallel over the sequences, every process with the whole model (kfts.core.distributed)
        trainer = Trainer(self.device, self.seed, checkpoint_dir=checkpoint_dir, log=log)
        self.device_, world = trainer.device, trainer.world
        self.network, self.n_series, self.threshold, self.history, self.metrics = None, None, None, [], {}
        if init_model is not None:
            self._continue_from(init_model)
        p = self.params
        # seed: more than two sequences, at least one training pair and one step to fit the errors on;
        # paper: one window with its l steps ahead, and one step to fit the errors on
        train = self._check_values(train, "--train", self._split_min() + 1)
        self.n_series = train.shape[1]
        split = self._split(len(train))
        if init_model is None:
            part = train[:split].astype(np.float64)
            self.scaler = {
                "mean": part.mean(axis=0).tolist(),
                "std": [s if s > 0 else 1.0 for s in part.std(axis=0).tolist()],
            }
        x = self._scale(train)
        valid_x = (
            self._scale(self._check_values(valid, "--valid", self.first_scored + 1)) if valid is not None else None
        )
        L = p.sequence_length
        pieces = (
            f"{split // L - 1} sequence pairs"
            if p.scoring == "seed"
            else f"windows of {L} steps predicting {p.prediction_length} ahead"
        )
        trainer.say(
            f"lstm-ad: {split} time steps train the LSTM ({pieces}), {len(train) - split} fit the error "
            "distribution" + (f"; {world.size} processes share every batch" if world.size > 1 else "")
        )
        task = _Reconstruction(self, x[:split], valid_x)
        if world.size == 1:  # under torchrun the node's processes share its cores evenly (use_cpu_share)
            self._choose_threads(task)
        trained = trainer.train(
            task,
            fingerprint={
                "algorithm": ALGORITHM,
                "params": asdict(p),
                "seed": self.seed,
            },
            data=[x, valid_x],
        )
        self.network = self._new_network()
        self.network.load_state_dict(trained.state)
        self.network.eval()
        self.history = trained.history
        self._fit_gaussian(x[split - self.first_scored :])
        # in inference mode, the figures the artifact, KFP and Katib report
        self.metrics = {"train_loss": self._mse(x[:split])}
        if valid_x is not None:
            self.metrics["valid_loss"] = self._mse(valid_x)
        trainer.report(self.metrics)
        return self

    def _choose_threads(self, task: _Reconstruction) -> None:
        """CPU threads for this process: all cores, or one where that is faster.

        An LSTM step is a chain of small matrix products, one per time step, and every one of them waits for
        all threads: on a busy machine (a shared node, a pod over its CPU share) that is several times slower
        than one thread. Timing a few real training steps both ways decides. It may draw on torch's random
        numbers: the training loop seeds them afterwards.
        """
        cores = torch.get_num_threads()
        if self.device_.type != "cpu" or cores == 1:
            return
        net = self._new_network().train()
        optimizer = task.optimizer(net)
        # a batch drawn with a generator of its own: the seeded training draws the same numbers
        inputs, targets = next(self._batches(task.x, torch.Generator()))
        xb, yb = inputs[: self.params.batch_size], targets[: self.params.batch_size]

        def seconds_per_step(threads: int) -> float:
            torch.set_num_threads(threads)
            times = []
            for _ in range(3):
                start = time.perf_counter()
                training_loop.step(task, net, optimizer, xb, yb)
                times.append(time.perf_counter() - start)
            return min(times[1:])  # the first step pays one-time setup

        many, one = seconds_per_step(cores), seconds_per_step(1)
        chosen = cores if many < one else 1
        torch.set_num_threads(chosen)
        print(
            f"threads=auto: a training step takes {many:.3f}s on {cores} threads, {one:.3f}s on 1: using {chosen}",
            flush=True,
        )

    def _training_dtype(self) -> torch.dtype | None:
        if self.params.precision == "auto":
            # CPUs: bf16 LSTMs measured slower than fp32, even with native bf16. GPUs: autocast runs cuDNN
            # LSTMs in fp16 whatever dtype it is given, so fp16 it is, with loss scaling.
            return torch.float16 if self.device_.type == "cuda" else None
        return resolve_precision(self.params.precision, self.device_)

    def _split_min(self) -> int:
        """The shortest LSTM part: seed, two sequences (one training pair); paper, one window and the l steps
        after it."""
        p = self.params
        return 2 * p.sequence_length if p.scoring == "seed" else p.sequence_length + p.prediction_length

    def _split(self, n_steps: int) -> int:
        """End of the LSTM's part, leaving at least one step (seed: a whole number of sequences)."""
        part = int(n_steps * (1 - self.params.error_fraction))
        if self.params.scoring == "seed":
            part = part // self.params.sequence_length * self.params.sequence_length
        return max(self._split_min(), part)

    def _batches(self, x: torch.Tensor, generator: torch.Generator):
        """One epoch of training batches (inputs, targets) from the LSTM's part x, in random order.

        seed: every pair of consecutive sequences. paper: windows of L steps, each of whose outputs predicts
        the l steps after it, laid end to end from a random offset, so that every step is a target once an
        epoch and, over the epochs, no alignment is special."""
        p = self.params
        L = p.sequence_length
        if p.scoring == "seed":
            inputs, targets = cut_sequences(x, L)
            order = torch.randperm(len(inputs), generator=generator)
            for i in range(0, len(order), p.batch_size):
                idx = order[i : i + p.batch_size]
                yield inputs[idx], targets[idx]
            return
        l = p.prediction_length  # noqa: E741 - the paper's l, beside its L
        last = len(x) - L - l  # the last window start whose targets are all in x
        offset = int(torch.randint(min(L, last + 1), (1,), generator=generator))
        starts = torch.arange(offset, last + 1, L)
        starts = starts[torch.randperm(len(starts), generator=generator)]
        for i in range(0, len(starts), p.batch_size):
            yield window_targets(x, starts[i : i + p.batch_size], L, l)

    def _new_network(self) -> LstmReconstructor:
        p = self.params
        assert self.n_series is not None  # set, from the data or a model, before a network is built
        return LstmReconstructor(
            self.n_series,
            p.hidden_size,
            p.num_layers,
            p.dropout,
            horizon=1 if p.scoring == "seed" else p.prediction_length,
        )

    def _continue_from(self, previous: LstmAD) -> None:
        """Incremental training: the previous artifact's weights and scaling; its architecture (and scoring
        mode, which decides the network's outputs) wins."""
        p, q = self.params, previous.params
        if (p.num_layers, p.hidden_size, p.scoring) != (q.num_layers, q.hidden_size, q.scoring) or (
            p.scoring == q.scoring == "paper" and p.prediction_length != q.prediction_length
        ):
            print(
                f"init-model: keeping its architecture (num-layers {q.num_layers}, hidden-size "
                f"{q.hidden_size}, scoring {q.scoring}"
                + (f", prediction-length {q.prediction_length})" if q.scoring == "paper" else ")"),
                flush=True,
            )
        self.params = dataclasses.replace(
            p,
            num_layers=q.num_layers,
            hidden_size=q.hidden_size,
            scoring=q.scoring,
            prediction_length=q.prediction_length if q.scoring == "paper" else p.prediction_length,
        )
        self.n_series, self.scaler = previous.n_series, dict(previous.scaler)
        assert previous.network is not None  # a loaded model
        network = self._new_network()
        network.load_state_dict(previous.network.state_dict())
        self.network = network

    def _fit_gaussian(self, x: torch.Tensor) -> None:
        """The Normal of the error vectors of the error-fit part (x: that part led by the first_scored steps
        before it, scaled), and the flag threshold from their scores."""
        errors = self._errors(x).double().numpy()
        mean, covariance, ridge = fit_gaussian(errors)
        if ridge:
            print(
                f"gaussian: the error covariance is near-singular (eigenvalues down to "
                f"{np.linalg.eigvalsh(covariance - ridge * np.eye(len(mean))).min():.3g}): added {ridge:.3g} "
                "to its diagonal",
                flush=True,
            )
        self.gaussian = {"mean": mean.tolist(), "covariance": covariance.tolist(), "ridge": ridge}
        scores = self._normal()(torch.from_numpy(errors)).numpy()
        self.threshold = float(np.quantile(scores, self.params.threshold_quantile))

    # -- scoring ---------------------------------------------------------------------------------------------

    @torch.no_grad()
    def _predict(self, x: torch.Tensor, network: LstmReconstructor | None = None):
        """Scaled [T, d] (T > first_scored) -> the rows first_scored..T-1 in order, in blocks of (error vectors
        [n, k], one-step-ahead predictions [n, d]), fp32 on the CPU. k = d (seed) or l x d (paper: the errors
        of the predictions made 1, 2, ..., l steps before, in that order).

        Seed: one block. Paper: one block per forward pass of SCORE_BATCH windows, which keeps the l x d
        errors of only that many rows in memory; the l - 1 windows before a pass are carried over to it."""
        network = network or self.network
        assert network is not None  # training, or check_fitted: the model is fitted
        was_training = network.training
        model = network.to(self.device_).eval()
        L, d = self.params.sequence_length, x.shape[1]
        try:
            if self.params.scoring == "seed":
                inputs = input_sequences(x, L)
                out = [
                    model(inputs[i : i + SCORE_BATCH].to(self.device_)).float().cpu()
                    for i in range(0, len(inputs), SCORE_BATCH)
                ]
                predictions = torch.cat(out).reshape(-1, d)[: len(x) - L]
                yield x[L:] - predictions, predictions
                return
            l = self.params.prediction_length  # noqa: E741 - the paper's l, beside its L
            inputs = windows(x[:-1], L)  # window w ends at step L - 1 + w and predicts steps L + w .. L + w + l - 1
            ahead = torch.empty(0, l, d)  # the predictions of windows start, start + 1, ...
            start = 0
            for i in range(0, len(inputs), SCORE_BATCH):
                out = model(inputs[i : i + SCORE_BATCH].to(self.device_), last_only=True).float().cpu()
                ahead = torch.cat([ahead, out.reshape(-1, l, d)])
                # the rows all of whose l predictions are in: step t's j-steps-ahead one (j = 1..l) is
                # window t - L - j + 1's, ahead[t - L - j + 1 - start]
                first = start + L + l - 1
                n = len(ahead) - (l - 1)
                if n > 0:
                    errors = torch.stack(
                        [x[first : first + n] - ahead[l - j : l - j + n, j - 1] for j in range(1, l + 1)], dim=1
                    )
                    yield errors.reshape(n, l * d), ahead[l - 1 :, 0]
                    ahead, start = ahead[n:], start + n
        finally:
            network.train(was_training)

    def _errors(self, x: torch.Tensor, network: LstmReconstructor | None = None) -> torch.Tensor:
        return torch.cat([errors for errors, _ in self._predict(x, network)])

    def _mse(self, x: torch.Tensor, network: LstmReconstructor | None = None) -> float:
        """Mean squared error of the predictions (paper: of all l predictions of every step)."""
        errors = self._errors(x, network)
        return torch.nn.functional.mse_loss(errors, torch.zeros_like(errors)).item()

    def _normal(self) -> Normal:
        return Normal(np.asarray(self.gaussian["mean"]), np.asarray(self.gaussian["covariance"]))

    def check_scorable(self, values: np.ndarray, where: str = "input") -> np.ndarray:
        """values as float32 [T, d], refused (an InputError naming `where`) unless score() can score them: the
        model's number of series, and more rows than come before the first score."""
        check_fitted(self)
        return self._check_values(values, where, self.first_scored + 1)

    def score(self, values: np.ndarray, context_rows: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(scores [T] float64, reconstructions [T, d] float32 in input units); NaN for the rows before
        first_scored. The first `context_rows` rows are context only: read, but left out of the answer (the
        arrays then cover the rows context_rows..T-1)."""
        values = self.check_scorable(values)
        first = self.first_scored
        if not 0 <= context_rows < len(values):
            raise InputError(
                f"context rows must be at least 0 and fewer than the {len(values)} rows sent, not {context_rows}"
            )
        mean = np.asarray(self.scaler["mean"], dtype=np.float32)
        std = np.asarray(self.scaler["std"], dtype=np.float32)
        scores = np.full(len(values), np.nan)
        reconstructions = np.full(values.shape, np.nan, dtype=np.float32)
        row, normal = first, self._normal()
        for errors, predictions in self._predict(self._scale(values)):
            scores[row : row + len(errors)] = normal(errors).numpy()
            reconstructions[row : row + len(errors)] = predictions.numpy() * std + mean
            row += len(errors)
        return scores[context_rows:], reconstructions[context_rows:]

    # -- artifact --------------------------------------------------------------------------------------------

    def save(self, model_dir) -> None:
        check_fitted(self)
        assert self.network is not None  # check_fitted
        artifact.save(
            model_dir,
            {
                "algorithm": ALGORITHM,
                "hyperparameters": asdict(self.params),
                "input_shape": {"series": self.n_series},
                "scaler": self.scaler,
                "gaussian": self.gaussian,
                "threshold": self.threshold,
                "metrics": self.metrics,
                "history": self.history,
                "seed": self.seed,
            },
            self.network.state_dict(),
        )

    @classmethod
    def from_artifact(cls, manifest: dict, tensors: dict, device: str = "auto") -> LstmAD:
        model = cls.from_manifest(manifest, device)
        assert model.network is not None  # from_manifest builds it
        model.network.load_state_dict(tensors)
        model.network.eval()
        return model

    @classmethod
    def from_manifest(cls, manifest: dict, device: str = "auto") -> LstmAD:
        """The model `manifest` describes, its network new (kfts.algorithms.base.Algorithm.check_artifact)."""
        model = cls(LstmADParams(**manifest["hyperparameters"]), device=device, seed=manifest.get("seed"))
        model.device_ = resolve_device(device)
        model.n_series = manifest["input_shape"]["series"]
        model.scaler, model.gaussian, model.threshold = manifest["scaler"], manifest["gaussian"], manifest["threshold"]
        model.metrics, model.history = manifest.get("metrics", {}), manifest.get("history", [])
        model.network = model._new_network()
        return model


class _Reconstruction(Task):
    """LSTM-AD's network for the training loop (kfts.core.training_loop): the mean squared error of its predictions of
    the LSTM's part of the training series, `x`."""

    name = "lstm-ad"

    def __init__(self, model: LstmAD, x: torch.Tensor, valid_x: torch.Tensor | None):
        self.model, self.x, self.valid_x = model, x, valid_x
        self.fine_tuned = model.network  # set by _continue_from
        self.epochs, self.dtype = model.params.epochs, model._training_dtype()

    def new_network(self) -> LstmReconstructor:
        return self.model._new_network()

    def start(self, members):
        return None if self.fine_tuned is None else self.fine_tuned.state_dict()

    def optimizer(self, network) -> torch.optim.Adam:
        return torch.optim.Adam(network.parameters(), lr=self.model.params.lr)

    def batches(self, generators, share, shares):
        for inputs, targets in self.model._batches(self.x, generators[0]):
            if len(inputs) >= shares:  # too few for every process to get a share: skipped on all
                yield inputs[share::shares], targets[share::shares]

    def loss(self, outputs, targets) -> torch.Tensor:
        return torch.nn.functional.mse_loss(outputs.float(), targets)

    def validate(self, network) -> dict[str, float]:
        return {} if self.valid_x is None else {"valid_loss": self.model._mse(self.valid_x, network)}


# -- the Normal distribution of the errors ------------------------------------------------------------------------


def fit_gaussian(errors: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Maximum-likelihood mean and covariance of errors [n, d] (float64), and the ridge added to the diagonal
    (0 when the covariance is well conditioned) so that every eigenvalue is at least
    max(RCOND * largest, MIN_VARIANCE)."""
    errors = np.asarray(errors, dtype=np.float64)
    mean = errors.mean(axis=0)
    centered = errors - mean
    covariance = centered.T @ centered / len(errors)  # MLE: divided by n, not n - 1
    eigenvalues = np.linalg.eigvalsh(covariance)
    floor = max(RCOND * eigenvalues[-1], MIN_VARIANCE)
    ridge = float(floor - eigenvalues[0]) if eigenvalues[0] < floor else 0.0
    return mean, covariance + ridge * np.eye(len(mean)), ridge


def log_density(errors: torch.Tensor, mean: np.ndarray, covariance: np.ndarray) -> torch.Tensor:
    """Log-density of each row of errors [n, d] under N(mean, covariance), float64, all rows at once."""
    return Normal(mean, covariance)(errors)


class Normal:
    """N(mean, covariance) with its Cholesky factor computed once, for scoring block after block."""

    def __init__(self, mean: np.ndarray, covariance: np.ndarray):
        self.chol = torch.linalg.cholesky(torch.as_tensor(covariance, dtype=torch.float64))
        self.mean = torch.as_tensor(mean, dtype=torch.float64)
        self.constant = len(mean) * math.log(2 * math.pi) + 2 * torch.log(torch.diagonal(self.chol)).sum()

    def __call__(self, errors: torch.Tensor) -> torch.Tensor:
        """Log-density of each row of errors [n, d], float64."""
        centered = errors.to(torch.float64) - self.mean
        # squared Mahalanobis distances: |z|^2 with chol @ z = centered, one triangular solve for all rows
        z = torch.linalg.solve_triangular(self.chol, centered.T, upper=False)
        return -0.5 * (self.constant + (z**2).sum(dim=0))
