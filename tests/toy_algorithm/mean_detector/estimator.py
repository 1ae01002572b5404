"""The toy's estimator (fit / score on arrays, save / load) and its Adapter for the predictor: what imports torch.

Its fit() trains through kfts's training loop (kfts.core.training_loop), as the built-in algorithms do, and so gets
what they get: metric lines, checkpoints and resuming (--checkpoint-dir), devices, torchrun. The model is
each series' mean and variance, fitted by gradient descent.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import torch

from kfts.algorithms.adapter import Adapter
from kfts.core import artifact
from kfts.core.errors import InputError, check_fitted
from kfts.core.training_loop import Task, Trainer
from mean_detector import MeanDetectorParams


class MeanDetector:
    algorithm = "mean-detector"
    Params = MeanDetectorParams

    def __init__(self, params: MeanDetectorParams | None = None, *, device: str = "auto", seed: int | None = None):
        self.params = params if params is not None else MeanDetectorParams()
        self.device, self.seed = device, seed

    def fit(self, train: np.ndarray, valid=None, *, init_model=None, checkpoint_dir=None, log=None):
        trainer = Trainer(self.device, self.seed, checkpoint_dir=checkpoint_dir, log=log)
        self.device_ = trainer.device
        x = torch.as_tensor(train, dtype=torch.float32)
        trained = trainer.train(_Moments(x), fingerprint={"algorithm": self.algorithm}, data=[x])
        self.mean, self.std = trained.state["mean"].numpy(), trained.state["variance"].sqrt().numpy() + 1e-12
        self.metrics = {"train_loss": float(np.mean(self.score(train) ** 2))}
        trainer.report(self.metrics)
        return self

    def score(self, values: np.ndarray) -> np.ndarray:
        check_fitted(self, "mean")
        return np.abs((values - self.mean) / self.std).max(axis=1)

    def save(self, model_dir) -> None:
        check_fitted(self, "mean")
        artifact.save(
            model_dir,
            {
                "algorithm": self.algorithm,
                "hyperparameters": asdict(self.params),
                "input_shape": {"series": len(self.mean)},
                "metrics": self.metrics,
            },
            {"mean": torch.from_numpy(self.mean), "std": torch.from_numpy(self.std)},
        )

    @classmethod
    def from_artifact(cls, manifest: dict, tensors: dict, device: str = "auto") -> MeanDetector:
        model = cls(MeanDetectorParams(**manifest["hyperparameters"]), device=device)
        model.device_, model.metrics = torch.device("cpu"), manifest["metrics"]
        model.mean, model.std = tensors["mean"].numpy(), tensors["std"].numpy()
        return model


class Moments(torch.nn.Module):
    """Each series' mean and variance, the minimisers of two squared errors: their sum is the loss."""

    def __init__(self, series: int):
        super().__init__()
        self.mean, self.variance = torch.nn.Parameter(torch.zeros(series)), torch.nn.Parameter(torch.zeros(series))

    def forward(self, x):
        squares = (x - self.mean) ** 2
        return squares.mean(0).sum() + ((squares.detach() - self.variance) ** 2).mean(0).sum()


class _Moments(Task):
    """Gradient descent at step size 0.5 on the whole series reaches each minimum in one step: the mean in the
    first epoch, the variance around it in the second."""

    name, epochs = "moments", 2

    def __init__(self, x: torch.Tensor):
        self.x = x

    def new_network(self):
        return Moments(self.x.shape[1])

    def optimizer(self, network):
        return torch.optim.SGD(network.parameters(), lr=0.5)

    def batches(self, generators, share, shares):
        yield self.x[share::shares], self.x[share::shares]  # the inputs are their own targets

    def loss(self, outputs, targets):
        return outputs


class MeanDetectorAdapter(Adapter):
    batchable = True  # every row is scored alone

    def input_types(self):
        return [{"name": "input-0", "datatype": "FP32", "shape": [-1, len(self.model.mean)]}]

    def output_types(self):
        return [{"name": "score", "datatype": "FP32", "shape": [-1]}]

    def check(self, values, where):
        if values.shape[1] != len(self.model.mean):
            raise InputError(
                f"rows have {values.shape[1]} values, the model has {len(self.model.mean)}", path=where, row=1
            )

    def compute(self, values, options):
        return self.model.score(values)

    def outputs(self, scores, options):
        return {"score": scores.astype(np.float32)}
