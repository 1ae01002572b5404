"""LSTM-AD detection quality and prediction speed, in both scoring modes.

- Detection on the shared series: each series' train.csv (normal data only) trains a model in each mode with
  that mode's defaults (seed: the reference product's; paper: `--scoring paper`, defaults in
  kfts/algorithms/lstm_ad/params.py), which scores its test part against test_labels.csv: ROC-AUC and
  VUS-PR (kfts.core.anomaly_metrics, TSB-AD's definitions, VUS window 2 x the estimated period, as TSB-AD's
  evaluation does; higher = more anomalous, i.e. the negated log-likelihood), beside the peers' figures in
  ../shared/BASELINES.md. Both modes are judged on the same rows: those from the paper mode's first scored row
  on (the rows before have no score in one mode or both).
- Detection on generated series (`generated`, below: kfts's own, with planted anomalies; the data the paper
  mode's defaults were chosen on, see `python benchmarks/anomaly.py --sweep`), both modes beside scikit-learn's
  IsolationForest on windows of one period (how TSB-AD runs IForest).
- Speed: `kfts predict` on a generated 8-series CSV in a process of its own, each mode: time steps per second
  end to end (CSV in, scores and reconstructions out), and its parts measured on the data in memory: reading
  the CSV, scoring (LstmAD.score), formatting the output CSV; peak resident memory above the imports.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from pyarrow import csv as pacsv

from kfts.algorithms.lstm_ad.estimator import LstmAD, Params
from kfts.core import anomaly_metrics
from kfts.core.csvio import read_binary_labels, read_series_columns

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WORK = Path(__file__).resolve().parent / "work"
MODES = {"seed": Params(), "paper": Params(scoring="paper")}

# ../shared/BASELINES.md: ROC-AUC / VUS-PR of TSB-AD's LSTMAD, PCA and IForest, measured on this kind of machine
BASELINES = {
    "seed-samples/lstm_ad": ((1.000, 0.259), (0.679, 0.003), (0.453, 0.001)),
    "anomaly/ecg_chfdb_chf01_275": ((0.787, 0.586), (0.644, 0.620), (0.788, 0.653)),
    "anomaly/ecg_qtdbsel102": ((0.912, 0.253), (0.391, 0.016), (0.884, 0.462)),
    "anomaly/power_demand": ((0.310, 0.076), (0.432, 0.087), (0.555, 0.122)),
    "anomaly/shuttle_tek16": ((0.793, 0.486), (0.819, 0.341), (0.978, 0.920)),
}
PEER_MEANS = ((0.700, 0.350), (0.572, 0.266), (0.801, 0.539))  # the 4 anomaly/ series

MEASURE = """
import os, sys, time
import pandas, pyarrow.csv, safetensors.torch  # imported by reading anyway: not part of the timing
from kfts.algorithms import of
from kfts.jobs.load import load_model
from kfts.cli import main
from kfts.core.csvio import read_series_columns
model_dir, input_path, output_path = sys.argv[1:4]
base = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")  # resident now
start = time.perf_counter()
assert main(["predict", "--model-dir", model_dir, "--input", input_path, "--output", output_path,
             "--device", "cpu"]) == 0
total = time.perf_counter() - start
# VmHWM, not ru_maxrss: Linux carries the parent's resident size at spawn into a child's ru_maxrss
peak = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))) * 1024 - base
model = load_model(model_dir, device="cpu")  # where the time goes, on the data in memory
start = time.perf_counter()
values = read_series_columns(input_path, n_series=model.n_series)
read = time.perf_counter() - start
start = time.perf_counter()
model.score(values)
scoring = time.perf_counter() - start
start = time.perf_counter()
of(model).predictions_csv(model, values)
formatting = time.perf_counter() - start - scoring
print(total, read, scoring, formatting, peak)
"""


# -- detection ----------------------------------------------------------------------------------------------------


def judged(model: LstmAD, test: np.ndarray, labels: np.ndarray, first: int) -> tuple[float, float]:
    """(ROC-AUC, VUS-PR) of the model's scores of test[first:]; NaN when those rows hold one class only."""
    scores, _ = model.score(test)
    y = labels[first:]
    if y.min() == y.max():
        return float("nan"), float("nan")
    window = 2 * anomaly_metrics.estimate_period(test)
    metrics = anomaly_metrics.detection_metrics(y, -scores[first:], threshold=-model.threshold, window=window)
    return metrics["roc_auc"], metrics["vus_pr"]


def fit(params: Params, train: np.ndarray) -> tuple[LstmAD, float]:
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # one line per epoch: not for the report
        model = LstmAD(params, device="cpu", seed=0).fit(train)
    return model, time.perf_counter() - start


def shared_series(modes: dict[str, Params]) -> list[str]:
    first = max(LstmAD(p).first_scored for p in modes.values())
    lines = [
        "| data | train / test steps x series | "
        + " | ".join(f"{m} ROC-AUC / VUS-PR" for m in modes)
        + " | TSB-AD LSTMAD | TSB-AD PCA | TSB-AD IForest | fit wall time |",
        "|---|---|" + "---|" * len(modes) + "---|---|---|---|",
    ]
    results = {m: [] for m in modes}
    for name, peers in BASELINES.items():
        folder = DATA / name
        test_name = "test_data.csv" if name.startswith("seed-samples") else "test.csv"
        train, test = read_series_columns(folder / "train.csv"), read_series_columns(folder / test_name)
        labels = read_binary_labels(folder / "test_labels.csv", len(test))
        cells, seconds = [], []
        for mode, params in modes.items():
            model, took = fit(params, train)
            roc, vus_pr = judged(model, test, labels, first)
            if name.startswith("anomaly/"):
                results[mode].append((roc, vus_pr))
            cells.append(f"{roc:.3f} / {vus_pr:.3f}")
            seconds.append(f"{took:.0f} s")
        lines.append(
            f"| {name} | {len(train)} / {len(test)} x {train.shape[1]} | "
            + " | ".join(cells)
            + " | "
            + " | ".join(f"{roc:.3f} / {vus:.3f}" for roc, vus in peers)
            + f" | {' / '.join(seconds)} |"
        )
    means = [np.mean(results[m], axis=0) for m in modes]
    lines.append(
        "| **mean of the 4 anomaly/ series** | | "
        + " | ".join(f"**{r:.3f} / {v:.3f}**" for r, v in means)
        + " | "
        + " | ".join(f"{r:.3f} / {v:.3f}" for r, v in PEER_MEANS)
        + " | |"
    )
    return lines


# -- generated series ---------------------------------------------------------------------------------------------
# Four kinds of behaviour, each with anomalies of several sorts planted in its test part, labeled over the
# cycle (or stretch) they spoil. They stand for the families of the real series the project meets (ECG
# leads, valve or machine cycles, daily demand with weekly structure, related sensors), without being any
# of them; and since nothing was fitted to the shared files, choosing on these keeps those honest tests.


def _bumps(phase: np.ndarray, centers, widths, heights) -> np.ndarray:
    return sum(h * np.exp(-0.5 * ((phase - c) / w) ** 2) for c, w, h in zip(centers, widths, heights))


def _cycles(n: int, rng, anomalies: int, period: tuple[float, float], kinds: list[str], make) -> tuple:
    """Cycles of about `period` steps until n, `anomalies` of them (never two neighbours) of one of `kinds`:
    make(length, kind or None) -> [length, d]. Returns (values [n, d], labels [n])."""
    slots = rng.choice(np.arange(3, n // int(period[0] * 1.1) - 2, 3), size=anomalies, replace=False)
    kind_of = dict(zip(slots.tolist(), rng.permutation(kinds * anomalies)[:anomalies].tolist()))
    values, labels = [], []
    while sum(map(len, values)) < n:
        kind = kind_of.get(len(values))
        cycle = make(int(rng.normal(*period)), kind)
        values.append(cycle)
        labels.append(np.full(len(cycle), kind is not None))
    return np.concatenate(values)[:n], np.concatenate(labels)[:n]


def pulses(n: int, rng, anomalies: int = 0):
    """ECG-like: beats of about 100 steps in two leads; a beat comes early, is wide, has its T wave
    inverted, or is missing."""
    centers, widths = [0.2, 0.4, 0.44, 0.48, 0.7], [0.03, 0.01, 0.012, 0.01, 0.05]
    lead1, lead2 = [0.15, -0.2, 1.0, -0.3, 0.3], [0.1, 0.1, -0.6, 0.4, 0.2]

    def beat(length, kind):
        length = int(length * 0.6) if kind == "early" else length
        phase = np.arange(length) / length
        w = [0.03, 0.03, 0.04, 0.03, 0.05] if kind == "wide" else widths
        t_wave = -1 if kind == "inverted" else 1
        out = np.stack(
            [
                _bumps(phase, centers, w, lead1[:4] + [t_wave * lead1[4]]),
                _bumps(phase, centers, w, lead2[:4] + [t_wave * lead2[4]]),
            ],
            axis=1,
        )
        return out * (kind != "missing")

    values, labels = _cycles(n, rng, anomalies, (100, 4), ["early", "wide", "inverted", "missing"], beat)
    wander = 0.1 * np.sin(2 * np.pi * np.arange(n) / 1500 + rng.uniform(0, 6))[:, None]
    return values + wander + 0.02 * rng.normal(size=values.shape), labels


def valve(n: int, rng, anomalies: int = 0):
    """Valve-like: cycles of about 125 steps, a ramp up, a rippled plateau, a fast drop, a rest; a cycle's
    plateau sags, is cut by a dip, ends early, or its ramp is slow."""

    def cycle(length, kind):
        up, top = int((0.35 if kind == "slow" else 0.15) * length), int((0.2 if kind == "short" else 0.45) * length)
        out = np.concatenate(
            [
                np.linspace(0, 1, up),
                1 + 0.05 * np.sin(np.arange(top) / 3),
                np.linspace(1, 0, 8),
                np.zeros(max(1, length - up - top - 8)),
            ]
        )
        if kind == "sag":
            out[up + top // 3 : up + 2 * top // 3] -= 0.35
        if kind == "dip":
            out[up + top // 2 : up + top // 2 + 10] = 0.3
        return out[:, None]

    values, labels = _cycles(n, rng, anomalies, (125, 3), ["sag", "dip", "short", "slow"], cycle)
    return values + 0.02 * rng.normal(size=values.shape), labels


def demand(n: int, rng, anomalies: int = 0):
    """Demand-like: days of 96 steps in weeks of 5 working days (a morning and an evening peak) and 2 quiet
    ones; a working day is quiet (a holiday), or has no evening peak."""
    phase = np.arange(96) / 96
    working = 0.3 + _bumps(phase, [0.35, 0.75], [0.06, 0.07], [0.6, 0.8])
    quiet = 0.3 + _bumps(phase, [0.55], [0.15], [0.2])
    days = -(-n // 96)
    chosen = rng.choice([d for d in range(7, days - 1, 2) if d % 7 < 5], size=anomalies, replace=False)
    kind_of = dict(zip(chosen.tolist(), rng.permutation(["holiday", "no evening"] * anomalies)[:anomalies]))
    values, labels = [], []
    for d in range(days):
        day = (working if d % 7 < 5 else quiet) * rng.normal(1, 0.03)
        kind = kind_of.get(d)
        if kind == "holiday":
            day = quiet.copy()
        elif kind == "no evening":
            day = np.concatenate([day[:60], np.full(24, 0.45), day[84:]])
        values.append(day)
        labels.append(np.full(96, kind is not None))
    values = np.concatenate(values)[:n, None]
    return values + 0.02 * rng.normal(size=values.shape), np.concatenate(labels)[:n]


def sensors(n: int, rng, anomalies: int = 0):
    """Three related sensors: sines of periods 40 and 65 and their weighted sum; for 30-80 steps the sum's
    phase slips (the relation breaks), the first changes frequency, the second is stuck, or noise bursts."""
    t = np.arange(n)
    a, b = np.sin(2 * np.pi * t / 40), np.sin(2 * np.pi * t / 65)
    values = np.stack([a, b, 0.6 * a + 0.6 * b], axis=1)
    labels = np.zeros(n, bool)
    starts = rng.choice(np.arange(200, n - 200, 150), size=anomalies, replace=False)
    for s, kind in zip(starts, rng.permutation(["phase", "frequency", "stuck", "noise"] * anomalies)):
        e = s + int(rng.integers(30, 80))
        if kind == "phase":
            values[s:e, 2] = 0.6 * np.sin(2 * np.pi * (t[s:e] + 10) / 40) + 0.6 * b[s:e]
        elif kind == "frequency":
            values[s:e, 0] = np.sin(2 * np.pi * t[s:e] / 28)
            values[s:e, 2] = 0.6 * values[s:e, 0] + 0.6 * b[s:e]
        elif kind == "stuck":
            values[s:e, 1] = values[s, 1]
        else:
            values[s:e] += 0.3 * rng.normal(size=(e - s, 3))
        labels[s:e] = True
    return values + 0.05 * rng.normal(size=values.shape), labels


GENERATED = {"pulses": pulses, "valve": valve, "demand": demand, "sensors": sensors}


def generated(kind: str, seed: int = 0, train_steps: int = 6000, test_steps: int = 3000, anomalies: int = 5):
    """(train [train_steps, d] normal only, test [test_steps, d] float32, labels [test_steps] 0/1)."""
    rng = np.random.default_rng(seed)
    train, _ = GENERATED[kind](train_steps, rng)
    test, labels = GENERATED[kind](test_steps, rng, anomalies)
    return train.astype(np.float32), test.astype(np.float32), labels.astype(np.int8)


def iforest(test: np.ndarray, labels: np.ndarray, first: int) -> tuple[float, float]:
    """scikit-learn's IsolationForest on the windows of one period of the test part, each window's score
    given to its middle step (TSB-AD's IForest recipe): the reference the paper mode aims at."""
    from sklearn.ensemble import IsolationForest

    period = anomaly_metrics.estimate_period(test)
    windows = np.lib.stride_tricks.sliding_window_view(test, period, axis=0).reshape(len(test) - period + 1, -1)
    score = -IsolationForest(n_estimators=100, random_state=0).fit(windows).score_samples(windows)
    pad = (period - 1) // 2
    score = np.concatenate([np.full(pad, score[0]), score, np.full(len(test) - len(score) - pad, score[-1])])
    window = 2 * period
    return (
        float(anomaly_metrics.skm.roc_auc_score(labels[first:], score[first:])),
        anomaly_metrics.vus(labels[first:], score[first:], window)[1],
    )


def generated_series(modes: dict[str, Params], seeds=(0,)) -> tuple[list[str], dict]:
    first = max(LstmAD(p).first_scored for p in modes.values())
    lines = [
        "| generated series (test steps x series) | "
        + " | ".join(f"{m} ROC-AUC / VUS-PR" for m in modes)
        + " | IsolationForest |",
        "|---|" + "---|" * (len(modes) + 1),
    ]
    results = {m: [] for m in [*modes, "iforest"]}
    for kind in GENERATED:
        for seed in seeds:
            train, test, labels = generated(kind, seed)
            cells = []
            for mode, params in modes.items():
                results[mode].append(judged(fit(params, train)[0], test, labels, first))
                cells.append("{:.3f} / {:.3f}".format(*results[mode][-1]))
            results["iforest"].append(iforest(test, labels, first))
            lines.append(
                f"| {kind} (seed {seed}, {len(test)} x {test.shape[1]}) | "
                + " | ".join(cells)
                + " | {:.3f} / {:.3f} |".format(*results["iforest"][-1])
            )
    means = {m: np.mean(r, axis=0) for m, r in results.items()}
    cells = ["**{:.3f} / {:.3f}**".format(*means[m]) for m in [*modes, "iforest"]]
    lines.append("| **mean** | " + " | ".join(cells) + " |")
    return lines, means


# -- speed --------------------------------------------------------------------------------------------------------


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
            writer.write_table(
                pa.table([pa.array(values[:, j].astype(np.float32)) for j in range(series)], schema=schema)
            )


def speed(mode: str, params: Params, steps: int, quick: bool) -> str:
    train_path, input_path = WORK / "lstm_ad_train.csv", WORK / "lstm_ad_input.csv"
    model_dir, output = WORK / "lstm_ad_model", WORK / "lstm_ad_output.csv"
    generate(train_path, 5000, seed=1)
    generate(input_path, steps)
    # the mode's default architecture; prediction speed does not depend on how long it trained
    params = Params(**{**vars(params), "epochs": 1 if quick else 5})
    fit(params, read_series_columns(train_path))[0].save(model_dir)
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(model_dir), str(input_path), str(output)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    total, read, scoring, formatting, peak = map(float, out[-5:])
    # formatting is measured as predictions_csv minus a second score(): below 2 % of the scoring time
    # that difference is the scoring's own run-to-run noise, not a rate
    formatted = f"{steps / formatting:,.0f}" if formatting > 0.02 * scoring else "within the score's noise"
    line = (
        f"| {mode} | {steps:,} | **{steps / total:,.0f}** ({total:.1f} s) | {steps / read:,.0f} "
        f"| **{steps / scoring:,.0f}** ({scoring:.1f} s) | {formatted} | {peak / 1e6:.0f} MB |"
    )
    for path in (train_path, input_path, output):
        path.unlink()
    return line


def section(quick: bool) -> str:
    modes = {m: Params(**{**vars(p), "epochs": 2}) for m, p in MODES.items()} if quick else MODES
    paper = MODES["paper"]
    lines = [
        "## LSTM-AD detection and speed",
        "",
        f"Each mode with its defaults ({'quick: 2 epochs' if quick else 'full budgets'}), seed 0, CPU. "
        "seed: the reference product's (num-layers 2, sequence-length 50, hidden-size 128, dropout 0.1, lr 0.001, "
        "batch 64, 100 epochs, error-fraction 0.2). paper: `--scoring paper` with sequence-length "
        f"{paper.sequence_length}, prediction-length {paper.prediction_length}, hidden-size "
        f"{paper.hidden_size}, {paper.epochs} epochs, the rest as seed. Both are judged on the rows from the "
        f"paper mode's first score (row {LstmAD(paper).first_scored + 1}) on. Peers from BASELINES.md "
        "(TSB-AD's LSTMAD: window 100-150, 50 epochs with early stopping). Fit wall time: seed / paper.",
        "",
    ]
    lines += shared_series(modes)
    table, _ = generated_series(modes)
    lines += [
        "",
        "Generated series (benchmarks/anomaly.py `generated`: planted anomalies, labeled over the cycle "
        "they spoil), the same two models per series beside an IsolationForest on windows of one "
        "period:",
        "",
    ] + table
    lines += [
        "",
        "Prediction speed on generated 8-series CSVs, each mode's default architecture (seed: 2 x 128 "
        f"LSTM over sequences of 50; paper: 2 x {paper.hidden_size} LSTM over one window of "
        f"{paper.sequence_length} steps per time step, predicting {paper.prediction_length} ahead), "
        "time steps per second, imports excluded. `kfts predict --device cpu` end to end in a process "
        "of its own, then its parts on the data in memory:",
        "",
        "| mode | time steps | **kfts predict** | read CSV | **score** | format CSV | peak memory above imports |",
        "|---|---|---|---|---|---|---|",
    ]
    lines.append(speed("seed", MODES["seed"], 100_000 if quick else 1_000_000, quick))
    lines.append(speed("paper", paper, 10_000 if quick else 100_000, quick))
    return "\n".join(lines) + "\n"


# -- choosing the paper mode's defaults ---------------------------------------------------------------------------

SWEEP = [
    {},
    {"prediction_length": 1},
    {"prediction_length": 10},
    {"prediction_length": 20},
    {"prediction_length": 80},
    {"sequence_length": 25},
    {"sequence_length": 100},
    {"hidden_size": 64},
    {"epochs": 50},
]


def sweep(base: dict, seeds) -> None:
    """Paper mode on the generated series, one setting changed at a time from `base`: mean ROC-AUC and
    VUS-PR over the kinds and seeds, and the fit time (what the defaults in LstmADParams rest on)."""
    for change in SWEEP:
        params = Params(**{**base, **change, "scoring": "paper"})
        start = time.perf_counter()
        _, means = generated_series({"paper": params}, seeds)
        print(
            f"{change or 'base'}: ROC-AUC {means['paper'][0]:.3f} VUS-PR {means['paper'][1]:.3f} "
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="LSTM-AD benchmark parts")
    parser.add_argument("--sweep", action="store_true", help="the paper mode's settings on the generated series")
    parser.add_argument("--seeds", default="0", help="generated data seeds, comma-separated")
    args = parser.parse_args()
    if args.sweep:
        sweep({}, [int(s) for s in args.seeds.split(",")])
