"""Blocks of rows as csvio.iter_row_blocks streams them, checked and re-cut into the chunks an algorithm
predicts at a time (with the rows before each chunk that its predictions depend on)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np


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
            buffer = buffer[need - overlap :]
            need, new_rows = overlap + size, len(buffer) > overlap
    if new_rows:
        assert buffer is not None  # new rows are in it
        yield buffer
