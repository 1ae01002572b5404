"""LSTM-AD in the predictor: one time step per row, [T, series] (a bare number per step for one series); answers
`score` [T], `reconstruction` [T, series] (NaN before the first scored row) and, when the model has a
threshold, `anomaly` (1/0). A request is one series: it is scored in one call, windowed by the estimator.
Option context_rows N: the first N rows are context only, and the answer covers the rows after them (for a
stream sent in chunks, each led by the rows before it: README "LSTM-AD: seed or paper scoring")."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from kfts.algorithms.adapter import Adapter, chunks
from kfts.core.errors import InputError


def context_rows(value) -> int:
    """A request's number of context rows, as a number or its text: a whole number of rows, at least 0."""
    text = str(value).strip()
    if isinstance(value, bool) or not (text.isascii() and text.isdigit()):
        raise InputError(f"context rows must be a whole number of rows (0 or more), not {value!r}")
    return int(text)


class LstmADAdapter(Adapter):
    def request_options(self):
        return {**super().request_options(), "context_rows": context_rows}

    def input_types(self) -> list[dict]:
        return [{"name": "input-0", "datatype": "FP32", "shape": [-1, self.model.n_series]}]

    def output_types(self) -> list[dict]:
        outputs = [
            {"name": "score", "datatype": "FP32", "shape": [-1]},
            {"name": "reconstruction", "datatype": "FP32", "shape": [-1, self.model.n_series]},
        ]
        if self.model.threshold is not None:
            outputs.append({"name": "anomaly", "datatype": "FP32", "shape": [-1]})
        return outputs

    @property
    def univariate(self) -> bool:
        return self.model.n_series == 1

    def check(self, values: np.ndarray, where: str) -> None:
        if values.shape[1] != self.model.n_series:
            raise InputError(
                f"rows have {values.shape[1]} values (series), the model was trained on {self.model.n_series}",
                path=where,
                row=1,
            )
        self.model.check_scorable(values, where)

    def memory(self, rows: int, columns: int) -> int:
        """A request is scored in one call: its arrays grow with its time steps, by the hidden units and by the
        series (an upper bound of what was measured in seed scoring), and its V1 answer's JSON is the largest
        per step."""
        return rows * (2 * self.model.params.hidden_size + 176 * columns + 16)

    def compute(self, values: np.ndarray, options: dict):
        return self.model.score(values, options.get("context_rows", 0))

    def outputs(self, computed, options: dict) -> dict[str, np.ndarray]:
        scores, reconstructions = computed
        arrays = {"score": scores.astype(np.float32), "reconstruction": reconstructions.astype(np.float32)}
        if self.model.threshold is not None:
            with np.errstate(invalid="ignore"):  # lower score = more anomalous
                arrays["anomaly"] = np.where(np.isnan(scores), np.nan, scores < self.model.threshold).astype(np.float32)
        return arrays

    def v1(self, computed, options: dict) -> Iterator[list]:
        """{"score", "reconstruction"[, "anomaly"]} per step, every field null before the first scored row."""
        scores, reconstructions = computed
        threshold = self.model.threshold
        for rows in chunks(len(scores)):
            predictions = []
            for score, reconstruction in zip(scores[rows].tolist(), reconstructions[rows].tolist()):
                scored = score == score  # not NaN
                row = {"score": score if scored else None, "reconstruction": reconstruction if scored else None}
                if threshold is not None:
                    row["anomaly"] = int(score < threshold) if scored else None
                predictions.append(row)
            yield predictions

    def warm_up(self, max_batch_size: int) -> None:
        m = self.model
        m.score(np.zeros((2 * m.first_scored + 1, m.n_series), dtype=np.float32))
