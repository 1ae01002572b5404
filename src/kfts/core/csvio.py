"""The CSV contract (docs/FORMATS.md): the one place where kfts reads CSV files.

Two layouts, no header, no index column, numeric values only:

- rows of series (InceptionTime): one series per row, optionally led by a label column (text, kept verbatim);
- columns of series (LSTM-AD): one series per column, one time step per row.

Both are parsed by pyarrow's multi-threaded reader straight into float32 columns (correctly rounded).
Whatever pyarrow refuses, and whatever it accepts but the contract does not (empty cells, blank lines, NaN,
inf, values beyond float32, a quote left open), sends the file through an exact, streaming pass over its text
that names the first fault by row and column. That pass is slow, so it runs only on the error path. Row and
column numbers are 1-based, as a person counts lines in the file.

The text pass accepts exactly what pyarrow accepts: cells are numbers after trimming spaces and tabs
(``1``, `` -2.5e3``, ``"4"``), lines end in LF, CRLF or CR, a UTF-8 byte-order mark is skipped, and quoting
follows RFC 4180 (a quoted label may hold commas; ``""`` is a quote), with line breaks inside quotes refused.

A cell holds at most MAX_CELL bytes, counted on the raw text between two commas or line breaks; pyarrow would
read a number of any length, so a scan of the raw bytes looks for longer ones first. Every step of the text
pass takes time linear in its input (no regular expression here backtracks more than a step), whatever the file
holds: one request body cannot hold up a server.

Every reader takes a path, or a CsvBytes for CSV text already in memory (an HTTP request body), so that a
server's error messages are the same as the CLI's.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as pacsv

from kfts.core.errors import InputError, shown

# Bytes per parse block (pyarrow's default; a longer first row gets larger blocks). pyarrow reads ahead and
# parses a few blocks at once, so the block size bounds its memory; larger blocks measured no faster.
BLOCK_SIZE = 1 << 20

# Bytes a cell may hold between its commas: a float32 written exactly takes about a hundred at most. The cap
# bounds what the text pass and error messages work on.
MAX_CELL = 1000
# Any run of more than MAX_CELL bytes covers a whole aligned window of this many (see _may_hold_long_cell).
_WINDOW = MAX_CELL // 2 + 1

# pyarrow's float grammar once spaces and tabs are trimmed; its other spellings (nan, inf, Infinity) are
# not finite, so the contract refuses them anyway. Each character has one place in it (digits, then an
# optional point and digits, then an optional exponent), so a failed match backtracks in linear time; the
# grammar `[0-9]+\.?[0-9]*` took time quadratic in a run of digits before a bad character.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NOT_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)
# A decimal at or beyond this rounds to float32 infinity (float32's max plus half its last step). Decimal,
# not Fraction: Fraction reads digits through int(), which Python refuses past sys.get_int_max_str_digits().
_FLOAT32_OVERFLOW = Decimal(2**128 - 2**103)


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


def read_labeled_series(path: str | os.PathLike, *, min_classes: int = 2, length: int | None = None) -> LabeledSeries:
    """InceptionTime training (two classes at least) or evaluation file: label, then the time steps."""
    labels, values = _read(path, label_column=True)
    assert labels is not None  # read with label_column
    if length is not None and values.shape[1] != length:
        raise InputError(f"rows have {values.shape[1]} time steps, the model was trained on {length}", path=path, row=1)
    if len(np.unique(labels)) < min_classes:
        raise InputError(f"only one class ({shown(str(labels[0]))}): a classifier needs at least two", path=path)
    return LabeledSeries(labels, values)


def read_series_rows(path: str | os.PathLike, length: int | None = None) -> np.ndarray:
    """InceptionTime inference file: one unlabeled series per row, of the training length when given."""
    _, values = _read(path, label_column=False)
    check_length(path, values, length)
    return values


def check_length(path, values: np.ndarray, length: int | None, first_row: int = 0) -> None:
    """Inference rows must have the training length (also used on each streamed block)."""
    if length is not None and values.shape[1] != length:
        raise InputError(
            f"rows have {values.shape[1]} time steps, the model was trained on {length}", path=path, row=first_row + 1
        )


def read_series_columns(
    path: str | os.PathLike, n_series: int | None = None, min_rows: int | None = None
) -> np.ndarray:
    """LSTM-AD file: one series per column, one time step per row -> [time steps, series]."""
    _, values = _read(path, label_column=False)
    if n_series is not None and values.shape[1] != n_series:
        raise InputError(
            f"the file has {values.shape[1]} columns (series), the model was trained on {n_series}", path=path, row=1
        )
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


def iter_row_blocks(
    path: str | os.PathLike, label_column: bool = False
) -> Iterator[tuple[int, np.ndarray | None, np.ndarray]]:
    """Stream a file in blocks of rows with bounded memory: yields (first row index, labels, values).

    A fault anywhere is raised when its block is reached, so a caller that writes as it goes must write
    to a temporary file (kfts.core.artifact.atomic_file)."""
    n_columns, first_line = _first_row(path, label_column)
    _check_last_line(path, label_column)
    _check_cell_sizes(path, label_column)
    reader = _arrow_call(
        path,
        label_column,
        lambda: pacsv.open_csv(
            _arrow_source(path),
            read_options=_read_options(n_columns, first_line),
            parse_options=_PARSE,
            convert_options=_convert_options(n_columns, label_column),
        ),
    )
    first_row = 0
    while True:
        try:
            batch = _arrow_call(path, label_column, reader.read_next_batch)
        except StopIteration:
            break
        labels, values = _to_numpy(path, pa.Table.from_batches([batch]), label_column, first_row)
        yield first_row, labels, values
        first_row += len(values)


def first_block(path: str | os.PathLike, label_column: bool = False) -> np.ndarray:
    """The values of a file's first block of rows: its shape, without reading the whole file."""
    return next(iter_row_blocks(path, label_column=label_column))[2]


# -- parsing ------------------------------------------------------------------------------------------------

_PARSE = pacsv.ParseOptions(delimiter=",", ignore_empty_lines=False)


def _read_options(n_columns: int, first_line: int) -> pacsv.ReadOptions:
    # a row must fit in one block: pyarrow refuses rows that straddle two
    return pacsv.ReadOptions(
        column_names=[f"c{i}" for i in range(n_columns)], block_size=max(BLOCK_SIZE, 4 * first_line), use_threads=True
    )


def _convert_options(n_columns: int, label_column: bool) -> pacsv.ConvertOptions:
    types = {f"c{i}": pa.float32() for i in range(n_columns)}
    if label_column:
        types["c0"] = pa.string()
    # Only an empty cell is missing: "nan"/"NA"/"null" must not silently become nulls or NaN-as-missing.
    return pacsv.ConvertOptions(
        column_types=types, null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=True
    )


def _read(path: str | os.PathLike, label_column: bool) -> tuple[np.ndarray | None, np.ndarray]:
    """The whole file. Blocks are appended to one float32 matrix that grows in place (realloc of a large
    allocation remaps pages rather than copying them), so peak memory stays near one copy of the data
    rather than pyarrow's table plus a numpy copy of it."""
    labels, values, n_rows = [], None, 0
    for _, block_labels, block in iter_row_blocks(path, label_column):
        if values is None:
            values = np.empty((0, block.shape[1]), dtype=np.float32)
        end = n_rows + len(block)
        if end > len(values):
            values.resize((max(2 * len(values), end), values.shape[1]), refcheck=False)
        values[n_rows:end] = block
        n_rows = end
        if block_labels is not None:
            labels.append(block_labels)
    assert values is not None  # a file that is not empty has a block (_first_row refuses an empty one)
    values.resize((n_rows, values.shape[1]), refcheck=False)
    return (np.concatenate(labels) if label_column else None), values


def _first_row(path, label_column: bool) -> tuple[int, int]:
    """(columns, bytes) of the first row; also turns a missing, unreadable or empty file into an InputError."""
    if not isinstance(path, CsvBytes) and os.path.exists(path) and not os.path.isdir(path):
        if not stat.S_ISREG(os.stat(path).st_mode):  # opening a pipe waits for a writer; /dev/zero never ends
            raise InputError(
                "is not a regular file (a pipe or a device): kfts reads a CSV file more than once, "
                "so save it to a file first",
                path=path,
            )
    try:
        with _open(path) as f:
            head = more = f.read(1 << 20)
            while more and not re.search(rb"[\r\n]", more):  # a first row longer than 1 MiB
                more = f.read(1 << 20)
                head += more
    except FileNotFoundError:
        raise InputError("no such file", path=path) from None
    except IsADirectoryError:
        raise InputError("is a directory, not a CSV file", path=path) from None
    except OSError as e:
        raise InputError(f"cannot be read ({e.strerror})", path=path) from None
    head = head.removeprefix(codecs.BOM_UTF8)
    if not head.strip():
        raise InputError("the file is empty", path=path)
    line = re.split(rb"\r\n|\r|\n", head, maxsplit=1)[0]
    fault, fields = _parse_line(path, 1, line, None, label_column=False)
    if fields is None:  # not text, or blank: the first row cannot be read at all
        assert fault is not None  # _parse_line gives the fault of a line it has no fields for
        raise fault
    if label_column and len(fields) < 2:
        raise InputError("each row needs a label and at least one time step", path=path, row=1)
    return len(fields), len(line)


def _check_last_line(path, label_column: bool) -> None:
    """pyarrow reads a quote left open on the last line, with no line break after it, as if it were closed."""
    with _open(path) as f:
        size = f.seek(0, io.SEEK_END)
        start = f.seek(max(0, size - (1 << 20)))
        tail = f.read()
    if start == 0:  # the whole file: a BOM before the first cell would hide its quote from the csv module
        tail = tail.removeprefix(codecs.BOM_UTF8)
        size = len(tail)
    lines = re.split(rb"\r\n|\r|\n", tail)
    # (a last line longer than the tail read here is left to pyarrow: its start is unknown)
    if tail and tail[-1:] not in b"\r\n" and (len(lines) > 1 or len(tail) == size):
        line = lines[-1]
        if _open_quote(line.decode("utf-8", "replace")):
            raise _located(path, label_column, InputError("a quote opened on the last line is never closed", path=path))


def _check_cell_sizes(path, label_column: bool) -> None:
    """Refuse a cell longer than MAX_CELL bytes, which pyarrow would read: the exact pass has the last word."""
    if _may_hold_long_cell(path):
        fault = _first_text_fault(path, label_column)
        if fault is not None:
            raise fault


def _may_hold_long_cell(path) -> bool:
    """Whether the text has an aligned window of _WINDOW bytes with no comma or line break in it, as every
    cell longer than MAX_CELL has (a quoted cell of nearly MAX_CELL bytes may have one too: then the exact pass
    finds nothing). A few vector operations per MiB (benchmarks/csv_parse.py times them)."""
    with _open(path) as f:
        while chunk := f.read(_WINDOW << 11):  # a multiple of _WINDOW: windows stay aligned across chunks
            data = np.frombuffer(chunk, np.uint8)[: len(chunk) // _WINDOW * _WINDOW]
            ends = (data == ord(",")) | (data == ord("\n")) | (data == ord("\r"))
            if not ends.reshape(-1, _WINDOW).any(axis=1).all():
                return True
    return False


def _arrow_call(path, label_column: bool, call):
    """Run a pyarrow parse; on refusal, find and report the first fault exactly."""
    try:
        return call()
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError) as e:
        raise _located(path, label_column, InputError(f"cannot be parsed as CSV ({str(e)[:200]})", path=path)) from None


def _to_numpy(path, table: pa.Table, label_column: bool, first_row: int) -> tuple[np.ndarray | None, np.ndarray]:
    _check_cells(path, table, label_column, first_row)
    columns = table.columns
    del table
    labels = None
    if label_column:
        labels = columns[0].to_numpy(zero_copy_only=False).astype(str)
        columns = columns[1:]
    # Fill a float32 matrix column by column, dropping each arrow column once copied: peak memory stays
    # close to one copy of the data (np.empty pages are only touched as they are written).
    values = np.empty((len(columns[0]) if columns else 0, len(columns)), dtype=np.float32)
    finite = True
    for j in range(len(columns)):
        column = columns[j].to_numpy()
        values[:, j] = column
        columns[j] = None
        finite = finite and bool(np.isfinite(column).all())
    if not finite:
        row = int(np.argmin(np.isfinite(values).all(axis=1)))
        col = int(np.argmin(np.isfinite(values[row])))
        raise _located(
            path,
            label_column,
            InputError(
                f"{values[row, col]} is not allowed: values must be finite numbers",
                path=path,
                row=first_row + row + 1,
                column=col + (2 if label_column else 1),
            ),
        )
    return labels, values


def _check_cells(path, table: pa.Table, label_column: bool, first_row: int) -> None:
    """Empty cells and blank lines arrive as nulls; a label holding a line break is a quote left open."""
    rows = [(pc.index(pc.is_null(col), True).as_py(), j) for j, col in enumerate(table.columns) if col.null_count]
    if label_column and table.num_rows and pc.any(pc.match_substring_regex(table.column(0), "[\r\n]")).as_py():
        rows.append((pc.index(pc.match_substring_regex(table.column(0), "[\r\n]"), True).as_py(), 0))
    if rows:
        row, j = min(rows)
        raise _located(
            path,
            label_column,
            InputError("empty cell or unreadable label", path=path, row=first_row + row + 1, column=j + 1),
        )


# -- the exact pass over the text (error path only) ----------------------------------------------------------


def _located(path, label_column: bool, fallback: InputError) -> InputError:
    """The first fault of the file, found by reading its text; `fallback` if the text pass finds none."""
    try:
        return _first_text_fault(path, label_column) or fallback
    except OSError:
        return fallback


def _first_text_fault(path, label_column: bool) -> InputError | None:
    expected = None
    for row, line in _numbered_lines(path):
        fault, fields = _parse_line(path, row, line, expected, label_column)
        if fault is not None:
            return fault
        assert fields is not None  # _parse_line gives the fields of a line without a fault
        expected = expected or len(fields)
    return None


def _numbered_lines(path) -> Iterator[tuple[int, bytes]]:
    """(row, line) of the file, without line endings or the UTF-8 BOM."""
    with _open(path) as f:
        row = 0
        for chunk in f:  # one line ending in LF; CR alone also ends a line, for pyarrow and the csv module too
            lines = re.split(rb"\r\n|\r|\n", chunk.removeprefix(codecs.BOM_UTF8) if row == 0 else chunk)
            if lines[-1] == b"" and len(lines) > 1:
                lines.pop()  # what followed the last line ending
            for line in lines:
                row += 1
                yield row, line


def _parse_line(
    path, row: int, line: bytes, expected: int | None, label_column: bool
) -> tuple[InputError | None, list[str] | None]:
    """(first fault, fields) of one line of the file."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        return _not_utf8(path, row, line, e), None
    if not text.strip():
        return InputError("is blank: remove blank lines", path=path, row=row), None
    long = _long_cell(path, row, line)
    if long is not None:
        return long, None
    try:
        fields = _fields(text)
    except csv.Error as e:  # e.g. a quoted label with commas beyond the csv module's size limit
        return InputError(f"cannot be read as CSV ({e})", path=path, row=row), None
    column = _open_quote(fields)
    if column:
        return InputError("a quote opened here is never closed on this line", path=path, row=row, column=column), fields
    if expected is not None and len(fields) != expected:
        return InputError(f"has {len(fields)} columns, the rows above have {expected}", path=path, row=row), fields
    for column, cell in enumerate(fields, start=1):
        if label_column and column == 1:
            if not cell:
                return InputError("empty label", path=path, row=row, column=column), fields
            continue
        problem = _cell_fault(cell, row)
        if problem:
            return InputError(problem, path=path, row=row, column=column), fields
    return None, fields


def _long_cell(path, row: int, line: bytes) -> InputError | None:
    """The first cell of `line` longer than MAX_CELL bytes, counted as _may_hold_long_cell does, or None."""
    if len(line) <= MAX_CELL:
        return None
    start = 0
    for cell in line.split(b","):
        if len(cell) > MAX_CELL:
            break
        start += len(cell) + 1
    else:
        return None
    try:  # the cells before it are short: what csv finds there counts them (an open quote's cell is this one)
        column = max(1, len(_fields(line[:start].decode("utf-8"))))
    except csv.Error:  # a quoted label holding commas beyond the csv module's size limit
        column = None
    return InputError(
        f"the cell is too long: {len(cell):,} bytes, at most {MAX_CELL:,} allowed (it starts "
        f"{shown(cell[:20].decode('utf-8', 'replace'))})",
        path=path,
        row=row,
        column=column,
    )


def _not_utf8(path, row: int, line: bytes, e: UnicodeDecodeError) -> InputError:
    return InputError(
        f"is not UTF-8 text (byte 0x{line[e.start]:02x} at character {e.start + 1}; save the file as UTF-8)",
        path=path,
        row=row,
    )


def _first_undecodable_line(path) -> InputError:
    """Where a file that a text reader could not decode stops being UTF-8 (its error says neither row nor byte)."""
    for row, line in _numbered_lines(path):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as e:
            return _not_utf8(path, row, line, e)
    return InputError("is not UTF-8 text: save the file as UTF-8", path=path)


def _fields(text: str) -> list[str]:
    """The cells of one line; a quote left open keeps the line break added here."""
    return next(csv.reader(io.StringIO(text + "\n", newline="")))


def _open_quote(line: str | list[str]) -> int | None:
    """The column whose quote is still open at the end of the line (fields of `line + "\\n"`), or None."""
    if isinstance(line, str):
        try:
            line = _fields(line)
        except csv.Error:
            return None
    return next((j for j, cell in enumerate(line, start=1) if "\n" in cell), None)


def _cell_fault(cell: str, row: int) -> str | None:
    """Why `cell` is not a finite float32 number, or None."""
    number = cell.strip(" \t")
    if not number:
        return "empty cell: every cell needs a number"
    if _NUMBER.fullmatch(number):
        # exact only near the limit, where float64 cannot tell (and Decimal refuses exponents past 10^18)
        magnitude = abs(float(number))
        if magnitude == float("inf") or magnitude > 3.4e38 and Decimal(number).copy_abs() >= _FLOAT32_OVERFLOW:
            return f"{shown(cell)} is too large: values must fit in float32 (at most 3.4028235e38 in magnitude)"
        return None
    if _NOT_FINITE.fullmatch(number):
        return f"{shown(cell)} is not allowed: values must be finite numbers"
    hint = ""
    if ";" in cell or "\t" in cell:
        hint = " (kfts CSV files are comma-separated)"
    elif row == 1:
        hint = " (kfts CSV files have no header row)"
    return f"{shown(cell)} is not a number{hint}"


def read_text_labels(path) -> list[str]:
    """A label file of text labels (class names), one per row."""
    labels = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            for row, fields in enumerate(csv.reader(f), 1):
                if len(fields) != 1 or not fields[0].strip():
                    found = "an empty row" if not "".join(fields).strip() else f"{len(fields)} columns"
                    raise InputError(f"a label file holds one label per row, found {found}", path=path, row=row)
                labels.append(fields[0])
    except FileNotFoundError:
        raise InputError("no such file", path=path) from None
    except UnicodeDecodeError:
        raise _first_undecodable_line(path) from None
    except (OSError, csv.Error) as e:
        raise InputError(f"cannot be read as a label file ({e})", path=path) from None
    if not labels:
        raise InputError("the file is empty", path=path)
    return labels
