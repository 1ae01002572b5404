"""Fuzzing the CSV contract: generated files, valid and broken in every way a file can be.

Every input either parses to exactly the array an independent, deliberately simple reference parser (below)
computes, or raises InputError naming the file and the same row as the reference; never another exception,
never a hang. Both layouts (rows of series, with and without labels; columns of series) are read whole and
streamed in small blocks.
"""

from __future__ import annotations

import contextlib
import io
import re
import signal
from fractions import Fraction
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kfts import cli
from kfts.core import csvio
from kfts.core.errors import InputError

FUZZ = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

# -- the reference parser: the contract, written as plainly as possible ---------------------------------------

F32_MAX = np.finfo(np.float32).max
NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


class Refused(Exception):
    def __init__(self, row):
        super().__init__(row)
        self.row = row


def fields_of(line: str) -> list[str] | None:
    """RFC 4180 fields of one line, lenient like pyarrow (`"1"5` is 15, `a"b` is a"b); None if a quote stays open."""
    fields, cell, state = [], "", "start"
    for ch in line:
        if state == "quoted":
            state, cell = ("closing", cell) if ch == '"' else ("quoted", cell + ch)
        elif state == "closing" and ch == '"':
            state, cell = "quoted", cell + '"'
        elif ch == ",":
            fields.append(cell)
            state, cell = "start", ""
        elif ch == '"' and state == "start":
            state = "quoted"
        else:
            state, cell = "plain", cell + ch
    if state == "quoted":
        return None
    return fields + [cell]


def exact_float32(text: str) -> np.float32:
    """The float32 nearest to the decimal `text` (ties to even), by exact rational arithmetic."""
    value = Fraction(text)
    with np.errstate(over="ignore"):
        guess = np.float32(float(value))
        candidates = [guess, np.nextafter(guess, np.float32(np.inf)), np.nextafter(guess, np.float32(-np.inf))]
    candidates = [c for c in candidates if np.isfinite(c)]
    best = min(candidates, key=lambda c: (abs(Fraction(float(c)) - value), int(np.float32(c).view(np.uint32)) & 1))
    if abs(value) >= Fraction(float(F32_MAX)) + Fraction(2**103):  # halfway to the next power: infinity
        raise OverflowError
    if best == 0:  # the rationals have no -0: a negative decimal that rounds to zero is -0.0
        return np.float32(-0.0) if text.startswith("-") else np.float32(0.0)
    return best


def reference(data: bytes, label_column: bool) -> tuple[list[str], np.ndarray]:
    lines = re.split(rb"\r\n|\r|\n", data.removeprefix(b"\xef\xbb\xbf"))
    if lines[-1] == b"":
        lines.pop()
    if not b"".join(lines).strip():
        raise Refused(None)  # empty file
    labels, rows, width = [], [], None
    first = fields_of(lines[0].decode("utf-8", "replace"))
    if label_column and first is not None and lines[0].strip() and len(first) < 2:
        raise Refused(1)  # labels and no time steps
    for row, raw in enumerate(lines, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Refused(row) from None
        if any(len(cell) > csvio.MAX_CELL for cell in raw.split(b",")):
            raise Refused(row)  # more bytes between two commas than a cell may hold
        fields = fields_of(line) if line.strip() else None
        if fields is None or (width is not None and len(fields) != width):
            raise Refused(row)
        width = len(fields)
        if label_column:
            if not fields[0]:
                raise Refused(row)
            labels.append(fields.pop(0))
        values = []
        for cell in fields:
            number = cell.strip(" \t")
            if not NUMBER.fullmatch(number):
                raise Refused(row)
            if abs(float(number)) > 1e39:
                raise Refused(row)
            try:
                values.append(exact_float32(number))
            except OverflowError:
                raise Refused(row) from None
        rows.append(values)
    return labels, np.array(rows, dtype=np.float32).reshape(len(rows), width - label_column)


# -- generated files ----------------------------------------------------------------------------------------

floats32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@st.composite
def number_cells(draw) -> str:
    v = draw(floats32)
    style = draw(st.sampled_from(["repr", "g9", "e", "f3", "int"]))
    text = {
        "repr": repr(float(v)),
        "g9": f"{v:.9g}",
        "e": f"{v:e}",
        "f3": f"{v:.3f}",
        "int": str(int(v)) if abs(v) < 1e15 else repr(float(v)),
    }[style]
    if draw(st.booleans()) and not text.startswith("-"):
        text = draw(st.sampled_from(["+", "", "00"])) + text
    if draw(st.integers(0, 5)) == 0:
        text = draw(st.sampled_from([" ", "\t", "  "])) + text + draw(st.sampled_from(["", " "]))
    if draw(st.integers(0, 5)) == 0:
        text = f'"{text}"'
    return text


ODD_CELLS = [
    "",
    " ",
    '""',
    "nan",
    "NaN",
    "-inf",
    "Infinity",
    "1e39",
    "-1e39",
    "3.4028235e38",
    "3.4028236e38",
    "-3.4028235677973366e38",
    "1e-50",
    "1e400",
    "1e-400",
    "abc",
    "1_0",
    "0x1F",
    "1e",
    ".",
    "-",
    "+",
    "1.5.5",
    "１",
    "1d5",
    "\x00",
    "1\x00",
    '"open',
    'a"b',
    '"1"5',
    "e5",
    ".e1",
    "٣",
    "1,5",
    "TRUE",
]

label_text = st.text(alphabet="abcXYZ019 .-_é異\"',", min_size=0, max_size=6)


def quoted(text: str) -> str:
    if any(ch in text for ch in ',"') or text.startswith(" "):
        return '"' + text.replace('"', '""') + '"'
    return text


@st.composite
def csv_files(draw, label_column: bool) -> bytes:
    n_rows, n_values = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    cell = st.one_of(number_cells(), number_cells(), number_cells(), st.sampled_from(ODD_CELLS))
    rows = []
    for _ in range(n_rows):
        cells = [draw(cell if draw(st.integers(0, 3)) else number_cells()) for _ in range(n_values)]
        if label_column:
            cells.insert(0, quoted(draw(st.one_of(label_text, st.sampled_from(["1.0", "abnormal", "1"])))))
        rows.append(cells)
    # faults of the whole structure
    broken = draw(
        st.sets(
            st.sampled_from(
                ["ragged", "blank", "header", "delimiter", "utf16", "latin1", "bom", "trailing_blank", "open_quote"]
            ),
            max_size=2,
        )
    )
    if "ragged" in broken:
        r = draw(st.integers(0, n_rows - 1))
        rows[r] = rows[r][:-1] if draw(st.booleans()) and len(rows[r]) > 1 else rows[r] + ["1"]
    if "header" in broken:
        rows.insert(0, (["label"] if label_column else []) + [f"t{i}" for i in range(n_values)])
    if "open_quote" in broken:
        r = draw(st.integers(0, len(rows) - 1))
        rows[r][0] = '"' + rows[r][0]
    delimiter = draw(st.sampled_from([";", "\t", "|"])) if "delimiter" in broken else ","
    lines = [delimiter.join(cells) for cells in rows]
    if "blank" in broken:
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["", " ", "\t"])))
    endings = draw(st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=len(lines), max_size=len(lines)))
    text = "".join(line + end for line, end in zip(lines, endings))
    if not draw(st.booleans()):
        text = text[: -len(endings[-1])]  # no line ending after the last row
    if "trailing_blank" in broken:
        text += "\n\n"
    if "utf16" in broken:
        return text.encode("utf-16")
    if "latin1" in broken:
        return text.encode("utf-8", "replace").replace("é".encode(), b"\xe9")
    return (b"\xef\xbb\xbf" if "bom" in broken else b"") + text.encode("utf-8")


# -- the property ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def time_limit(seconds: int):
    """A hang is a failure, not a stuck test run."""

    def hung(signum, frame):
        raise TimeoutError(f"csvio took more than {seconds}s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def read_whole(path, layout: str):
    if layout == "labeled":
        data = csvio.read_labeled_series(path, min_classes=1)
        return data.labels.tolist(), data.values
    if layout == "rows":
        return [], csvio.read_series_rows(path)
    return [], csvio.read_series_columns(path)


def read_streamed(path, layout: str):
    blocks = list(csvio.iter_row_blocks(path, label_column=layout == "labeled"))
    labels = [lab for _, block_labels, _ in blocks if block_labels is not None for lab in block_labels.tolist()]
    return labels, np.concatenate([v for _, _, v in blocks])


def check(tmp_path, data: bytes, layout: str):
    path = tmp_path / "fuzz.csv"
    path.write_bytes(data)
    try:
        expected = reference(data, label_column=layout == "labeled")
    except Refused as refused:
        expected = refused
    with mock.patch.object(csvio, "BLOCK_SIZE", 256), time_limit(20):
        for read in (read_whole, read_streamed):
            try:
                labels, values = read(path, layout)
            except InputError as error:
                assert error.path == str(path), str(error)
                assert isinstance(expected, Refused), f"{read.__name__} refused a valid file: {error}\n{data!r}"
                assert error.row == expected.row, f"{error} (reference: row {expected.row})\n{data!r}"
                continue
            assert not isinstance(expected, Refused), f"{read.__name__} took a bad file (row {expected.row})\n{data!r}"
            assert labels == expected[0]
            assert values.dtype == np.float32 and values.shape == expected[1].shape, data
            # bit for bit: -0.0 is not 0.0, and the nearest float32 is the only right one
            np.testing.assert_array_equal(values.view(np.uint32), expected[1].view(np.uint32), err_msg=repr(data))


@FUZZ
@given(data=csv_files(label_column=True))
@example(data=b"1.0,1,2\nabnormal,3,4\n")
@example(data=b'"a\nb",1\n')
@example(data=b"a,3.4028235e38\nb,3.4028236e38\n")
def test_fuzz_labeled_rows(tmp_path, data):
    check(tmp_path, data, "labeled")


@FUZZ
@given(data=csv_files(label_column=False))
@example(data=b"1,2\n\n3,4\n")
@example(data=b' 1 ,"2"\r3,4\r')
@example(data=b"1.00000005960464478\n")
@example(data=b'\xef\xbb\xbf"3.4028235e38')  # a BOM, then a quote left open on the only line, no line break
def test_fuzz_unlabeled_rows(tmp_path, data):
    check(tmp_path, data, "rows")


@FUZZ
@given(data=csv_files(label_column=False))
@example(data=b"1\n2\n\n")
def test_fuzz_series_columns(tmp_path, data):
    check(tmp_path, data, "columns")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=csv_files(label_column=True))
def test_fuzz_cli_validate(tmp_path, data):
    """Through the command line: exit 0, or exit 2 with one `error: FILE: ...` line; never a traceback."""
    path = tmp_path / "fuzz.csv"
    path.write_bytes(data)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), time_limit(20):
        code = cli.main(["validate", "inception-time", str(path)])
    if code == 0:
        assert out.getvalue().startswith(f"ok: {path}:")
    else:
        assert code == 2, err.getvalue()
        assert err.getvalue().startswith(f"error: {path}") and err.getvalue().count("\n") == 1, err.getvalue()


# -- hostile cells: refused by row and column, in time linear in their length ----------------------------------

BAD_ENDS = ["x", "e", "-", "+", "e+", "..", "_1", "\x00"]


@st.composite
def hostile_cells(draw) -> str:
    """A cell no float32 reader may take: runs of digits before a bad character, exponents of many digits,
    junk, integers of thousands of digits; some shorter than csvio.MAX_CELL (they reach the number grammar),
    most longer (refused before it)."""
    n = draw(
        st.one_of(
            st.integers(1, 140_000),
            st.sampled_from(
                [csvio.MAX_CELL - 2, csvio.MAX_CELL - 1, csvio.MAX_CELL, csvio.MAX_CELL + 1, 4300, 4301, 128 << 10]
            ),
        )
    )
    digits = draw(st.sampled_from("0179")) * n
    kind = draw(st.sampled_from(["digits then junk", "long exponent", "junk", "big integer"]))
    if kind == "digits then junk":
        cell = draw(st.sampled_from(["", "-", "0.", ".5e"])) + digits + draw(st.sampled_from(BAD_ENDS))
    elif kind == "long exponent":  # at least e+40: beyond float32, or a bad character after it
        cell = "1.5e" + draw(st.sampled_from(["", "+"])) + "4" + digits + draw(st.sampled_from(["", *BAD_ENDS]))
    elif kind == "junk":  # no digit in it: never a number
        pattern = draw(st.text(alphabet="abxyzé._-", min_size=1, max_size=8))
        cell = (pattern * n)[:n]
    else:
        cell = draw(st.sampled_from(["", "-", "+"])) + "1" + digits.replace("0", "3").rjust(max(n, 39), "5")
    return f'"{cell}"' if draw(st.booleans()) else cell


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    cell=hostile_cells(),
    layout=st.sampled_from(["labeled", "rows", "columns"]),
    n_rows=st.integers(1, 3),
    n_values=st.integers(1, 3),
    at=st.tuples(st.integers(0, 2), st.integers(0, 2)),
)
@example(cell="1" * (128 << 10) + "x", layout="rows", n_rows=2, n_values=3, at=(1, 2))  # issue #27's 18 minutes
@example(cell="340282357" + "0" * 30 + "." + "0" * 5000, layout="rows", n_rows=2, n_values=2, at=(1, 0))
def test_hostile_cells_are_refused_by_row_and_column(tmp_path, cell, layout, n_rows, n_values, at):
    """Whatever the cell, an InputError naming its row and column, its message short, read whole and
    streamed, each in seconds (time_limit: the quadratic grammar took minutes on the longer cells)."""
    row, column = min(at[0], n_rows - 1), min(at[1], n_values - 1)
    rows = [["a" if i % 2 else "b"] * (layout == "labeled") + ["0.5"] * n_values for i in range(n_rows)]
    rows[row][column + (layout == "labeled")] = cell
    path = tmp_path / "hostile.csv"
    path.write_text("".join(",".join(cells) + "\n" for cells in rows))
    with time_limit(20):
        for read in (read_whole, read_streamed):
            with pytest.raises(InputError) as info:
                read(path, layout)
            error = info.value
            assert (error.path, error.row, error.column) == (str(path), row + 1, column + 1 + (layout == "labeled"))
            assert len(error.message) < 200, error.message
            if len(cell.encode()) > csvio.MAX_CELL:
                assert "the cell is too long" in error.message


def test_the_number_grammar_is_linear():
    """A long run of digits before a bad character: `[0-9]+\\.?[0-9]*` backtracked quadratically (minutes for
    this length); the grammar gives each character one place. (Cells this long never reach it: MAX_CELL.)"""
    with time_limit(10):
        for cell in ["1" * 200_000 + "x", "1e" + "1" * 200_000 + "x", "." + "1" * 200_000 + "e", "1." * 100_000]:
            assert not csvio._NUMBER.fullmatch(cell)
        assert csvio._NUMBER.fullmatch("-" + "1" * 200_000 + "." + "2" * 200_000 + "e+" + "3" * 200_000)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1.00000005960464478", 1 + 2**-23),  # float64 first, then float32, would give 1.0
        ("3.4028235677973366e38", float(F32_MAX)),  # just under halfway to 2^128
        ("7.006492321624086e-46", 1.401298464324817e-45),
        ("-0", -0.0),
    ],
)
def test_reference_rounds_exactly(text, expected):
    """The reference is only as good as its float32 rounding: check it on the hard cases."""
    assert exact_float32(text) == np.float32(expected)
    assert np.signbit(exact_float32(text)) == np.signbit(expected)
