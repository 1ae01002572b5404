"""Batch prediction of a CSV file of any size, in chunks, with bounded memory (docs/FORMATS.md, "Batch
prediction output"): what `kfts predict`, the batch-predict component and benchmarks run.

The input is streamed by csvio.iter_row_blocks and predicted chunk by chunk (by the algorithm's
write_predictions, which knows how its rows depend on each other) into a temporary file that replaces the
output only when every row is done, so a fault late in a file, or a killed process, leaves no output. The
bytes are those of one in-memory pass (the algorithm's predictions_csv on the whole file).
"""

from __future__ import annotations

import os
from typing import Iterable, Iterator

import numpy as np

from kfts import csvio
from kfts.artifact import atomic_file

CHUNK_BYTES = 4 << 20  # float32 input per chunk: the model's own working memory comes on top


def write_predictions(model, input_path: str | os.PathLike, output_path: str | os.PathLike, *,
                      chunk_bytes: int = CHUNK_BYTES, **options) -> int:
    """Predict every row of `input_path` into `output_path` (atomically); returns the number of rows.
    `options` are the algorithm's predict_options (probabilities=... for InceptionTime, flag=... for LSTM-AD)."""
    from kfts.algorithms import of
    blocks = (values for _, _, values in csvio.iter_row_blocks(input_path))
    with atomic_file(output_path) as out:
        return of(model).write_predictions(model, input_path, blocks, out, chunk_bytes, **options)


def checked(blocks: Iterable[np.ndarray], check) -> Iterator[np.ndarray]:
    """The blocks, each passed to check(values, index of its first row) before it is handed on."""
    first = 0
    for values in blocks:
        check(values, first)
        first += len(values)
        yield values


def chunks(blocks: Iterable[np.ndarray], first: int, size: int, overlap: int = 0) -> Iterator[np.ndarray]:
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
