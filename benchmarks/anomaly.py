"""LSTM-AD detection quality and prediction speed.

- Detection: default hyperparameters (the seed's), trained on each series' train.csv (normal data only), scored
  on its test part against test_labels.csv: ROC-AUC and VUS-PR (kfts.anomaly_metrics, TSB-AD's definitions,
  VUS window 2 x the estimated period, as TSB-AD's evaluation does; higher = more anomalous, i.e. the negated
  log-likelihood), beside the peers' figures in ../shared/BASELINES.md. The first sequence of a test file has
  no score and is left out, for every detector alike.
- Speed: `kfts predict` on a generated 1,000,000-step, 8-series CSV in a process of its own: time steps per
  second (CSV in, scores and reconstructions out) and peak resident memory above the imports.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from pyarrow import csv as pacsv

from kfts import anomaly_metrics
from kfts.csvio import read_binary_labels, read_series_columns
from kfts.lstm_ad import LstmAD, Params

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WORK = Path(__file__).resolve().parent / "work"

# ../shared/BASELINES.md: ROC-AUC / VUS-PR of TSB-AD's LSTMAD and IForest, measured on this kind of machine
BASELINES = {
    "seed-samples/lstm_ad": ((1.000, 0.259), (0.453, 0.001)),
    "anomaly/ecg_chfdb_chf01_275": ((0.787, 0.586), (0.788, 0.653)),
    "anomaly/ecg_qtdbsel102": ((0.912, 0.253), (0.884, 0.462)),
    "anomaly/power_demand": ((0.310, 0.076), (0.555, 0.122)),
    "anomaly/shuttle_tek16": ((0.793, 0.486), (0.978, 0.920)),
}

MEASURE = """
import os, sys, time
import pandas, pyarrow.csv, safetensors.torch  # imported by reading anyway: not part of the timing
from kfts.algorithms import load_model
from kfts.cli import main
model_dir, input_path, output_path = sys.argv[1:4]
base = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")  # resident now
start = time.perf_counter()
assert main(["predict", "--model-dir", model_dir, "--input", input_path, "--output", output_path,
             "--device", "cpu"]) == 0
total = time.perf_counter() - start
# VmHWM, not ru_maxrss: Linux carries the parent's resident size at spawn into a child's ru_maxrss
peak = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))) * 1024 - base
model = load_model(model_dir, device="cpu")  # where the time goes: scoring alone, the data in memory
values = model.read_inference(input_path)
start = time.perf_counter()
model.score(values)
print(total, time.perf_counter() - start, peak)
"""


def detection(name: str, params: Params) -> dict:
    folder = DATA / name
    if name.startswith("seed-samples"):
        train, test, labels = folder / "train.csv", folder / "test_data.csv", folder / "test_labels.csv"
    else:
        train, test, labels = folder / "train.csv", folder / "test.csv", folder / "test_labels.csv"
    values = read_series_columns(train)
    start = time.perf_counter()
    model = LstmAD(params, device="cpu", seed=0).fit(values)
    seconds = time.perf_counter() - start
    test_values = read_series_columns(test)
    scores, _ = model.score(test_values)
    L = params.sequence_length
    y = read_binary_labels(labels, len(test_values))[L:]
    window = 2 * anomaly_metrics.estimate_period(test_values)
    roc, vus_pr = float("nan"), float("nan")
    if y.min() != y.max():
        metrics = anomaly_metrics.detection_metrics(y, -scores[L:], threshold=-model.threshold, window=window)
        roc, vus_pr = metrics["roc_auc"], metrics["vus_pr"]
    # the seed product's own check: are the labeled steps the lowest scores?
    lowest = set(np.argsort(scores[L:])[:int(y.sum())])
    return {"shape": f"{len(values)} / {len(test_values)} x {values.shape[1]}", "roc": roc, "vus_pr": vus_pr,
            "window": window, "seconds": seconds, "epochs": params.epochs,
            "all_lowest": lowest == set(np.flatnonzero(y))}


def generate(path: Path, steps: int, series: int = 8, seed: int = 0) -> None:
    """Noisy sines of different periods, one per column."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    block = 100_000
    schema = pa.schema([(f"s{j}", pa.float32()) for j in range(series)])
    with pacsv.CSVWriter(path, schema, write_options=pacsv.WriteOptions(include_header=False)) as writer:
        for first in range(0, steps, block):
            t = np.arange(first, min(first + block, steps))[:, None]
            values = np.sin(2 * np.pi * t / (20 + 7 * np.arange(series))) + 0.1 * rng.normal(size=(len(t), series))
            writer.write_table(pa.table([pa.array(values[:, j].astype(np.float32)) for j in range(series)],
                                        schema=schema))


def speed(steps: int, quick: bool) -> list[str]:
    train_path, input_path, model_dir = WORK / "lstm_ad_train.csv", WORK / "lstm_ad_input.csv", WORK / "lstm_ad_model"
    generate(train_path, 5000, seed=1)
    generate(input_path, steps)
    # the default architecture; prediction speed does not depend on how long it trained
    model = LstmAD(Params(epochs=1 if quick else 5), device="cpu", seed=0).fit(read_series_columns(train_path))
    model.save(model_dir)
    output = WORK / "lstm_ad_output.csv"
    out = subprocess.run([sys.executable, "-c", MEASURE, str(model_dir), str(input_path), str(output)],
                         capture_output=True, text=True, check=True).stdout.split()
    total, scoring, peak = map(float, out[-3:])
    data_bytes = steps * 8 * 4
    lines = ["", f"Prediction speed: `kfts predict --device cpu` (default architecture: 2 x 128 LSTM, sequence-length "
                 f"50) on {steps:,} time steps x 8 series ({input_path.stat().st_size / 1e6:.0f} MB CSV), in a "
                 "process of its own, imports excluded:", "",
             "| stage | seconds | time steps / s |", "|---|---|---|",
             f"| **kfts predict** (read CSV, score, reconstruct, write CSV) | {total:.1f} | **{steps / total:,.0f}** |",
             f"| of which scoring alone (LstmAD.score on the data in memory) | {scoring:.1f} "
             f"| {steps / scoring:,.0f} |",
             "", f"Peak resident memory of `kfts predict` above the imports: {peak / 1e6:.0f} MB "
                 f"({peak / data_bytes:.1f}x the float32 input, {data_bytes / 1e6:.0f} MB; the CSV it writes is "
                 f"{output.stat().st_size / 1e6:.0f} MB)."]
    for path in (train_path, input_path, output):
        path.unlink()
    return lines


def section(quick: bool) -> str:
    params = Params(epochs=2) if quick else Params()
    lines = ["## LSTM-AD detection and speed", "",
             f"Seed defaults ({'quick: 2 epochs' if quick else '100 epochs'}; num-layers 2, sequence-length 50, "
             "hidden-size 128, dropout 0.1, lr 0.001, batch 64, error-fraction 0.2), seed 0, CPU. Peers from "
             "BASELINES.md (TSB-AD's LSTMAD: window 100-150, 50 epochs with early stopping).", "",
             "| data | train / test steps x series | ROC-AUC | VUS-PR (window) | labeled = lowest scores "
             "| TSB-AD LSTMAD | TSB-AD IForest | fit wall time |", "|---|---|---|---|---|---|---|---|"]
    rocs, vus_prs = [], []
    for name, (lstm, iforest) in BASELINES.items():
        r = detection(name, params)
        if name.startswith("anomaly/"):
            rocs.append(r["roc"])
            vus_prs.append(r["vus_pr"])
        lines.append(f"| {name} | {r['shape']} | {r['roc']:.3f} | {r['vus_pr']:.3f} ({r['window']}) "
                     f"| {'yes' if r['all_lowest'] else 'no'} | {lstm[0]:.3f} / {lstm[1]:.3f} "
                     f"| {iforest[0]:.3f} / {iforest[1]:.3f} | {r['seconds']:.0f} s |")
    lines.append(f"| mean of the 4 anomaly/ series | | {np.mean(rocs):.3f} | {np.mean(vus_prs):.3f} | "
                 "| 0.700 / 0.350 | 0.801 / 0.539 | |")
    lines += speed(100_000 if quick else 1_000_000, quick)
    return "\n".join(lines) + "\n"
