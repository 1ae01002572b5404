"""InceptionTime in the predictor: one series per row, [n, length]; answers `label`, `probabilities` and `classes`
(V1: the label, and the probabilities when asked). Rows are independent, so concurrent requests are batched together."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from kfts.algorithms.adapter import Adapter, chunks
from kfts.algorithms.inception_time.estimator import INFERENCE_BATCH
from kfts.core.errors import InputError


class InceptionTimeAdapter(Adapter):
    batchable = True

    def input_types(self) -> list[dict]:
        return [{"name": "input-0", "datatype": "FP32", "shape": [-1, self.model.length]}]

    def output_types(self) -> list[dict]:
        n = len(self.model.classes)
        return [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, n]},
            {"name": "classes", "datatype": "BYTES", "shape": [n]},
        ]

    def check(self, values: np.ndarray, where: str) -> None:
        if values.shape[1] != self.model.length:
            raise InputError(
                f"rows have {values.shape[1]} time steps, the model was trained on {self.model.length}",
                path=where,
                row=1,
            )

    def memory(self, rows: int, columns: int) -> int:
        """A model call's activations (every module's four branches of `filters` channels, fp32, in each network,
        for up to INFERENCE_BATCH series at a time, twice over: an upper bound of what was measured) and a small
        answer per series."""
        p = self.model.params
        per_series = 2 * p.models * p.depth * 4 * p.filters * columns * 4
        return min(rows, INFERENCE_BATCH) * per_series + rows * (64 + 32 * len(self.model.classes))

    def compute(self, values: np.ndarray, options: dict) -> np.ndarray:
        return self.model.predict_proba(values)

    def outputs(self, proba: np.ndarray, options: dict) -> dict[str, np.ndarray]:
        classes = self.model.classes
        return {
            "label": classes[proba.argmax(axis=1)].astype(object),
            "probabilities": proba.astype(np.float32),
            "classes": classes.astype(object),
        }

    def v1(self, proba: np.ndarray, options: dict) -> Iterator[list]:
        """A label per series, or with probabilities {"label", "probabilities": {class: p}}."""
        classes = self.model.classes
        names = classes.tolist()
        for rows in chunks(len(proba)):
            labels = classes[proba[rows].argmax(axis=1)].tolist()
            yield (
                labels
                if not options.get("probabilities")
                else [
                    {"label": label, "probabilities": dict(zip(names, p))}
                    for label, p in zip(labels, proba[rows].tolist())
                ]
            )

    def warm_up(self, max_batch_size: int) -> None:
        for n in sorted({1, max_batch_size}):
            self.model.predict_proba(np.zeros((n, self.model.length), dtype=np.float32))
