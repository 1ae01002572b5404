"""InceptionTime: time-series classification with an ensemble of Inception CNNs (Ismail Fawaz et al. 2020).

    params.py      the hyperparameters
    network.py     the networks, as in the paper, with one hook for an add-on's layers (addons/kfts-cpu-kernels)
    estimator.py   fit / predict_proba / predict on arrays, save / load the artifact
    ensemble.py    members trained as separate pipeline tasks, combined into one artifact
    files.py       reading the CSV layouts, writing the prediction CSV (streamed)
    evaluation.py  metrics and the HTML report
    serving.py     the predictor's V1 / V2 requests and answers

Files hold a series per row; a training file has its label first in each row (docs/FORMATS.md).
"""

from __future__ import annotations

from kfts.algorithms.base import Algorithm
from kfts.algorithms.inception_time.params import InceptionTimeParams
from kfts.core import manifest
from kfts.core.errors import InputError

MAX_CLASSES_KEPT = 1000  # a summary keeps at most this many distinct labels (KFP metadata stays small)


class InceptionTimeAlgorithm(Algorithm):
    id = "inception-time"
    summary = "InceptionTime time-series classifier (an ensemble of Inception CNNs)"
    Params = InceptionTimeParams
    estimator_path = "kfts.algorithms.inception_time.estimator:InceptionTime"
    labeled_layout = True
    predict_options = {"probabilities": "add the averaged class probabilities"}
    metrics = ("valid_accuracy", "valid_loss", "train_loss", "train_accuracy")
    holdout_metric = "accuracy"
    pipeline_path = "kfts.kubeflow.pipelines.inception_time:build"
    fan_out = True
    artifact_caps = {
        "hyperparameters.filters": 4096,
        "hyperparameters.depth": 100,
        "hyperparameters.models": 1000,
        "input_shape.length": 1_000_000,
    }
    manifest_fields = {
        "input_shape.length": manifest.integer(1),
        "input_shape.channels": manifest.integer(1, 1, optional=True),
        "classes": manifest.texts(distinct=True, at_least=2),
        "scaler": manifest.obj(),
        "scaler.mean": manifest.number(),
        "scaler.std": manifest.number(positive=True),
    }

    def describe(self, path, layout: str, head: bool) -> dict:
        from kfts.core import csvio

        if layout == "labels":
            return classes_summary(csvio.read_text_labels(path))
        if layout == "inference":
            values = _inference_rows(path, head)
            return {"rows": None if head else len(values), "length": int(values.shape[1])}
        data = csvio.read_labeled_series(path, min_classes=1)
        summary = {"rows": len(data.values), "length": int(data.values.shape[1]), **classes_summary(data.labels)}
        if summary["n_classes"] > 100 and summary["n_classes"] > summary["rows"] / 2:
            # series read as labeled data whose first column is a time step: one 'class' per row
            raise InputError(
                f"was given in the labeled layout, but its first column has {summary['n_classes']} "
                f"different labels in {summary['rows']} rows: is it in the inference layout "
                "(series only, no label column)?",
                path=path,
            )
        return summary

    def check_shape(self, summary: dict, reference: dict, against: str) -> None:
        length, expected = summary.get("length"), reference.get("length")
        if length is None or expected is None or length == expected:
            return
        hint = ""
        if summary["layout"] == "inference" and length == expected + 1:
            hint = (
                "; one more than expected: is it in the labeled layout (a label first)? Give the series alone, "
                "their labels as a separate file"
            )
        elif summary["layout"] == "training" and length == expected - 1:
            hint = (
                "; one fewer than expected: is it in the inference layout (no label column)? Give a label "
                "first in every row, or the labels as a separate file"
            )
        raise InputError(f"rows have {length} time steps, {against} {expected}{hint}", path=summary["source"], row=1)

    def check_training(self, summary: dict) -> None:
        if summary.get("n_classes", 2) < 2:
            raise InputError(
                f"only one class ({summary['classes'][0]!r}): a classifier needs at least two", path=summary["source"]
            )

    def summary_line(self, summary: dict) -> str:
        classes = f", {summary['n_classes']} classes" if "n_classes" in summary else ""
        return f"{summary['rows']} series of length {summary['length']}{classes}"

    def read_training(self, path):
        from kfts.core import csvio

        return csvio.read_labeled_series(path)

    def read_inference(self, model, source):
        from kfts.algorithms.inception_time import files

        return files.read_inference(model, source)

    def predictions_csv(self, model, values, *, probabilities: bool = False) -> str:
        from kfts.algorithms.inception_time import files

        return files.predictions_csv(model, values, probabilities=probabilities)

    def write_predictions(self, model, path, blocks, out, chunk_bytes: int, **options) -> int:
        from kfts.algorithms.inception_time import files

        return files.write_predictions(model, path, blocks, out, chunk_bytes, **options)

    def evaluate(self, model, input_path, labels_path=None):
        from kfts.algorithms.inception_time import evaluation

        return evaluation.evaluate(model, input_path, labels_path)

    def serving(self, model):
        from kfts.algorithms.inception_time.serving import InceptionTimeAdapter

        return InceptionTimeAdapter(self, model)


def classes_summary(labels) -> dict:
    classes = sorted({str(c) for c in labels})
    return {"classes": classes[:MAX_CLASSES_KEPT], "n_classes": len(classes), "rows": len(labels)}


def _inference_rows(path, head: bool):
    """Series without labels; a file that reads as labeled data says so."""
    from kfts.core import csvio

    try:
        return csvio.first_block(path) if head else csvio.read_series_rows(path)
    except InputError as e:
        if (e.row, e.column) != (1, 1):  # a label would be in the first row too: later, a typo
            raise
        try:
            csvio.first_block(path, label_column=True)
        except InputError:
            raise e from None
        raise InputError(
            "was given in the inference layout (series only) but has a label in its first "
            "column (the labeled layout): give the series without their labels, the labels as a "
            "separate file, or the file as labeled data",
            path=path,
        ) from None
