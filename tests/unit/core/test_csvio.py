"""The CSV contract (docs/FORMATS.md): every fault named with file, row and column, in the library and the CLI."""

from __future__ import annotations

import asyncio
import sys

import numpy as np
import pytest

from kfts.core import csvio
from kfts.core.errors import InputError

from helpers import make_classification, run_cli, tiny_inception_time, write_csv


def write(tmp_path, data: bytes | str, name: str = "f.csv"):
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def fault(call, path, **kwargs) -> InputError:
    with pytest.raises(InputError) as info:
        call(path, **kwargs)
    assert info.value.path == str(path)
    return info.value


# -- faults, located ------------------------------------------------------------------------------------------

# (file content, reader, (row, column), words the message must contain)
FAULTS = [
    ("time1,time2\n1,2\n", "rows", (1, 1), "no header row"),
    ("label,t1,t2\na,1,2\nb,3,4\n", "labeled", (1, 2), "no header row"),
    ("1,2,3\n4,5\n", "rows", (2, None), "has 2 columns, the rows above have 3"),
    ("1,2\n3,4,5\n", "rows", (2, None), "has 3 columns"),
    ("1,2\n3,\n", "rows", (2, 2), "empty cell"),
    ('1,2\n"",4\n', "rows", (2, 1), "empty cell"),
    ("a,1,2\n,3,4\n", "labeled", (2, 1), "empty label"),
    ("1,2\nnan,4\n", "rows", (2, 1), "finite"),
    ("1,2\n3,NaN\n", "rows", (2, 2), "finite"),
    ("1,inf\n", "rows", (1, 2), "finite"),
    ("1,-Infinity\n", "rows", (1, 2), "finite"),
    ("1,2\n3,1e39\n", "rows", (2, 2), "float32"),  # finite as float64, infinite as float32
    ("1,2\n-3.4028236e38,4\n", "rows", (2, 1), "float32"),
    ("1,2\n3,4\n5,abc\n", "rows", (3, 2), "'abc' is not a number"),
    ("a,1,2\nb,3,x\n", "labeled", (2, 3), "'x' is not a number"),
    ("1,2\n3,1_000\n", "rows", (2, 2), "not a number"),  # Python's float() would take it
    ("1,2\n3,0x10\n", "rows", (2, 2), "not a number"),
    ("1,2\n3,4e\n", "rows", (2, 2), "not a number"),
    ("1;2\n3;4\n", "rows", (1, 1), "comma-separated"),
    ("1\t2\n3\t4\n", "rows", (1, 1), "comma-separated"),
    ("1,2\n\n3,4\n", "rows", (2, None), "blank"),
    ("1,2\n3,4\n\n", "rows", (3, None), "blank"),
    ("1,2\n   \n3,4\n", "rows", (2, None), "blank"),
    ("1\n\n2\n", "rows", (2, None), "blank"),  # one column: pyarrow reads a blank line as null
    ("1,2\r\n\r\n3,4\r\n", "rows", (2, None), "blank"),
    ('a,1\n"b,2\nc,3\n', "labeled", (2, 1), "never closed"),  # a quote left open swallows the next lines
    ('1,"2\n3",4\n', "rows", (1, 2), "never closed"),
    (b"a,1\nb,2\ncaf\xe9,3\n", "labeled", (3, None), "UTF-8"),  # latin-1
    ("1,2\n3,4\n".encode("utf-16"), "rows", (1, None), "UTF-8"),
    ("a,1\nb,2\n".encode("cp1252"), "labeled", None, None),  # plain ASCII in cp1252 is valid UTF-8: reads
    ("0\n1\n2\n", "binary", (3, 1), "0/1"),
    ("0,1\n1,0\n0,1\n", "binary", (1, None), "one column"),
    ("0\n\n1\n", "binary", (2, None), "blank"),
    ("1,2\n3,4\n5\n", "columns", (3, None), "has 1 columns"),
    # cells hold at most csvio.MAX_CELL bytes between their commas, valid numbers too (pyarrow takes any length)
    ("1,2\n3," + "0." + "0" * 1200 + "1\n", "rows", (2, 2), "the cell is too long: 1,203 bytes"),
    ("1,2\n" + "3" * 4301 + ",1\n", "rows", (2, 1), "too long"),  # beyond Python's int-string limit
    ("0." + "0" * 997 + "1,2\n", "rows", None, None),  # 1,000 bytes: read
    ('a,1\nb,"' + "1" * 999 + '"\n', "labeled", (2, 2), "1,001 bytes"),  # its quotes count
    ("a" * 1001 + ",1\nb,2\n", "labeled", (1, 1), "too long"),  # labels too
    ('a,1\n"b,' + "c" * 1001 + '",2\n', "labeled", (2, 1), "too long"),  # the column of a quoted label's part
    ('"x,y",1,' + "1" * 2000 + "\nb,2,3\n", "labeled", (1, 3), "too long"),
    # a label file of class names (kfts evaluate --labels)
    (b"\xef\xbb\xbfup\ndown\ncaf\xe9\n", "text labels", (3, None), "byte 0xe9 at character 4"),
    (b"up\rdown\r\xffup\r", "text labels", (3, None), "UTF-8"),  # CR alone ends a line
    ("up\n\ndown\n", "text labels", (2, None), "an empty row"),
    ("up\nup,down\n", "text labels", (2, None), "2 columns"),
]

READERS = {
    "rows": csvio.read_series_rows,
    "labeled": csvio.read_labeled_series,
    "columns": csvio.read_series_columns,
    "binary": lambda path: csvio.read_binary_labels(path, n_rows=3),
    "text labels": csvio.read_text_labels,
}


@pytest.mark.parametrize("content, reader, where, words", FAULTS)
def test_fault_is_named_with_file_row_and_column(tmp_path, content, reader, where, words):
    path = write(tmp_path, content)
    if where is None:
        READERS[reader](path)
        return
    error = fault(READERS[reader], path)
    assert (error.row, error.column) == where, str(error)
    assert words in error.message
    assert str(error).startswith(f"{path}: row {where[0]}")


@pytest.mark.parametrize("content", [b"", b"\n\n", b"\xef\xbb\xbf", b"  \r\n"])
def test_empty_file(tmp_path, content):
    assert "empty" in fault(csvio.read_series_rows, write(tmp_path, content)).message


def test_missing_file_and_directory(tmp_path):
    assert "no such file" in fault(csvio.read_series_rows, tmp_path / "nope.csv").message
    assert "directory" in fault(csvio.read_series_rows, tmp_path).message


def test_single_class(tmp_path):
    error = fault(csvio.read_labeled_series, write(tmp_path, "a,1,2\na,3,4\n"))
    assert "only one class ('a')" in error.message
    # evaluation files may hold one class
    assert list(csvio.read_labeled_series(write(tmp_path, "a,1,2\n"), min_classes=1).labels) == ["a"]


def test_inference_length_differs_from_training(tmp_path):
    path = write(tmp_path, "1,2,3\n4,5,6\n")
    assert "trained on 4" in fault(csvio.read_series_rows, path, length=4).message
    assert (
        "trained on 1" in fault(csvio.read_labeled_series, write(tmp_path, "a,1,2\nb,3,4\n", "l.csv"), length=1).message
    )
    assert csvio.read_series_rows(path, length=3).shape == (2, 3)


def test_lstm_ad_column_count_and_length(tmp_path):
    path = write(tmp_path, "1,2\n3,4\n5,6\n")
    assert "trained on 3" in fault(csvio.read_series_columns, path, n_series=3).message
    assert "at least 4" in fault(csvio.read_series_columns, path, min_rows=4).message


def test_first_fault_in_file_order_when_pyarrow_meets_a_later_one_first(tmp_path):
    # pyarrow reports the ragged row 4 (a parse error) before converting row 2's text: the text pass does not
    path = write(tmp_path, "1,2\n3,x\n5,6\n7\n")
    error = fault(csvio.read_series_rows, path)
    assert (error.row, error.column) == (2, 2)


def test_fault_after_many_blocks_streaming(tmp_path, monkeypatch):
    monkeypatch.setattr(csvio, "BLOCK_SIZE", 1 << 10)
    rows = ["1.5,2.5,3.5"] * 3000 + ["1.5,oops,3.5"]
    path = write(tmp_path, "\n".join(rows) + "\n")
    with pytest.raises(InputError) as info:
        for _ in csvio.iter_row_blocks(path):
            pass
    assert (info.value.row, info.value.column) == (3001, 2)
    assert (fault(csvio.read_series_rows, path).row) == 3001


# -- what parses, parses exactly ------------------------------------------------------------------------------


def test_labels_verbatim(tmp_path):
    data = csvio.read_labeled_series(
        write(tmp_path, '1.0,1,2\nabnormal,3,4\n1,5,6\n"a,b",7,8\n"q""",9,10\n padded ,11,12\n異常,13,14\n')
    )
    assert data.labels.tolist() == ["1.0", "abnormal", "1", "a,b", 'q"', " padded ", "異常"]
    assert data.values.dtype == np.float32
    np.testing.assert_array_equal(data.values, np.arange(1, 15, dtype=np.float32).reshape(7, 2))


def test_numbers_line_endings_and_bom(tmp_path):
    content = b'\xef\xbb\xbf 1 ,\t-2.5e3,"3",+.5\r\n1.,1E-2,7,-0\r9,8,7,6'
    values = csvio.read_series_rows(write(tmp_path, content))
    expected = np.array([[1, -2500, 3, 0.5], [1, 0.01, 7, -0.0], [9, 8, 7, 6]], np.float32)
    np.testing.assert_array_equal(values, expected)
    assert np.signbit(values[1, 3])


def test_float32_rounding_is_correct(tmp_path):
    # decimal -> float64 -> float32 would round twice and give 1.0 here; the correctly rounded float32 is 1+2^-23
    values = csvio.read_series_rows(write(tmp_path, "1.00000005960464478,3.4028235e38,1e-46\n"))
    assert values[0, 0] == np.float32(1) + np.float32(2**-23)
    assert values[0, 1] == np.finfo(np.float32).max
    assert values[0, 2] == 0


def test_series_columns_and_binary_labels(tmp_path):
    values = csvio.read_series_columns(write(tmp_path, "1,10\n2,20\n3,30\n"), n_series=2, min_rows=3)
    np.testing.assert_array_equal(values, [[1, 10], [2, 20], [3, 30]])
    labels = csvio.read_binary_labels(write(tmp_path, "0\n1\n0.0\n", "y.csv"), n_rows=3)
    assert labels.tolist() == [0, 1, 0]


def test_row_blocks_match_whole_file(tmp_path, monkeypatch):
    labels, values = make_classification(n_per_class=200, length=40)
    path = write_csv(tmp_path / "train.csv", ([lab, *row] for lab, row in zip(labels, values)))
    whole = csvio.read_labeled_series(path)
    monkeypatch.setattr(csvio, "BLOCK_SIZE", 1 << 14)
    blocks = list(csvio.iter_row_blocks(path, label_column=True))
    assert len(blocks) > 3
    assert [start for start, _, _ in blocks] == list(np.cumsum([0] + [len(v) for _, _, v in blocks[:-1]]))
    np.testing.assert_array_equal(np.concatenate([v for _, _, v in blocks]), whole.values)
    assert np.concatenate([lab for _, lab, _ in blocks]).tolist() == whole.labels.tolist()


def test_a_row_longer_than_a_block(tmp_path, monkeypatch):
    monkeypatch.setattr(csvio, "BLOCK_SIZE", 1 << 10)
    row = ",".join(["0.25"] * 2000)  # 10 kB per row
    values = csvio.read_series_rows(write(tmp_path, f"{row}\n{row}\n"))
    assert values.shape == (2, 2000)


def test_a_number_near_the_float32_limit_needs_no_int_conversion(tmp_path):
    """The exact float32 range check reads digits without int(), which Python refuses past
    sys.get_int_max_str_digits() (PYTHONINTMAXSTRDIGITS may set it as low as 640)."""
    near = "340282357" + "0" * 30 + "." + "0" * 700  # 3.40282357e38: float32 infinity, 740 digits
    path = write(tmp_path, f"1,2\n{near},1\n")
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    try:
        error = fault(csvio.read_series_rows, path)
    finally:
        sys.set_int_max_str_digits(limit)
    assert (error.row, error.column) == (2, 1) and "too large: values must fit in float32" in error.message


def test_values_in_messages_are_cut(tmp_path):
    for cell in ["x" * 1000, "9" * 999 + "x", "-" + "1" * 900 + "e99"]:
        error = fault(csvio.read_series_rows, write(tmp_path, f"1,2\n3,{cell}\n"))
        assert (error.row, error.column) == (2, 2)
        assert f"{cell[:40]!r}... ({len(cell):,} characters)" in error.message and len(error.message) < 150


def test_bytes_source_names_itself(tmp_path):
    with pytest.raises(InputError) as info:
        csvio.read_series_rows(csvio.CsvBytes(b"1,2\n3,x\n", name="body"))
    assert str(info.value) == "body: row 2, column 2: 'x' is not a number"


# -- through the CLI: one line, exit 2, nothing left behind ---------------------------------------------------


def assert_clean_error(result, *words):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


def test_cli_validate(tmp_path, classification_csv):
    train, _, _ = classification_csv
    ok = run_cli("validate", "inception-time", train, check=True)
    assert ok.stdout.startswith(f"ok: {train}: 60 series of length 32, 3 classes")
    bad = write(tmp_path, "a,1,2\nb,3,zz\n", "bad.csv")
    assert_clean_error(run_cli("validate", "inception-time", bad), f"error: {bad}: row 2, column 3: 'zz'")


def test_cli_train_refuses_bad_data_and_writes_nothing(tmp_path, classification_csv):
    train, _, _ = classification_csv
    flags = ["--epochs", 1, "--models", 1, "--filters", 4, "--depth", 1]
    model_dir, checkpoints = tmp_path / "model", tmp_path / "ckpt"
    bad = write(tmp_path, "a,1,2\n\nb,3,4\n", "bad.csv")
    result = run_cli(
        "train", "inception-time", "--train", bad, "--model-dir", model_dir, "--checkpoint-dir", checkpoints, *flags
    )
    assert_clean_error(result, f"{bad}: row 2: is blank")
    # a validation file of another length than the training file
    valid = write(tmp_path, "a,1,2\nb,3,4\n", "valid.csv")
    result = run_cli(
        "train",
        "inception-time",
        "--train",
        train,
        "--valid",
        valid,
        "--model-dir",
        model_dir,
        "--checkpoint-dir",
        checkpoints,
        *flags,
    )
    assert_clean_error(result)
    assert not model_dir.exists() and not checkpoints.exists()
    assert not list(tmp_path.glob(".model*"))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("tiny") / "model"
    tiny_inception_time(n_per_class=10, length=24, save_to=model_dir)
    return model_dir


def test_cli_predict_refuses_bad_input_and_writes_nothing(tmp_path, tiny_model):
    output = tmp_path / "out" / "predictions.csv"
    short = write(tmp_path, "1,2,3\n", "short.csv")  # another length than training
    assert_clean_error(
        run_cli("predict", "--model-dir", tiny_model, "--input", short, "--output", output),
        f"error: {short}: row 1: rows have 3 time steps, the model was trained on 24",
    )
    # a fault far into a file that is predicted in blocks: nothing may appear under the output's name
    row = ",".join(["0.5"] * 24) + "\n"
    late = write(tmp_path, row * 40000 + row.replace("0.5", "nan", 1), "late.csv")
    assert_clean_error(
        run_cli("predict", "--model-dir", tiny_model, "--input", late, "--output", output),
        f"error: {late}: row 40001, column 1: 'nan' is not allowed",
    )
    assert not output.parent.exists() or not any(output.parent.iterdir())


# hostile cells (issue #27): the 128 KB run of digits that took minutes, and a number past Python's int-string
# limit that was an internal error (exit 1) and, in a text/csv request, a 500
HOSTILE = {
    "128 KB of digits": "1" * (128 << 10) + "x",
    "past the int-string limit": "340282357" + "0" * 30 + "." + "0" * 5000,
}


@pytest.mark.parametrize("cell", HOSTILE.values(), ids=HOSTILE.keys())
def test_cli_refuses_a_hostile_cell_in_one_line(tmp_path, cell):
    path = write(tmp_path, f"a,1,2\nb,3,{cell}\n")
    result = run_cli("validate", "inception-time", path, timeout=60)
    assert_clean_error(result, f"error: {path}: row 2, column 3: the cell is too long: {len(cell):,} bytes")
    assert len(result.stderr) < len(str(path)) + 150


@pytest.mark.parametrize("cell", HOSTILE.values(), ids=HOSTILE.keys())
def test_predictor_answers_a_hostile_csv_cell_with_400(tiny_model, cell):
    """A text/csv request goes through csvio as `kfts predict` does: InvalidInput is KServe's 400."""
    from kserve.errors import InvalidInput

    from kfts.serving.model import KftsModel

    predictor = KftsModel("m", str(tiny_model), device="cpu")
    predictor.load()
    body = (",".join(["0.5"] * 23 + [cell]) + "\n").encode()
    try:
        with pytest.raises(InvalidInput) as info:
            asyncio.run(predictor.predict(body, {"content-type": "text/csv"}, {}))
    finally:
        predictor.stop()
    assert str(info.value).startswith("request body: row 1, column 24: the cell is too long")
    assert len(str(info.value)) < 150
