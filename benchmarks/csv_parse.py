"""CSV parse speed and peak memory: kfts.core.csvio on a generated file of at least 500 MB, beside pandas; and the
time to refuse one hostile cell (a run of digits before a bad character) against the cell's length.

Each reader runs in a fresh subprocess and reads its own peak resident memory (VmHWM: ru_maxrss would not do,
Linux carries the parent's resident size at spawn into a child's); the imports' memory is subtracted.
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from pyarrow import csv as pacsv

from kfts.core import csvio
from kfts.core.errors import InputError

WORK = Path(__file__).resolve().parent / "work"

READERS = {
    "kfts.core.csvio (pyarrow, float32)": "from kfts.core.csvio import read_labeled_series as r; x = r(PATH).values",
    "pandas.read_csv (C engine)": "import pandas as pd; x = pd.read_csv(PATH, header=None)",
}
MEASURE = """
import os, sys, time
{imports}
base = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")  # resident now
PATH = sys.argv[1]
start = time.perf_counter()
{code}
peak = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))) * 1024
print(time.perf_counter() - start, peak - base)
"""


def generate(path: Path, megabytes: int) -> tuple[int, int]:
    """An InceptionTime training file (3 classes, 200 time steps) of about `megabytes`: (rows, columns)."""
    rng = np.random.default_rng(0)
    columns = 200
    rows_per_block = 20_000
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with pacsv.CSVWriter(
        path,
        pa.schema([("label", pa.string())] + [(f"t{i}", pa.float32()) for i in range(columns)]),
        write_options=pacsv.WriteOptions(include_header=False),
    ) as writer:
        while path.stat().st_size < megabytes * 1e6:
            values = rng.normal(size=(rows_per_block, columns)).astype(np.float32)
            labels = pa.array(rng.choice(["a", "b", "c"], rows_per_block))
            writer.write_table(
                pa.table(
                    [labels] + [pa.array(values[:, j]) for j in range(columns)],
                    names=["label"] + [f"t{i}" for i in range(columns)],
                )
            )
            rows += rows_per_block
    return rows, columns


def measure(code: str, path: Path) -> tuple[float, float]:
    imports = "import kfts.core.csvio, pandas, pyarrow.csv"
    out = subprocess.run(
        [sys.executable, "-c", MEASURE.format(imports=imports, code=code), str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[0]), float(out[1])


def section(quick: bool) -> str:
    megabytes = 20 if quick else 520
    path = WORK / f"parse_{megabytes}mb.csv"
    start = time.perf_counter()
    rows, columns = generate(path, megabytes)
    size = path.stat().st_size
    float32_bytes = rows * columns * 4
    lines = [
        "## CSV parsing",
        "",
        f"InceptionTime layout, {rows:,} rows x (label + {columns} values), {size / 1e6:.0f} MB on disk "
        f"(generated in {time.perf_counter() - start:.0f} s); the values as float32 take "
        f"{float32_bytes / 1e6:.0f} MB.",
        "",
        "Peak memory is resident memory above what the imports took; part of it does not grow with the "
        "file (the reader's thread pools and allocator), so it is also measured on a 100-row file and the "
        "last column gives the growth per byte of float32 data.",
        "",
        "| reader | seconds | MB/s | peak memory | peak on a 100-row file | (peak - that) / float32 data |",
        "|---|---|---|---|---|---|",
    ]
    small = WORK / "parse_100rows.csv"
    with path.open() as f:
        small.write_text("".join(next(f) for _ in range(100)))
    for name, code in READERS.items():
        seconds, peak = measure(code, path)
        _, fixed = measure(code, small)
        lines.append(
            f"| {name} | {seconds:.1f} | {size / 1e6 / seconds:.0f} | {peak / 1e6:.0f} MB "
            f"| {fixed / 1e6:.0f} MB | {(peak - fixed) / float32_bytes:.2f}x |"
        )
    scan = best_of(3, lambda: csvio._may_hold_long_cell(path))
    lines += [
        "",
        f"Of kfts.core.csvio's time, the scan of the raw bytes for cells over {csvio.MAX_CELL:,} bytes "
        f"(pyarrow would read a number of any length) takes {scan:.2f} s, the file in the page cache.",
    ]
    path.unlink()
    small.unlink()
    return "\n".join(lines) + "\n\n" + hostile_cells(quick) + "\n"


def best_of(repeats: int, call) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


# the number grammar csvio matched cells with before issue #27: quadratic in a run of digits before a bad character
FORMER_GRAMMAR = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def refuse(body: bytes) -> None:
    try:
        csvio.read_series_rows(csvio.CsvBytes(body))
    except InputError:
        return
    raise AssertionError("a hostile cell was read")


def hostile_cells(quick: bool) -> str:
    """Refusing a text/csv request body of two rows whose second holds one cell of n digits and an "x": the path
    every CLI command, component and the predictor's text/csv share. Time should grow linearly with n."""
    lengths = [1 << 10, 8 << 10] if quick else [1 << 10, 8 << 10, 64 << 10, 128 << 10, 1 << 20]
    lines = [
        "### Hostile cells",
        "",
        "A request body `1,2\\n3,<n digits>x\\n` through `csvio.read_series_rows`, as `kfts serve` parses "
        "text/csv (best of 3). Before issue #27 the cell went through a grammar that backtracked "
        "quadratically; its match alone is timed for the shorter cells (the longer ones take minutes to "
        "hours).",
        "",
        "| cell | kfts.core.csvio refuses it in | per KB | former grammar alone |",
        "|---|---|---|---|",
    ]
    for n in lengths:
        body = b"1,2\n3," + b"7" * n + b"x\n"
        seconds = best_of(3, functools.partial(refuse, body))
        former = "not run"
        if n <= 8 << 10:
            former = f"{best_of(1, functools.partial(FORMER_GRAMMAR.fullmatch, '7' * n + 'x')):.2f} s"
        lines.append(f"| {n >> 10:,} KB | {seconds * 1e3:.1f} ms | {seconds * 1e3 / (n >> 10):.3f} ms | {former} |")
    return "\n".join(lines) + "\n"
