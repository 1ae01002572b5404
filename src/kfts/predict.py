"""Batch prediction of a CSV file of any size, in chunks, with bounded memory (SPEC "Outputs of batch prediction").

The input is streamed by csvio.iter_row_blocks and predicted chunk by chunk into a temporary file that
replaces the output only when every row is done, so a fault late in a file, or a killed process, leaves
no output. The bytes are those of one in-memory pass (model.predictions_csv on the whole file):

- InceptionTime rows are independent. Chunks are whole multiples of the network's inference batch, so
  every forward pass sees the same rows as in one pass.
- LSTM-AD scores a time step from rows before it (seed: the sequence before it; paper: the windows that
  predicted it), so every chunk after the first is led by rows of context, which were written with the
  chunk before (model.predictions_csv(context_rows=...) leaves them out). Chunks start on a multiple of the
  scoring batch (of sequences in seed mode, which also puts them on a sequence boundary; of windows in paper
  mode), so that every forward pass sees the same rows as in one pass: matrix products of another batch
  size may round differently. In paper mode a window's predictions are also needed by the l - 1 rows after
  the next one, so a chunk ends on a whole batch of windows and the next one re-reads that batch's rows.
"""

from __future__ import annotations

import os
from typing import Iterable, Iterator

import numpy as np

from kfts import csvio
from kfts.artifact import atomic_file
from kfts.errors import InputError

CHUNK_BYTES = 4 << 20  # float32 input per chunk: the model's own working memory comes on top
INCEPTION_BATCH = 256   # InceptionTime._logits' batch of series


def write_predictions(model, input_path: str | os.PathLike, output_path: str | os.PathLike, *,
                      chunk_bytes: int = CHUNK_BYTES, **options) -> int:
    """Predict every row of `input_path` into `output_path` (atomically); returns the number of rows.

    `options` go to model.predictions_csv (probabilities=... for InceptionTime, flag=... for LSTM-AD)."""
    blocks = (values for _, _, values in csvio.iter_row_blocks(input_path))
    with atomic_file(output_path) as out:
        if model.algorithm == "inception-time":
            return _inception_time(model, input_path, blocks, out, chunk_bytes, options)
        if model.algorithm == "lstm-ad":
            return _lstm_ad(model, input_path, blocks, out, chunk_bytes, options)
        raise InputError(f"batch prediction does not know the algorithm {model.algorithm!r}")


def _inception_time(model, path, blocks, out, chunk_bytes: int, options) -> int:
    rows_per_chunk = max(1, chunk_bytes // (4 * model.length * INCEPTION_BATCH)) * INCEPTION_BATCH
    n = 0
    for values in _chunks(_checked(blocks, lambda v, first: csvio.check_length(path, v, model.length, first)),
                          rows_per_chunk, rows_per_chunk):
        text = model.predictions_csv(values, **options)
        if n and options.get("probabilities"):
            text = text.split("\n", 1)[1]  # the header once, at the top
        out.write(text)
        n += len(values)
    return n


def _lstm_ad(model, path, blocks, out, chunk_bytes: int, options) -> int:
    from kfts.lstm_ad import SCORE_BATCH
    L = model.params.sequence_length

    def check_columns(values, first):
        if values.shape[1] != model.n_series:
            raise InputError(f"the file has {values.shape[1]} columns (series), the model was trained on "
                             f"{model.n_series}", path=path, row=first + 1)

    if model.params.scoring == "seed":
        rows_per_batch, lead = SCORE_BATCH * L, 0
    else:  # the l - 1 rows after a chunk's last window need the windows after it: whole batches of them
        rows_per_batch, lead = SCORE_BATCH, -(-(model.params.prediction_length - 1) // SCORE_BATCH) * SCORE_BATCH
    size = max(1, chunk_bytes // (4 * model.n_series * rows_per_batch)) * rows_per_batch
    context = L + lead
    n = 0
    # the first chunk is its own context (its first rows get no score); later ones are led by context rows
    for values in _chunks(_checked(blocks, check_columns), L + size, size, overlap=context):
        if n == 0 and len(values) < model.first_scored + 1:
            raise InputError(f"the file has {len(values)} rows, at least {model.first_scored + 1} are needed",
                             path=path)
        rows = len(values) - (context if n else 0)
        out.write(model.predictions_csv(values, context_rows=len(values) - rows, **options))
        n += rows
    return n


def _checked(blocks: Iterable[np.ndarray], check) -> Iterator[np.ndarray]:
    first = 0
    for values in blocks:
        check(values, first)
        first += len(values)
        yield values


def _chunks(blocks: Iterable[np.ndarray], first: int, size: int, overlap: int = 0) -> Iterator[np.ndarray]:
    """Re-cut blocks of rows: the first `first` rows, then `size` new rows at a time (the last chunk may be
    shorter), each after the first led by the `overlap` rows before it."""
    buffer, need, new_rows = None, first, False
    for block in blocks:
        buffer = block if buffer is None else np.concatenate([buffer, block])
        new_rows = True
        while len(buffer) >= need:
            yield buffer[:need]
            buffer = buffer[need - overlap:]
            need, new_rows = overlap + size, len(buffer) > overlap
    if new_rows:
        yield buffer
