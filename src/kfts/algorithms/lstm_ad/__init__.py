"""LSTM-AD: time-series anomaly detection with a stacked LSTM whose prediction errors are scored under a fitted
multivariate Normal (Malhotra et al. 2015).

    params.py      the hyperparameters
    network.py     the stacked LSTM
    estimator.py   fit / score on arrays (seed and paper scoring), the Normal, save / load the artifact
    files.py       reading the CSV layout, writing the prediction CSV (streamed, with context rows)
    evaluation.py  detection metrics and the HTML report
    serving.py     the predictor's V1 / V2 requests and answers

Files hold a time step per row and a series per column; labels (0/1 per row) come as a separate file
(docs/FORMATS.md).
"""

from __future__ import annotations

from kfts.algorithms.base import Algorithm
from kfts.algorithms.lstm_ad.params import LstmADParams
from kfts.core import manifest
from kfts.core.errors import InputError


def _series(fields: dict) -> int:
    return fields["input_shape"]["series"]


def _errors(fields: dict) -> int:
    """The length of an error vector the Normal scores: d, or l x d with paper scoring (estimator.py)."""
    params = LstmADParams(**fields["hyperparameters"])
    return _series(fields) * (params.prediction_length if params.scoring == "paper" else 1)


class LstmADAlgorithm(Algorithm):
    id = "lstm-ad"
    summary = "LSTM-AD anomaly detector (stacked LSTM, errors scored under a multivariate Normal)"
    Params = LstmADParams
    estimator_path = "kfts.algorithms.lstm_ad.estimator:LstmAD"
    predict_options = {"flag": "add a 0/1 anomaly column from the model's calibrated threshold"}
    metrics = ("valid_loss", "train_loss")
    holdout_metric = "roc_auc"
    pipeline_path = "kfts.kubeflow.pipelines.lstm_ad:build"
    artifact_caps = {
        "hyperparameters.hidden_size": 65536,
        "hyperparameters.num_layers": 100,
        "hyperparameters.sequence_length": 100_000,
        "hyperparameters.prediction_length": 100_000,
        "input_shape.series": 100_000,
    }
    manifest_fields = {
        "input_shape.series": manifest.integer(1),
        "scaler": manifest.obj(),
        "scaler.mean": manifest.numbers(_series),
        "scaler.std": manifest.numbers(_series, positive=True),
        "gaussian": manifest.obj(),
        "gaussian.mean": manifest.numbers(_errors),
        "gaussian.covariance": manifest.covariance(_errors),
        "gaussian.ridge": manifest.number(at_least=0, optional=True),
        "threshold": manifest.number(),
    }

    def describe(self, path, layout: str, head: bool) -> dict:
        from kfts.core import csvio

        if layout == "labels":
            n_rows = len(csvio.read_series_columns(path))
            labels = csvio.read_binary_labels(path, n_rows)  # one column of 0/1
            return {"rows": n_rows, "anomalous": int(labels.sum())}
        values = csvio.first_block(path) if head else csvio.read_series_columns(path)
        return {"rows": None if head else len(values), "columns": int(values.shape[1])}

    def check_shape(self, summary: dict, reference: dict, against: str) -> None:
        if "columns" in reference and summary["columns"] != reference["columns"]:
            raise InputError(
                f"has {summary['columns']} columns (series), {against} {reference['columns']}",
                path=summary["source"],
                row=1,
            )

    def summary_line(self, summary: dict) -> str:
        return f"{summary['rows']} time steps of {summary['columns']} series"

    def read_training(self, path):
        from kfts.core import csvio

        return csvio.read_series_columns(path)  # fit() checks the length against the sequence length

    def read_inference(self, model, source):
        from kfts.core import csvio

        return csvio.read_series_columns(source, n_series=model.n_series, min_rows=model.first_scored + 1)

    def predictions_csv(self, model, values, *, flag: bool = False, context_rows: int = 0) -> str:
        from kfts.algorithms.lstm_ad import files

        return files.predictions_csv(model, values, flag=flag, context_rows=context_rows)

    def write_predictions(self, model, path, blocks, out, chunk_bytes: int, **options) -> int:
        from kfts.algorithms.lstm_ad import files

        return files.write_predictions(model, path, blocks, out, chunk_bytes, **options)

    def evaluate(self, model, input_path, labels_path=None):
        from kfts.algorithms.lstm_ad import evaluation

        return evaluation.evaluate(model, input_path, labels_path)

    def serving(self, model):
        from kfts.algorithms.lstm_ad.serving import LstmADAdapter

        return LstmADAdapter(self, model)
