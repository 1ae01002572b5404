"""InceptionTime accuracy: seed-samples/inception_time and the UCR sets in ../shared/data, beside published figures.

Two sections (benchmarks/run.py): seed_accuracy and ucr_accuracy, defined in the modules of those names.

Two recipes:
- the reference product's defaults (5 networks, 100 epochs, batch 64, constant learning rate) on every set;
- the paper's protocol (ReduceLROnPlateau on the training loss, best-loss weights, 1500 epochs) for single
  networks on the smaller sets, beside the paper's mean accuracy of a single network. A whole 5-network
  ensemble at 1500 epochs on every set takes hours on 2 CPU cores; a GPU run can pass --full.
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

from kfts.algorithms.inception_time.estimator import InceptionTime, Params
from kfts.core.csvio import read_labeled_series

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
UCR = DATA / "ucr"
PAPER_PROTOCOL_SETS = ["ItalyPowerDemand", "GunPoint", "Coffee"]


def fit_and_score(train_path, test_path, params: Params, seed: int = 0, valid_path=None):
    """Train on one file, score accuracy on another: (accuracy, seconds of training, model)."""
    train, test = read_labeled_series(train_path), read_labeled_series(test_path, min_classes=1)
    valid = read_labeled_series(valid_path) if valid_path else None
    start = time.perf_counter()
    model = InceptionTime(params, device="cpu", seed=seed).fit(train, valid)
    seconds = time.perf_counter() - start
    return float((model.predict(test.values) == test.labels).mean()), seconds, model


def reference() -> dict[str, dict]:
    with open(UCR / "reference_accuracy.csv") as f:
        return {row["dataset"]: row for row in csv.DictReader(f)}


def seed_section(quick: bool) -> str:
    """The acceptance run: seed-samples/inception_time (the reference product's sample) with its default
    hyperparameters."""
    seed_dir = DATA / "seed-samples" / "inception_time"
    # KFTS_BENCH_EPOCHS: a smaller budget where the 100 default epochs do not fit (the table says which ran)
    params = Params(epochs=2, models=2) if quick else Params(epochs=int(os.environ.get("KFTS_BENCH_EPOCHS", 100)))
    accuracy, seconds, model = fit_and_score(
        seed_dir / "train.csv", _join_labels(seed_dir), params, valid_path=seed_dir / "valid.csv"
    )
    return "\n".join(
        [
            "## InceptionTime on the reference product's sample (seed-samples/inception_time)",
            "",
            f"Hyperparameters: {_settings(params)}; seed 0; CPU. Train 700 x 100 (3 classes), valid 150, test 150.",
            "",
            "| | test accuracy | fit wall time |",
            "|---|---|---|",
            _row(f"| kfts | {accuracy:.3f} ({round(accuracy * 150)}/150) | {seconds:.0f} s |"),
            "| the reference product's own predictions | 0.940 (141/150) | – |",
            "| aeon 1.6 InceptionTimeClassifier, 5 networks, 100 epochs (BASELINES.md, another machine) "
            "| 1.000 | 859 s |",
            "",
            f"Final training line: `{_final(model)}`",
            "",
        ]
    )


def ucr_section(quick: bool) -> str:
    """Every UCR set with the reference product's defaults; the paper's protocol for single networks on the
    small ones."""
    refs = reference()
    params = Params(epochs=2, models=2) if quick else Params()
    lines = [
        "## InceptionTime on the UCR sets",
        "",
        f"Seed defaults ({_settings(params)}), seed 0, CPU, beside published test accuracy "
        "(../shared/data/ucr/reference_accuracy.csv).",
        "",
        "| data | train x length | kfts | InceptionTime paper (5 networks, 1500 epochs) | ROCKET | HIVE-COTE 2 "
        "| fit wall time |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in sorted(refs):
        ref = refs[name]
        accuracy, seconds, _ = fit_and_score(UCR / name / f"{name}_train.csv", UCR / name / f"{name}_test.csv", params)
        lines.append(
            _row(
                f"| {name} | {ref['n_train']} x {ref['length']} | {accuracy:.3f} | "
                f"{float(ref['inceptiontime_paper']):.3f} | {float(ref['rocket_mean10']):.3f} | "
                f"{float(ref['hivecote2']):.3f} | {seconds:.0f} s |"
            )
        )
    plateau = Params(models=1, epochs=3 if quick else 1500, schedule="plateau")
    lines += [
        "",
        f"Paper protocol for one network ({_settings(plateau)}), seed 0:",
        "",
        "| data | kfts, 1 network | paper, mean of 5 single networks | fit wall time |",
        "|---|---|---|---|",
    ]
    for name in PAPER_PROTOCOL_SETS[:1] if quick else PAPER_PROTOCOL_SETS:
        accuracy, seconds, _ = fit_and_score(UCR / name / f"{name}_train.csv", UCR / name / f"{name}_test.csv", plateau)
        lines.append(
            _row(
                f"| {name} | {accuracy:.3f} | {float(refs[name]['inception_single_network_mean5']):.3f} "
                f"| {seconds:.0f} s |"
            )
        )
    return "\n".join(lines) + "\n"


def _settings(params: Params) -> str:
    return ", ".join(f"{k.replace('_', '-')} {v}" for k, v in vars(params).items())


def _row(line: str) -> str:
    print(line, flush=True)  # a long section's results so far are in its log
    return line


def _final(model) -> str:
    return " ".join(f"{k}={v:.6f}" for k, v in model.metrics.items())


def _join_labels(seed_dir: Path) -> Path:
    """The seed sample's test_data.csv + test_labels.csv as one labeled file, for scoring."""
    out = Path(__file__).resolve().parent / "work" / "seed_test_labeled.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    labels = (seed_dir / "test_labels.csv").read_text().split()
    rows = (seed_dir / "test_data.csv").read_text().splitlines()
    out.write_text("".join(f"{label},{row}\n" for label, row in zip(labels, rows)))
    return out
