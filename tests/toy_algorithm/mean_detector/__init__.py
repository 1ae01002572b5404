"""A toy third algorithm, registered from outside kfts (tests/integration/algorithms/test_plugin_algorithm.py): an
anomaly detector that scores each time step by its largest distance from the training mean, in training standard
deviations.

It is the whole of what a new algorithm writes (docs/ALGORITHMS.md): hyperparameters, an estimator, its
Algorithm (files, checks, CSV output, evaluation) and its Adapter (the predictor). Its files are LSTM-AD's: a
time step per row, a series per column.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kfts.algorithms.base import Algorithm
from kfts.core.errors import InputError
from kfts.core.hyperparameters import check_params


@dataclass
class MeanDetectorParams:
    sigmas: float = field(default=3.0, metadata={"help": "flag a step this many standard deviations away"})

    def __post_init__(self):
        check_params(self)


class MeanDetectorAlgorithm(Algorithm):
    id = "mean-detector"
    summary = "distance from the training mean, in standard deviations (a toy)"
    Params = MeanDetectorParams
    estimator_path = "mean_detector.estimator:MeanDetector"
    predict_options = {"flag": "add a 0/1 column: the score is over --sigmas"}
    metrics = ("train_loss",)
    holdout_metric = "flagged"

    def describe(self, path, layout: str, head: bool) -> dict:
        from kfts.core import csvio

        if layout == "labels":
            raise InputError("this toy takes no labels", path=path)
        values = csvio.first_block(path) if head else csvio.read_series_columns(path)
        return {"rows": None if head else len(values), "columns": int(values.shape[1])}

    def check_shape(self, summary: dict, reference: dict, against: str) -> None:
        if "columns" in reference and summary["columns"] != reference["columns"]:
            raise InputError(
                f"has {summary['columns']} columns, {against} {reference['columns']}", path=summary["source"], row=1
            )

    def summary_line(self, summary: dict) -> str:
        return f"{summary['rows']} time steps of {summary['columns']} series"

    def read_training(self, path):
        from kfts.core import csvio

        return csvio.read_series_columns(path)

    def read_inference(self, model, source):
        from kfts.core import csvio

        return csvio.read_series_columns(source, n_series=len(model.mean))

    def predictions_csv(self, model, values, *, flag: bool = False) -> str:
        scores = model.score(values)
        return "".join(f"{s:.6f},{int(s > model.params.sigmas)}\n" if flag else f"{s:.6f}\n" for s in scores)

    def evaluate(self, model, input_path, labels_path=None):
        from kfts.core import report

        scores = model.score(self.read_inference(model, input_path))
        metrics = {"flagged": int((scores > model.params.sigmas).sum()), "mean_score": float(scores.mean())}
        return metrics, report.page("Mean detector evaluation", [("Summary", report.table([metrics]))])

    def serving(self, model):
        from mean_detector.estimator import MeanDetectorAdapter

        return MeanDetectorAdapter(self, model)
