"""InceptionTime classifier: fit / predict on arrays, save / load as a kfts model artifact.

The network itself is in network.py beside this file. This module owns how it is trained:

- the reference product's recipe (Adam at a constant learning rate for `epochs` epochs), or the paper's
  (`schedule="plateau"`: ReduceLROnPlateau on the training loss, factor 0.5, patience 50, min lr 1e-4,
  keeping the weights with the lowest training loss);
- how the ensemble is laid out on the hardware: members trained one after another (`sequential`), or all
  together as one grouped network (`stacked`). Which is faster depends on the device and the data size, so
  `auto` times an epoch's work each way (training steps and the validation pass) on the real data and takes
  the faster. Both give the same model, up to rounding: member m's initial weights and its order of the
  series come from its own random stream, seeded `seed + m`, whichever way, process or task it is trained in;
- precision: bf16 autocast where the hardware runs it natively (see kfts.core.training.resolve_precision); the
  per-epoch validation pass runs at the training precision too;
- early stopping (`early_stopping` epochs of patience, off by default): training ends when the validation
  loss has stopped improving, keeping the weights of its best epoch;
- the BatchNorm statistics the kept weights predict with: recomputed for them over the training series
  (`batch_norm_stats="precise"`, batch_norm.py), or the running averages training kept (`"running"`). The
  per-epoch validation figures always use the running averages of their epoch, and the log says so:
  recomputing the statistics before every validation pass would add the statistics pass, several forward
  passes over the training series, to every epoch (benchmarks/batch_norm_stats.py measures it).

Reported metrics: `*_loss` is the members' mean cross-entropy (what each member minimises). The final
`*_accuracy` is the accuracy of the averaged probabilities (what the ensemble predicts); an epoch's
`train_accuracy` is the members' mean accuracy on the batches they trained on. A fit whose saved model scores
near chance on its own training series, or far below what its epochs showed, ends with a warning
(`fit_warnings`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import asdict

import numpy as np
import torch
from torch.nn import functional as F

from kfts.algorithms.inception_time import batch_norm
from kfts.algorithms.inception_time.network import (
    InceptionNetworks,
    ensemble_probabilities,
    merge_members,
    split_members,
)
from kfts.algorithms.inception_time.params import InceptionTimeParams
from kfts.core import artifact, training_loop
from kfts.core.csvio import LabeledSeries
from kfts.core.errors import InputError, check_fitted
from kfts.core.training import MetricLog, autocast, resolve_device, resolve_precision, standardize
from kfts.core.training_loop import Task, Trainer

ALGORITHM = "inception-time"
Params = InceptionTimeParams  # the estimator's hyperparameters, importable beside it
INFERENCE_BATCH = 256  # series per forward pass when predicting
# a fit whose saved model scores this much below the training accuracy of the epochs it keeps has failed: a
# tenth of the training series, far more than the train-mode and evaluation-mode figures differ by otherwise
FAR_BELOW = 0.1


def _adam(net: torch.nn.Module, lr: float) -> torch.optim.Adam:
    # fused: one kernel per tensor where the default runs about ten ops each; the same update (an epoch's time:
    # benchmarks/REPORT.md, "Training speed (InceptionTime)")
    return torch.optim.Adam(net.parameters(), lr=lr, fused=True)


class InceptionTime:
    """An InceptionTime ensemble classifier. Labels are kept verbatim as strings.

    fit() or from_artifact() sets the fitted attributes: network, classes, length (time steps per series),
    scaler, history, metrics, warnings (fit_warnings), and device_ (the torch device `device` resolved to).
    fit() never changes the Params it was given: continuing from an init_model, `params` becomes a copy with
    that model's architecture.
    """

    algorithm = ALGORITHM
    Params = InceptionTimeParams
    # fitted attributes that fit() resets first; network None: not fitted (kfts.core.errors.check_fitted)
    network: InceptionNetworks | None
    history: list[dict]

    def __init__(self, params: InceptionTimeParams | None = None, *, device: str = "auto", seed: int | None = None):
        self.params = params if params is not None else InceptionTimeParams()
        self.device = device
        self.seed = seed
        self.warnings: list[str] = []  # why its fit failed, if it did (fit_warnings)

    def _tensor(self, values: np.ndarray) -> torch.Tensor:
        scaled = standardize(values, self.scaler["mean"], self.scaler["std"])
        return torch.from_numpy(scaled).unsqueeze(1)  # [n, 1 channel, length]

    def encode_labels(self, labels: np.ndarray, path_hint: str = "labels") -> torch.Tensor:
        """The labels as class indices; a class the model does not know is an InputError naming `path_hint`."""
        index = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted(set(labels) - index.keys())
        if unknown:
            raise InputError(
                f"class {str(unknown[0])!r} was not in the training data (classes: {', '.join(self.classes)})",
                path=path_hint,
            )
        return torch.tensor([index[c] for c in labels], dtype=torch.long)

    # -- training --------------------------------------------------------------------------------------------

    def fit(
        self,
        train: LabeledSeries,
        valid: LabeledSeries | None = None,
        *,
        init_model: InceptionTime | None = None,
        checkpoint_dir=None,
        log: MetricLog | None = None,
    ) -> InceptionTime:
        """Train the ensemble. Members are trained in groups (one member each, or all stacked), member m seeded
        `seed + m` (its initial weights and its order of the series), so a member trained alone, stacked, in
        another process or in its own pipeline task starts from the same weights and sees the same batches.
        Under torchrun the groups are shared out over the processes (kfts.core.distributed), and every process ends
        with the whole ensemble."""
        trainer = Trainer(self.device, self.seed, checkpoint_dir=checkpoint_dir, log=log)
        self.device_ = trainer.device
        self.network, self.history, self.metrics, self.warnings = None, [], {}, []
        start = None  # the weights the members start from, where they are not their seeded ones
        if init_model is not None:
            start = self._continue_from(init_model, train)
        else:
            self.classes = np.unique(train.labels)
            values = train.values.astype(np.float64)
            self.scaler = {"mean": float(values.mean()), "std": float(values.std()) or 1.0}
        p = self.params
        if p.early_stopping and valid is None:
            raise InputError("--early-stopping needs validation data (--valid): it watches the validation loss")
        self.length = train.values.shape[1]
        x, y = self._tensor(train.values), self.encode_labels(train.labels)
        valid_xy = (self._tensor(valid.values), self.encode_labels(valid.labels)) if valid is not None else None
        if valid is not None and valid.values.shape[1] != self.length:
            raise InputError(
                f"validation series have {valid.values.shape[1]} time steps, training series have {self.length}"
            )
        task = _Ensemble(self, x, y, valid_xy, start)
        if valid is not None and p.batch_norm_stats == "precise":
            trainer.say(
                "batch-norm-stats=precise: each epoch's valid_* figures (and early stopping) use that "
                "epoch's BatchNorm running averages; the final line's use the statistics recomputed for "
                "the saved weights, which the model predicts with"
            )
        plan = self._plan(task, trainer)
        trained = trainer.train_groups(
            task,
            plan,
            fingerprint={
                "algorithm": ALGORITHM,
                "params": asdict(p),
                "seed": self.seed,  # the one asked for: a run started again without one draws another
                "classes": self.classes.tolist(),
            },
            data=[x, y, *(valid_xy or [None])],
        )
        states, self.history, kept_accuracy = [], [], []
        for (members, _), result in zip(plan, trained):
            states += split_members(result.state, len(members))
            self.history += result.history
            kept_accuracy += [next(h["train_accuracy"] for h in result.history if h["epoch"] == result.kept)] * len(
                members
            )

        self.network = self._new_group(p.models)
        self.network.load_state_dict(merge_members(states))
        self.network.eval()
        self.metrics = self._ensemble_score(x, y, "train")
        if valid_xy is not None:
            self.metrics.update(self._ensemble_score(*valid_xy, "valid"))
        self.warnings = fit_warnings(self.metrics["train_accuracy"], float(np.mean(kept_accuracy)), y, p)
        trainer.report(self.metrics, self.warnings)
        return self

    def _continue_from(self, previous: InceptionTime, train: LabeledSeries) -> dict[str, torch.Tensor]:
        """Incremental training: take a previous artifact's architecture and scaling, and return the weights its
        members start from. If the new data has other classes, each member's classifier head is left out (and the
        log says so): it starts from the seeded weights a model trained from scratch starts from."""
        q = previous.params
        self.params = dataclasses.replace(self.params, filters=q.filters, depth=q.depth, models=q.models)
        self.scaler = dict(previous.scaler)
        self.classes = np.unique(train.labels)
        assert previous.network is not None  # a loaded model
        state = {k: v.cpu() for k, v in previous.network.state_dict().items()}
        if list(self.classes) != list(previous.classes):
            print(
                f"init-model: classes changed from {previous.classes.tolist()} to {self.classes.tolist()}: "
                "the classifier heads are replaced, the convolutional layers are kept",
                flush=True,
            )
            state = {k: v for k, v in state.items() if not k.startswith("head.")}
        return state

    def _new_group(self, members: int) -> InceptionNetworks:
        p = self.params
        return InceptionNetworks(1, len(self.classes), members=members, filters=p.filters, depth=p.depth)

    def _plan(self, task: _Ensemble, trainer: Trainer) -> list[tuple[list[int], list[int]]]:
        """[(members trained together, the ranks that train them)], and a log line saying so.

        One process: every member alone (sequential) or all together (stacked). Under torchrun members are
        trained alone and shared out: with fewer processes than members each process trains every
        world-size-th member; with more, each member is trained data-parallel by every models-th process."""
        m, w = self.params.models, trainer.world.size
        if w == 1:
            stacked = self._choose_group_size(task) > 1
            return [(list(range(m)), [0])] if stacked else [([i], [0]) for i in range(m)]
        if w <= m:
            plan = [([i], [i % w]) for i in range(m)]
        else:
            plan = [([i], [r for r in range(w) if r % m == i]) for i in range(m)]
        trainer.say(
            f"distributed: {w} processes, members trained alone ({self.params.ensemble} ignored): "
            + "; ".join(
                f"member {ms[0] + 1} on rank{'s' * (len(rs) > 1)} {','.join(map(str, rs))}"
                + (" (data-parallel)" if len(rs) > 1 else "")
                for ms, rs in plan
            )
        )
        return plan

    def _choose_group_size(self, task: _Ensemble) -> int:
        p = self.params
        if p.models == 1 or p.ensemble == "sequential":
            return 1
        if p.ensemble == "stacked":
            return p.models
        # auto: time an epoch's work both ways (its training steps and its validation pass, as the run will
        # do them), on real batches, and keep the faster
        x, valid_x = task.x, task.valid_xy[0] if task.valid_xy else None
        batch = min(p.batch_size, len(x))
        xb, yb = x[:batch].to(self.device_), task.y[:batch].to(self.device_)
        steps = -(-len(x) // p.batch_size)
        valid_batch = valid_x[:INFERENCE_BATCH] if valid_x is not None else None
        valid_batches = -(-len(valid_x) // INFERENCE_BATCH) if valid_x is not None else 0

        def epoch_seconds(net, opt) -> float:
            start = time.perf_counter()
            training_loop.step(task, net, opt, xb, yb)
            if self.device_.type == "cuda":
                torch.cuda.synchronize()
            step = time.perf_counter() - start
            start = time.perf_counter()
            if valid_batch is not None:
                self._logits(valid_batch, net, task.dtype)  # synchronizes: the logits come back to the CPU
            return steps * step + valid_batches * (time.perf_counter() - start)

        nets = {m: self._new_group(m).to(self.device_).train() for m in (1, p.models)}
        optimizers = {m: _adam(net, p.lr) for m, net in nets.items()}
        times: dict[int, list[float]] = {1: [], p.models: []}
        for _ in range(3):  # alternating, so that a machine slowing down or speeding up favours neither
            for m in times:
                times[m].append(epoch_seconds(nets[m], optimizers[m]))
        sequential, stacked = p.models * min(times[1][1:]), min(times[p.models][1:])  # the first pays setup
        choice = p.models if stacked < sequential else 1
        print(
            f"ensemble=auto: an epoch of all {p.models} members takes {sequential:.2f}s one after another, "
            f"{stacked:.2f}s stacked: training {'stacked' if choice > 1 else 'sequential'}",
            flush=True,
        )
        return choice

    def _inference_dtype(self) -> torch.dtype | None:
        """What predictions run in: fp32 on CPUs (the saved weights' own results), bf16/fp16 on GPUs."""
        return resolve_precision("auto", self.device_) if self.device_.type == "cuda" else None

    @torch.no_grad()
    def _logits(self, x: torch.Tensor, network: InceptionNetworks, dtype: torch.dtype | None) -> torch.Tensor:
        """The members' logits, INFERENCE_BATCH series at a time, under autocast `dtype` (None: fp32)."""
        was_training = network.training
        model = network.to(self.device_).eval()
        out = []
        for i in range(0, len(x), INFERENCE_BATCH):
            with autocast(self.device_, dtype):
                out.append(model(x[i : i + INFERENCE_BATCH].to(self.device_)).float().cpu())
        network.train(was_training)
        return torch.cat(out) if out else torch.empty(0, network.members, network.n_classes)

    def _ensemble_score(self, x, y, prefix: str) -> dict[str, float]:
        """The whole ensemble's figures, computed as it predicts: what the artifact, KFP and Katib report."""
        assert self.network is not None  # fitted, or combined from fitted members
        return self._score(x, y, prefix, self.network, self._inference_dtype())

    def _score(self, x, y, prefix: str, network: InceptionNetworks, dtype: torch.dtype | None) -> dict[str, float]:
        logits = self._logits(x, network, dtype)
        members = logits.shape[1]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.repeat_interleave(members)).item()
        accuracy = (ensemble_probabilities(logits).argmax(1) == y).float().mean().item()
        return {f"{prefix}_loss": loss, f"{prefix}_accuracy": accuracy}

    # -- prediction ------------------------------------------------------------------------------------------

    def predict_proba(self, values: np.ndarray) -> np.ndarray:
        """Averaged ensemble probabilities, [n, classes] in the order of `classes`."""
        check_fitted(self)
        values = np.asarray(values, dtype=np.float32)
        if values.ndim != 2 or values.shape[1] != self.length:
            raise InputError(f"each series needs {self.length} time steps, got shape {list(values.shape)}")
        assert self.network is not None  # check_fitted
        logits = self._logits(self._tensor(values), self.network, self._inference_dtype())
        return ensemble_probabilities(logits).numpy()

    def predict(self, values: np.ndarray) -> np.ndarray:
        return self.classes[self.predict_proba(values).argmax(axis=1)]

    # -- artifact --------------------------------------------------------------------------------------------

    def save(self, model_dir) -> None:
        check_fitted(self)
        assert self.network is not None  # check_fitted
        artifact.save(
            model_dir,
            {
                "algorithm": ALGORITHM,
                "hyperparameters": asdict(self.params),
                "input_shape": {"length": self.length, "channels": 1},
                "classes": self.classes.tolist(),
                "scaler": self.scaler,
                "metrics": self.metrics,
                "history": self.history,
                "warnings": self.warnings,
                "seed": self.seed,
            },
            self.network.state_dict(),
        )

    @classmethod
    def from_artifact(cls, manifest: dict, tensors: dict, device: str = "auto") -> InceptionTime:
        model = cls.from_manifest(manifest, device)
        assert model.network is not None  # from_manifest builds it
        model.network.load_state_dict(tensors)
        model.network.eval()
        return model

    @classmethod
    def from_manifest(cls, manifest: dict, device: str = "auto") -> InceptionTime:
        """The model `manifest` describes, its network new (kfts.algorithms.base.Algorithm.check_artifact)."""
        # an artifact from before the option holds the running averages
        params = InceptionTimeParams(**{"batch_norm_stats": "running", **manifest["hyperparameters"]})
        model = cls(params, device=device, seed=manifest.get("seed"))
        model.device_ = resolve_device(device)
        model.classes = np.array(manifest["classes"], dtype=str)
        model.length = manifest["input_shape"]["length"]
        model.scaler = manifest["scaler"]
        model.metrics, model.history = manifest.get("metrics", {}), manifest.get("history", [])
        model.warnings = manifest.get("warnings", [])
        model.network = model._new_group(model.params.models)
        return model


def fit_warnings(accuracy: float, epochs_accuracy: float, y: torch.Tensor, params: InceptionTimeParams) -> list[str]:
    """Why a fit failed, if it did: its saved model's `accuracy` on its own training series (labels `y`) is near
    chance, or FAR_BELOW the `epochs_accuracy` its training epochs showed for the weights it keeps.

    Chance is what always answering the largest class scores (at least 1/classes). Near it is within two
    standard errors of that guesser's accuracy on len(y) series (no better than it, as far as so many series
    tell), and at most halfway from chance to every series right (a handful of series tell little either way).
    """
    n = len(y)
    chance = torch.bincount(y).max().item() / n
    reasons = []
    if accuracy <= chance + min(2 * math.sqrt(chance * (1 - chance) / n), (1 - chance) / 2):
        reasons.append(f"near chance (always answering the largest class scores {chance:.3f})")
    if accuracy < epochs_accuracy - FAR_BELOW:
        reasons.append(f"far below the {epochs_accuracy:.3f} its training epochs showed for the weights it keeps")
    if not reasons:
        return []
    tries = [
        "more optimizer steps (more --epochs, or a smaller --batch-size on few series)",
        "--schedule plateau with more epochs (the paper trains 1500)",
        "--early-stopping with --valid",
    ]
    if params.batch_norm_stats == "running":
        tries.insert(0, "--batch-norm-stats precise")
    return [
        f"the saved model scores train_accuracy={accuracy:.3f} on its own training series, "
        f"{' and '.join(reasons)}: the fit failed. Try {', '.join(tries[:-1])} or {tries[-1]}"
    ]


class _Ensemble(Task):
    """InceptionTime's networks for the training loop (kfts.core.training_loop): members stacked into one grouped
    network, each member's cross-entropy on its own batches, and the BatchNorm statistics of the kept weights."""

    name = "ensemble"

    def __init__(
        self,
        model: InceptionTime,
        x: torch.Tensor,
        y: torch.Tensor,
        valid_xy: tuple[torch.Tensor, torch.Tensor] | None,
        fine_tuned: dict[str, torch.Tensor] | None = None,
    ):
        p = self.params = model.params
        self.model, self.x, self.y, self.valid_xy, self.fine_tuned = model, x, y, valid_xy, fine_tuned
        self.epochs, self.schedule, self.early_stopping = p.epochs, p.schedule, p.early_stopping
        self.dtype = resolve_precision(p.precision, model.device_)

    def new_network(self) -> InceptionNetworks:
        return self.model._new_group(1)

    def stack(self, networks: list[torch.nn.Module]) -> InceptionNetworks:
        net = self.model._new_group(len(networks))
        net.load_state_dict(merge_members([n.state_dict() for n in networks]))
        return net

    def start(self, members):
        if self.fine_tuned is None:
            return None
        return merge_members([split_members(self.fine_tuned, self.params.models)[m] for m in members])

    def optimizer(self, network) -> torch.optim.Adam:
        return _adam(network, self.params.lr)

    def batches(self, generators, share, shares):
        orders = torch.stack([torch.randperm(len(self.x), generator=generator) for generator in generators])
        for i in range(0, len(self.x), self.params.batch_size):
            idx = orders[:, i : i + self.params.batch_size][:, share::shares].T  # [batch, members]: each one's series
            yield self.x[idx], self.y[idx]

    def loss(self, logits, labels) -> torch.Tensor:
        """Each member's mean cross-entropy, summed: every member gets the gradient it would get alone. Each member
        on its own batch (logits [batch, members, classes], labels [batch, members]), or every member on the same
        one (labels [batch]: the same work, as timings use it)."""
        members = logits.shape[1]
        labels = labels.reshape(-1) if labels.dim() == 2 else labels.repeat_interleave(members)  # batch-major
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels, reduction="sum") / len(logits)

    def figures(self, loss, logits, labels) -> dict[str, float]:
        """The members' mean loss and accuracy."""
        members = logits.shape[1]
        return {
            "loss": (loss / members).item() * len(labels),
            "accuracy": (logits.argmax(-1) == labels).sum().item() / members,
        }

    def validate(self, network) -> dict[str, float]:
        if self.valid_xy is None:
            return {}
        # at the training precision: on a CPU, fp32 would double this pass's cost
        return self.model._score(*self.valid_xy, "valid", network, self.dtype)

    def keep(self, network, group, share) -> None:
        if self.params.batch_norm_stats == "precise":
            batch_norm.recompute(
                network, self.x, self.model.device_, group=group.process_group, share=share, shares=len(group.ranks)
            )
