"""Batch prediction of a CSV file of any size, in chunks, with bounded memory (docs/FORMATS.md, "Batch
prediction output"): what `kfts predict`, the batch-predict component and benchmarks run.

The input is streamed by csvio.iter_row_blocks and predicted chunk by chunk (by the algorithm's
write_predictions, which knows how its rows depend on each other) into a temporary file that replaces the
output only when every row is done, so a fault late in a file, or a killed process, leaves no output. The
bytes are those of one in-memory pass (the algorithm's predictions_csv on the whole file).
"""

from __future__ import annotations

import os

from kfts.core import csvio
from kfts.core.artifact import atomic_file

CHUNK_BYTES = 4 << 20  # float32 input per chunk: the model's own working memory comes on top


def write_predictions(
    model, input_path: str | os.PathLike, output_path: str | os.PathLike, *, chunk_bytes: int = CHUNK_BYTES, **options
) -> int:
    """Predict every row of `input_path` into `output_path` (atomically); returns the number of rows.
    `options` are the algorithm's predict_options (probabilities=... for InceptionTime, flag=... for LSTM-AD)."""
    from kfts.algorithms import of

    blocks = (values for _, _, values in csvio.iter_row_blocks(input_path))
    with atomic_file(output_path) as out:
        return of(model).write_predictions(model, input_path, blocks, out, chunk_bytes, **options)
