"""Batch prediction of a CSV file of any size, in chunks, with bounded memory (SPEC "Outputs of batch prediction").

The input is streamed by csvio.iter_row_blocks and predicted chunk by chunk into a temporary file that
replaces the output only when every row is done, so a fault late in a file, or a killed process, leaves
no output. The bytes are those of one in-memory pass (model.predictions_csv on the whole file):

- InceptionTime rows are independent. Chunks are whole multiples of the network's inference batch, so
  every forward pass sees the same rows as in one pass.
- LSTM-AD scores each time step from the sequence before it: a chunk starts on a sequence boundary and is
  led by the previous sequence as context (its rows, already written, are dropped from the chunk's output).
  Chunks are whole multiples of the scoring batch of sequences, for the same reason as above.
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

    rows_per_batch = SCORE_BATCH * L
    size = max(1, chunk_bytes // (4 * model.n_series * rows_per_batch)) * rows_per_batch
    n = 0
    # the first chunk is its own context (its first sequence gets no score); later ones are led by L rows
    for values in _chunks(_checked(blocks, check_columns), L + size, size, overlap=L):
        if n == 0 and len(values) < L + 1:
            raise InputError(f"the file has {len(values)} rows, at least {L + 1} are needed", path=path)
        text = model.predictions_csv(values, **options)
        if n:
            text = text.split("\n", L)[L]  # the context rows were written with the chunk before
        out.write(text)
        n += len(values) - (L if n else 0)
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
