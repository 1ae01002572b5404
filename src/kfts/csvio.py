"""The CSV contract (SPEC "CSV input"): the one place where kfts reads CSV files.

Two layouts, no header, no index column, numeric values only:

- rows of series (InceptionTime): one series per row, optionally led by a label column;
- columns of series (LSTM-AD): one series per column, one time step per row.

Both are parsed by pyarrow's multi-threaded reader straight into float32 columns. When pyarrow refuses a
file, a slow but exact pass over the text finds the first fault so that the error names the row and column;
that pass runs only on the error path. Values that parse but are not allowed (empty cells, NaN, inf) are
located in the parsed columns. Row and column numbers are 1-based, as a person counts lines in the file.

Every reader takes a path, or a CsvBytes for CSV text already in memory (an HTTP request body), so that a
server's error messages are the same as the CLI's.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as pacsv

from kfts.errors import InputError

BLOCK_SIZE = 16 << 20  # bytes per parse block: large enough for long rows, small enough to use both cores


@dataclass(frozen=True)
class CsvBytes:
    """CSV text in memory, read like a file; `name` stands for the file name in error messages."""

    data: bytes
    name: str = "request body"

    def __fspath__(self) -> str:  # what InputError prints as the "file"
        return self.name


def _open(path) -> io.BufferedIOBase:
    return io.BytesIO(path.data) if isinstance(path, CsvBytes) else open(path, "rb")


def _arrow_source(path):
    return pa.BufferReader(path.data) if isinstance(path, CsvBytes) else path


@dataclass
class LabeledSeries:
    """InceptionTime training/evaluation data: labels kept verbatim as strings, values [n_series, length]."""

    labels: np.ndarray
    values: np.ndarray


def read_labeled_series(path: str | os.PathLike, *, min_classes: int = 2, length: int | None = None
                        ) -> LabeledSeries:
    """InceptionTime training (two classes at least) or evaluation file: label, then the time steps."""
    labels, values = _read(path, label_column=True)
    if values.shape[1] < 1:
        raise InputError("each row needs a label and at least one time step", path=path, row=1)
    if length is not None and values.shape[1] != length:
        raise InputError(f"rows have {values.shape[1]} time steps, the model was trained on {length}",
                         path=path, row=1)
    if len(np.unique(labels)) < min_classes:
        raise InputError(f"only one class ({labels[0]!r}): a classifier needs at least two", path=path)
    return LabeledSeries(labels, values)


def read_series_rows(path: str | os.PathLike, length: int | None = None) -> np.ndarray:
    """InceptionTime inference file: one unlabeled series per row, of the training length when given."""
    _, values = _read(path, label_column=False)
    if length is not None and values.shape[1] != length:
        raise InputError(f"rows have {values.shape[1]} time steps, the model was trained on {length}",
                         path=path, row=1)
    return values


def read_series_columns(path: str | os.PathLike, n_series: int | None = None,
                        min_rows: int | None = None) -> np.ndarray:
    """LSTM-AD file: one series per column, one time step per row -> [time steps, series]."""
    _, values = _read(path, label_column=False)
    if n_series is not None and values.shape[1] != n_series:
        raise InputError(f"the file has {values.shape[1]} columns (series), the model was trained on {n_series}",
                         path=path, row=1)
    if min_rows is not None and values.shape[0] < min_rows:
        raise InputError(f"the file has {values.shape[0]} rows, at least {min_rows} are needed", path=path)
    return values


def read_binary_labels(path: str | os.PathLike, n_rows: int) -> np.ndarray:
    """LSTM-AD evaluation labels: one 0 or 1 per row, aligned with the input's rows."""
    _, values = _read(path, label_column=False)
    if values.shape[1] != 1:
        raise InputError(f"expected one column of 0/1 labels, found {values.shape[1]}", path=path, row=1)
    if values.shape[0] != n_rows:
        raise InputError(f"has {values.shape[0]} labels for {n_rows} input rows", path=path)
    bad = np.flatnonzero((values[:, 0] != 0) & (values[:, 0] != 1))
    if bad.size:
        raise InputError(f"{values[bad[0], 0]:g} is not a 0/1 label", path=path, row=int(bad[0]) + 1, column=1)
    return values[:, 0].astype(np.int8)


def iter_row_blocks(path: str | os.PathLike, label_column: bool = False
                    ) -> Iterator[tuple[int, np.ndarray | None, np.ndarray]]:
    """Stream a file in blocks of rows with bounded memory: yields (first row index, labels, values)."""
    n_columns = _count_columns(path)
    reader = _arrow_call(path, label_column, lambda: pacsv.open_csv(
        _arrow_source(path), read_options=_read_options(n_columns), parse_options=_PARSE,
        convert_options=_convert_options(n_columns, label_column)))
    first_row = 0
    while True:
        try:
            batch = _arrow_call(path, label_column, reader.read_next_batch)
        except StopIteration:
            break
        labels, values = _to_numpy(path, pa.Table.from_batches([batch]), label_column, first_row)
        yield first_row, labels, values
        first_row += len(values)


# -- parsing ------------------------------------------------------------------------------------------------

_PARSE = pacsv.ParseOptions(delimiter=",", ignore_empty_lines=False)


def _read_options(n_columns: int) -> pacsv.ReadOptions:
    return pacsv.ReadOptions(column_names=[f"c{i}" for i in range(n_columns)], block_size=BLOCK_SIZE,
                             use_threads=True)


def _convert_options(n_columns: int, label_column: bool) -> pacsv.ConvertOptions:
    types = {f"c{i}": pa.float32() for i in range(n_columns)}
    if label_column:
        types["c0"] = pa.string()
    # Only an empty cell is missing: "nan"/"NA"/"null" must not silently become nulls or NaN-as-missing.
    return pacsv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=True,
                                quoted_strings_can_be_null=True)


def _read(path: str | os.PathLike, label_column: bool) -> tuple[np.ndarray | None, np.ndarray]:
    n_columns = _count_columns(path)
    table = _arrow_call(path, label_column, lambda: pacsv.read_csv(
        _arrow_source(path), read_options=_read_options(n_columns), parse_options=_PARSE,
        convert_options=_convert_options(n_columns, label_column)))
    return _to_numpy(path, table, label_column, first_row=0)


def _count_columns(path: str | os.PathLike) -> int:
    """Columns of the first row; also turns a missing, unreadable or empty file into an InputError."""
    try:
        with _open(path) as f:
            head = f.read(1 << 20)
            first_line = head.split(b"\n", 1)[0]
            while b"\n" not in head and len(first_line) == len(head):  # a first row longer than 1 MiB
                more = f.read(1 << 20)
                if not more:
                    break
                head += more
                first_line = head.split(b"\n", 1)[0]
    except FileNotFoundError:
        raise InputError("no such file", path=path) from None
    except IsADirectoryError:
        raise InputError("is a directory, not a CSV file", path=path) from None
    except OSError as e:
        raise InputError(f"cannot be read ({e.strerror})", path=path) from None
    if not head.strip():
        raise InputError("the file is empty", path=path)
    try:
        text = first_line.decode("utf-8-sig").rstrip("\r")
    except UnicodeDecodeError:
        raise InputError("is not UTF-8 text", path=path, row=1) from None
    if not text.strip():
        raise InputError("is blank: remove blank lines", path=path, row=1)
    return len(next(csv.reader([text])))


def _arrow_call(path, label_column: bool, call):
    """Run a pyarrow parse; on refusal, find and report the first fault exactly."""
    try:
        return call()
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError) as e:
        fault = _first_text_fault(path, label_column)
        if fault is not None:
            raise fault from None
        raise InputError(f"cannot be parsed as CSV ({e})", path=path) from None


def _to_numpy(path, table: pa.Table, label_column: bool, first_row: int
              ) -> tuple[np.ndarray | None, np.ndarray]:
    _check_no_empty_cells(path, table, first_row)
    columns = table.columns
    del table
    labels = None
    if label_column:
        labels = columns[0].to_numpy(zero_copy_only=False).astype(str)
        columns = columns[1:]
    # Fill a float32 matrix column by column, dropping each arrow column once copied: peak memory stays
    # close to one copy of the data (np.empty pages are only touched as they are written).
    values = np.empty((sum(len(c) for c in columns[:1]) if columns else 0, len(columns)), dtype=np.float32)
    for j in range(len(columns)):
        values[:, j] = columns[j].to_numpy()
        columns[j] = None
    _check_finite(path, values, first_row, column_offset=1 if label_column else 0)
    return labels, values


def _check_no_empty_cells(path, table: pa.Table, first_row: int) -> None:
    rows = [(pc.index(pc.is_null(col), True).as_py(), j) for j, col in enumerate(table.columns) if col.null_count]
    if rows:
        row, j = min(rows)
        raise InputError("empty cell: every cell needs a number" if j or table.schema.field(0).type != pa.string()
                         else "empty label", path=path, row=first_row + row + 1, column=j + 1)


def _check_finite(path, values: np.ndarray, first_row: int, column_offset: int) -> None:
    if values.size and not np.isfinite(values).all():
        row = int(np.argmin(np.isfinite(values).all(axis=1)))
        col = int(np.argmin(np.isfinite(values[row])))
        raise InputError(f"{values[row, col]} is not allowed: values must be finite numbers",
                         path=path, row=first_row + row + 1, column=col + column_offset + 1)


def _first_text_fault(path, label_column: bool) -> InputError | None:
    """The exact first fault of a file that pyarrow refused: encoding, blank line, ragged row, non-number.

    Labels (first column of a labeled file) are never numeric-checked here: pyarrow reads them as text.
    """
    try:
        with _open(path) as f:
            raw = f.read()
    except OSError:
        return None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        return InputError("is not UTF-8 text", path=path, row=line)
    expected = None
    for row, fields in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
        if not fields or fields == [""] and expected != 1:
            return InputError("is blank: remove blank lines", path=path, row=row)
        if expected is None:
            expected = len(fields)
        elif len(fields) != expected:
            return InputError(f"has {len(fields)} columns, the rows above have {expected}", path=path, row=row)
        for col, cell in enumerate(fields, start=1):
            if col == 1 and label_column:
                continue
            if not _is_number(cell):
                hint = " (kfts CSV files have no header row)" if row == 1 else ""
                return InputError(f"{cell!r} is not a number{hint}", path=path, row=row, column=col)
    return None


def _is_number(cell: str) -> bool:
    if cell.strip() != cell or not cell:
        return False
    try:
        float(cell)
    except ValueError:
        return False
    return "_" not in cell  # Python accepts 1_000, pyarrow does not
