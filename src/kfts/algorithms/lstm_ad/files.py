"""LSTM-AD's batch prediction CSV (docs/FORMATS.md): `score,rec_1,...,rec_d` per row, empty for the rows before
the first scored one, with flag a last 0/1 column; streamed through files of any size with context rows."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
from pyarrow import csv as pacsv

from kfts.algorithms.lstm_ad.estimator import SCORE_BATCH
from kfts.core.errors import InputError
from kfts.core.rowblocks import checked, chunks


def predictions_csv(model, values: np.ndarray, *, flag: bool = False, context_rows: int = 0) -> str:
    """flag: a last 0/1 column (1: score below the model's threshold). The first `context_rows` rows are
    context only (no output line)."""
    if flag and model.threshold is None:
        raise InputError("flag: this model has no anomaly threshold to flag with")
    scores, reconstructions = model.score(values, context_rows)
    empty = np.isnan(scores)
    columns = {"score": pa.array(scores, mask=empty)}
    for j in range(reconstructions.shape[1]):
        columns[f"rec_{j + 1}"] = pa.array(reconstructions[:, j], mask=empty)
    if flag:
        columns["flag"] = pa.array((scores < model.threshold).astype(np.int8), mask=empty)
    out = io.BytesIO()
    # pyarrow's writer: multi-threaded, shortest round-trip floats, empty cells for the unscored rows
    pacsv.write_csv(pa.table(columns), out, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return str(out.getbuffer(), "ascii")  # one copy, not two (getvalue, then decode)


def write_predictions(model, path, blocks, out, chunk_bytes: int, *, flag: bool = False) -> int:
    """A time step is scored from rows before it (seed: the sequence before it; paper: the windows that
    predicted it), so every chunk after the first is led by rows of context, which were written with the chunk
    before (predictions_csv(context_rows=...) leaves them out). Chunks start on a multiple of the scoring batch
    (of sequences in seed mode, which also puts them on a sequence boundary; of windows in paper mode), so that
    every forward pass sees the same rows as in one pass: matrix products of another batch size may round
    differently. In paper mode a window's predictions are also needed by the l - 1 rows after the next one,
    so a chunk ends on a whole batch of windows and the next one re-reads that batch's rows."""
    p = model.params
    L = p.sequence_length

    def check_columns(values, first):
        if values.shape[1] != model.n_series:
            raise InputError(
                f"the file has {values.shape[1]} columns (series), the model was trained on {model.n_series}",
                path=path,
                row=first + 1,
            )

    if p.scoring == "seed":
        rows_per_batch, lead = SCORE_BATCH * L, 0
    else:  # the l - 1 rows after a chunk's last window need the windows after it: whole batches of them
        rows_per_batch, lead = SCORE_BATCH, -(-(p.prediction_length - 1) // SCORE_BATCH) * SCORE_BATCH
    size = max(1, chunk_bytes // (4 * model.n_series * rows_per_batch)) * rows_per_batch
    context = L + lead
    n = 0
    # the first chunk is its own context (its first rows get no score); later ones are led by context rows
    for values in chunks(checked(blocks, check_columns), L + size, size, overlap=context):
        if n == 0 and len(values) < model.first_scored + 1:
            raise InputError(
                f"the file has {len(values)} rows, at least {model.first_scored + 1} are needed", path=path
            )
        rows = len(values) - (context if n else 0)
        out.write(predictions_csv(model, values, flag=flag, context_rows=len(values) - rows))
        n += rows
    return n
