"""InceptionTime's files: the inference layout read for a model, and the batch prediction CSV (docs/FORMATS.md):
one label per row, or with probabilities a header and a p_<class> column per class."""

from __future__ import annotations

import io

import numpy as np

from kfts.algorithms.inception_time.estimator import INFERENCE_BATCH
from kfts.core import csvio
from kfts.core.rowblocks import checked, chunks


def read_inference(model, source) -> np.ndarray:
    return csvio.read_series_rows(source, length=model.length)


def predictions_csv(model, values: np.ndarray, *, probabilities: bool = False) -> str:
    proba = model.predict_proba(values)
    labels = model.classes[proba.argmax(axis=1)]
    out = io.StringIO()
    if not probabilities:
        out.writelines(csv_field(label) + "\n" for label in labels)
        return out.getvalue()
    out.write(",".join(["label"] + [csv_field(f"p_{c}") for c in model.classes]) + "\n")
    for label, row in zip(labels, proba):
        out.write(",".join([csv_field(label)] + [f"{v:.6f}" for v in row]) + "\n")
    return out.getvalue()


def write_predictions(model, path, blocks, out, chunk_bytes: int, *, probabilities: bool = False) -> int:
    """Rows are independent: chunks are whole multiples of the network's inference batch, so every forward pass
    sees the same rows as one pass over the whole file would, and the bytes are the same."""
    rows_per_chunk = max(1, chunk_bytes // (4 * model.length * INFERENCE_BATCH)) * INFERENCE_BATCH
    n = 0
    for values in chunks(
        checked(blocks, lambda v, first: csvio.check_length(path, v, model.length, first)),
        rows_per_chunk,
        rows_per_chunk,
    ):
        text = predictions_csv(model, values, probabilities=probabilities)
        if n and probabilities:
            text = text.split("\n", 1)[1]  # the header once, at the top
        out.write(text)
        n += len(values)
    return n


def csv_field(text: str) -> str:
    """A label as one CSV field: verbatim, quoted only when it must be."""
    if any(ch in text for ch in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text
