"""InceptionTime evaluation: classification metrics (kfts.core.metrics) and the HTML report, on a labeled file,
or on a file of series with their labels in a separate file (one per row)."""

from __future__ import annotations

import numpy as np

from kfts.core import csvio
from kfts.core.errors import InputError
from kfts.core.metrics import classification_metrics
from kfts.core.report import classification_report


def evaluate(model, input_path, labels_path=None) -> tuple[dict, str]:
    if labels_path is None:
        data = csvio.read_labeled_series(input_path, min_classes=1, length=model.length)
        values, labels = data.values, data.labels
    else:
        values = csvio.read_series_rows(input_path, length=model.length)
        labels = np.array(csvio.read_text_labels(labels_path), dtype=str)
        if len(labels) != len(values):
            raise InputError(f"has {len(labels)} labels for the {len(values)} rows of {input_path}", path=labels_path)
    model.encode_labels(labels, path_hint=labels_path or input_path)  # refuse classes the model never saw
    metrics = classification_metrics(labels, model.predict_proba(values), model.classes)
    return metrics, classification_report(metrics, model.history, title="InceptionTime evaluation")
