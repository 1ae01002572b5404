"""The toy's estimator (fit / score on arrays, save / load) and its Adapter for the predictor: what imports torch."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import torch

from kfts.core import artifact
from kfts.core.errors import InputError, check_fitted
from kfts.algorithms.adapter import Adapter
from mean_detector import MeanDetectorParams


class MeanDetector:
    algorithm = "mean-detector"
    Params = MeanDetectorParams

    def __init__(self, params: MeanDetectorParams | None = None, *, device: str = "auto", seed: int | None = None):
        self.params = params if params is not None else MeanDetectorParams()
        self.device, self.seed = device, seed

    def fit(self, train: np.ndarray, valid=None, *, init_model=None, checkpoint_dir=None, log=None):
        self.device_ = torch.device("cpu")
        self.mean, self.std = train.mean(axis=0), train.std(axis=0) + 1e-12
        self.metrics = {"train_loss": float(np.mean(self.score(train) ** 2))}
        print(f"train_loss={self.metrics['train_loss']:.6f}", flush=True)
        return self

    def score(self, values: np.ndarray) -> np.ndarray:
        check_fitted(self, "mean")
        return np.abs((values - self.mean) / self.std).max(axis=1)

    def save(self, model_dir) -> None:
        check_fitted(self, "mean")
        artifact.save(model_dir, {"algorithm": self.algorithm, "hyperparameters": asdict(self.params),
                                  "input_shape": {"series": len(self.mean)}, "metrics": self.metrics},
                      {"mean": torch.from_numpy(self.mean), "std": torch.from_numpy(self.std)})

    @classmethod
    def from_artifact(cls, manifest: dict, tensors: dict, device: str = "auto") -> "MeanDetector":
        model = cls(MeanDetectorParams(**manifest["hyperparameters"]), device=device)
        model.device_, model.metrics = torch.device("cpu"), manifest["metrics"]
        model.mean, model.std = tensors["mean"].numpy(), tensors["std"].numpy()
        return model


class MeanDetectorAdapter(Adapter):
    batchable = True  # every row is scored alone

    def input_types(self):
        return [{"name": "input-0", "datatype": "FP32", "shape": [-1, len(self.model.mean)]}]

    def output_types(self):
        return [{"name": "score", "datatype": "FP32", "shape": [-1]}]

    def check(self, values, where):
        if values.shape[1] != len(self.model.mean):
            raise InputError(f"rows have {values.shape[1]} values, the model has {len(self.model.mean)}",
                             path=where, row=1)

    def compute(self, values, options):
        return self.model.score(values)

    def outputs(self, scores, options):
        return {"score": scores.astype(np.float32)}
