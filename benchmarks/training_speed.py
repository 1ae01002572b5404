"""`make bench` "Training speed": how fast kfts trains InceptionTime; every figure from one run on one machine.

1. The acceptance comparison: the 5-network seed default (seed-samples/inception_time, 100 epochs, seed 0,
   `kfts train` as a user runs it) with this code and with commit fb93916 (checked out beside as a git worktree
   under benchmarks/work and run in this environment, so the same torch), wall time and test accuracy; and
   what each run's own `ensemble=auto` timing predicted per epoch against what the run sustained.
2. The CPU kernels add-on (addons/kfts-cpu-kernels): the same `kfts train` with the add-on's layers and with
   torch's own (the add-on hidden from kfts's network hook), wall time, seconds per epoch and test accuracy.
   `python benchmarks/training_speed.py --addon` runs that part alone (`--epochs 2`, the fewest that time an
   epoch, tries it out).
3. Where an epoch goes: its training steps and its validation pass (fp32, as fb93916 ran it, or at the training
   precision, as kfts does now), and the page faults, under glibc's default allocator settings and with
   kfts.core.training.reuse_freed_memory.
4. Seconds per network-epoch for 1 and 5 networks, each layout and precision, with the share of this machine's
   measured matmul rate (fp32 and bf16).
5. aeon 1.6's InceptionTimeClassifier (installed into its own environment under benchmarks/work) on the same
   data: seconds per network-epoch, from a 2- and a 12-epoch run of one network; beside it kfts's, without
   validation data as aeon runs, and with it.
6. Time to accuracy: test accuracy against training wall time on the seed sample and two UCR sets, for fixed
   epoch budgets and for early stopping, kfts beside aeon.
7. The GPU: the seed default on one GPU, stacked and sequential, fp32 and bf16, where this run has one.
   `python benchmarks/training_speed.py --gpu` runs that part alone (a short script for a borrowed GPU machine;
   `--device cpu --epochs 1` tries it out anywhere).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kfts.algorithms.inception_time.estimator import InceptionTime, Params, _Ensemble
from kfts.algorithms.inception_time.network import InceptionNetworks
from kfts.core import training_loop
from kfts.core.csvio import LabeledSeries, read_labeled_series
from kfts.core.training import cpu_count, cpu_supports_bf16, reuse_freed_memory, use_cpu_share

from classification import DATA, UCR

BASELINE = "fb93916"  # the code before this work on training speed
WORK = Path(__file__).resolve().parent / "work"
SEED = DATA / "seed-samples" / "inception_time"
UCR_SETS = ["GunPoint", "ItalyPowerDemand"]
AEON_SCRIPT = """
import json, sys, time, numpy as np
from aeon.classification.deep_learning import InceptionTimeClassifier
def read(path):
    data = np.loadtxt(path, delimiter=",", dtype=str, ndmin=2)
    return data[:, 1:].astype(np.float32)[:, None, :], data[:, 0]
train_path, test_path, networks, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
(x, y), (xt, yt) = read(train_path), read(test_path)
model = InceptionTimeClassifier(n_classifiers=networks, n_epochs=epochs, batch_size=64, random_state=0, verbose=False)
start = time.perf_counter()
model.fit(x, y)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "accuracy": float((model.predict(xt) == yt).mean())}))
"""


# -- 1. the acceptance comparison -------------------------------------------------------------------------------


def baseline_checkout() -> Path:
    path = WORK / BASELINE
    if not (path / "src" / "kfts").is_dir():
        subprocess.run(
            ["git", "worktree", "add", "--force", "--detach", str(path), BASELINE],
            check=True,
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
        )
    return path


# `python -m kfts` with torch's layers in InceptionTime's network whatever add-on is installed
WITHOUT_ADDONS = """
import sys
from kfts.algorithms.inception_time import network
network.LAYERS = network.TorchLayers()
from kfts.cli import main
sys.exit(main(sys.argv[1:]))
"""


def cli_run(checkout: Path | None, epochs: int, extra: list[str] = (), valid: bool = True, addons: bool = True) -> dict:
    """`kfts train` of the seed default on the seed sample (validating on valid.csv every epoch, or not), then
    `kfts predict` on its test set, from a checkout (None: the installed kfts), with the installed add-ons or
    without. -> seconds, test accuracy, the auto line, epoch times."""
    env = {**os.environ, "PYTHONPATH": f"{checkout}/src:{checkout}"} if checkout else dict(os.environ)
    kfts = [sys.executable, "-m", "kfts"] if addons else [sys.executable, "-c", WITHOUT_ADDONS]
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            *kfts,
            "train",
            "inception-time",
            "--train",
            str(SEED / "train.csv"),
            *(["--valid", str(SEED / "valid.csv")] if valid else []),
            "--model-dir",
            f"{tmp}/model",
            "--seed",
            "0",
            "--epochs",
            str(epochs),
            *extra,
        ]
        start, stamps, lines = time.perf_counter(), [], []
        with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) as process:
            for line in process.stdout:
                lines.append(line.strip())
                if line.startswith("epoch="):
                    stamps.append(time.perf_counter())
        seconds = time.perf_counter() - start
        if process.returncode:
            raise RuntimeError(f"{' '.join(command)} failed:\n" + "\n".join(lines[-20:]))
        subprocess.run(
            [
                sys.executable,
                "-m",
                "kfts",
                "predict",
                "--model-dir",
                f"{tmp}/model",
                "--input",
                str(SEED / "test_data.csv"),
                "--output",
                f"{tmp}/predictions.csv",
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        predicted = Path(f"{tmp}/predictions.csv").read_text().split()
    truth = (SEED / "test_labels.csv").read_text().split()
    auto = next((line for line in lines if line.startswith("ensemble=auto")), "")
    # one metric line per member and epoch when the members train one after another
    per_line = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else float("nan")
    sequential = "training sequential" in auto
    return {
        "seconds": seconds,
        "accuracy": float(np.mean(np.array(predicted) == np.array(truth))),
        "auto": auto,
        "epoch": per_line * (5 if sequential else 1),
        "epochs": len(stamps) // (5 if sequential else 1),
    }


def predicted_epoch(auto_line: str, steps: int) -> float | None:
    """The per-epoch time a run's own `ensemble=auto` line predicted for the layout it chose."""
    old = re.search(r"one step of all \d+ members takes ([\d.]+)s one after another, ([\d.]+)s stacked", auto_line)
    if old:  # fb93916 timed one step of each layout
        return steps * min(float(old[1]), float(old[2]))
    new = re.search(r"takes ([\d.]+)s one after another, ([\d.]+)s stacked", auto_line)
    return min(float(new[1]), float(new[2])) if new else None


def acceptance(epochs: int) -> tuple[list[str], dict]:
    """kfts now, fb93916, kfts now again: a machine that speeds up or slows down during the run favours
    neither side."""
    steps = -(-700 // 64)
    runs = [
        ("kfts now (first)", cli_run(None, epochs)),
        (f"commit {BASELINE}", cli_run(baseline_checkout(), epochs)),
        ("kfts now (again)", cli_run(None, epochs)),
    ]
    now = [run for name, run in runs if name.startswith("kfts")]
    before = runs[1][1]
    now_seconds = float(np.mean([run["seconds"] for run in now]))
    lines = [
        f"### The 5-network seed default, {epochs} epochs: kfts now against commit {BASELINE}",
        "",
        "`kfts train inception-time --train train.csv --valid valid.csv --seed 0` with the default "
        "hyperparameters (5 networks, batch 64, ensemble auto, precision auto), then `kfts predict` on the "
        "150 test series; the three runs one after the other, nothing else running.",
        "",
        "| code | training wall time | test accuracy | sustained s per epoch | its `ensemble=auto` timing "
        "predicted | its auto line |",
        "|---|---|---|---|---|---|",
    ]
    for name, run in runs:
        predicted = predicted_epoch(run["auto"], steps)
        lines.append(
            f"| {name} | {run['seconds']:.0f} s | {run['accuracy']:.3f} "
            f"({round(run['accuracy'] * 150)}/150) | {run['epoch']:.2f} s | "
            + (f"{predicted:.2f} s" if predicted else "–")
            + f" | `{run['auto']}` |"
        )
    accuracies = " and ".join(f"{run['accuracy']:.3f}" for run in now)
    lines += [
        "",
        f"**Speed-up: {before['seconds'] / now_seconds:.2f}x** in wall time (fb93916's run against the "
        f"mean of the two runs of kfts now), with test accuracy {accuracies} now against "
        f"{before['accuracy']:.3f}.",
        "",
    ]
    return lines, dict(runs)


# -- 2. the CPU kernels add-on ------------------------------------------------------------------------------------


def addon_rows(epochs: int) -> list[str]:
    """The seed default with the add-on, without it, with it again (a machine that speeds up or slows down during
    the run favours neither side): a Markdown table and the speed-up."""
    runs = [
        ("with the add-on", cli_run(None, epochs)),
        ("without (torch's layers)", cli_run(None, epochs, addons=False)),
        ("with the add-on (again)", cli_run(None, epochs)),
    ]
    lines = [
        f"`kfts train inception-time --train train.csv --valid valid.csv --seed 0 --epochs {epochs}` (5 networks, "
        "precision auto), then `kfts predict` on the 150 test series. The add-on's kernels run only in bf16 "
        "on the CPU: where `--precision auto` trains in fp32 (no native bf16) both take the same layers.",
        "",
        "| network layers | training wall time | sustained s per epoch | test accuracy |",
        "|---|---|---|---|",
    ]
    for name, run in runs:
        lines.append(f"| {name} | {run['seconds']:.0f} s | {run['epoch']:.2f} s | {run['accuracy']:.3f} |")
    with_addon = float(np.mean([runs[0][1]["epoch"], runs[2][1]["epoch"]]))
    lines += [
        "",
        f"**The add-on trains {runs[1][1]['epoch'] / with_addon:.2f}x as fast** per epoch (the runs without "
        "it against the mean of the two with it).",
    ]
    return lines


# -- 3. where an epoch goes ---------------------------------------------------------------------------------------


def breakdown_rows() -> list[str]:
    """Each allocator setting in fresh processes (glibc's settings cannot be put back once changed), the two
    alternating twice; the median of each setting's epochs."""
    epochs = {"glibc defaults": [], "reuse_freed_memory": []}
    for _ in range(2):
        for setting in epochs:
            out = subprocess.run(
                [sys.executable, __file__, "--breakdown", setting], capture_output=True, text=True, check=True
            )
            epochs[setting] += json.loads(out.stdout.splitlines()[-1])
    rows = []
    for setting, measured in epochs.items():
        steps, fp32, trained, faults = np.median(np.array(measured), axis=0)
        rows.append(f"| {setting} | {steps:.2f} s | {fp32:.2f} s | {trained:.2f} s | {faults:,.0f} |")
    return rows


def measure_breakdown(setting: str) -> None:
    """Prints [[steps, fp32 validation, validation at the training precision, page faults], ...] of 3 epochs."""
    torch.set_num_threads(cpu_count())  # use_cpu_share() would change the allocator settings too
    if setting == "reuse_freed_memory":
        reuse_freed_memory()
    train, valid = read_labeled_series(SEED / "train.csv"), read_labeled_series(SEED / "valid.csv")
    model = InceptionTime(Params(ensemble="stacked"), device="cpu", seed=0)
    # what fit sets before its first epoch; the epochs are run below, part by part
    model.device_, model.classes = torch.device("cpu"), np.unique(train.labels)
    model.scaler = {"mean": float(train.values.mean()), "std": float(train.values.std())}
    model.network = None
    x, y = model._tensor(train.values), model.encode_labels(train.labels)
    xv = model._tensor(valid.values)
    task = _Ensemble(model, x, y, None)
    dtype = task.dtype = torch.bfloat16 if cpu_supports_bf16() else None
    net = model._new_group(5).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)

    def epoch() -> tuple[float, float, float, int]:
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        for i in range(0, len(x), 64):
            training_loop.step(task, net, optimizer, x[i : i + 64], y[i : i + 64])
        steps = time.perf_counter() - start
        start = time.perf_counter()
        model._logits(xv, net, None)
        fp32 = time.perf_counter() - start
        start = time.perf_counter()
        model._logits(xv, net, dtype)
        trained = time.perf_counter() - start
        return steps, fp32, trained, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults

    epoch()  # warm-up: oneDNN's kernels are made, the heap grows
    print(json.dumps([epoch() for _ in range(3)]))


# -- 4. per network-epoch, each layout and precision ---------------------------------------------------------------


def matmul_rate(dtype: torch.dtype) -> float:
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    return 10 * 2 * 2048**3 / (time.perf_counter() - start)


def training_flops_per_series(length: int, n_classes: int) -> float:
    """3 x the forward FLOPs of one network: every convolution keeps the series' length."""
    net = InceptionNetworks(1, n_classes, members=1)
    return 3 * 2 * sum(m.weight.numel() for m in net.modules() if isinstance(m, nn.Conv2d)) * length


def layout_rows(train: LabeledSeries, valid: LabeledSeries, epochs: int, peaks: dict) -> list[str]:
    flops = training_flops_per_series(train.values.shape[1], 3) * len(train.values)
    rows = []
    for networks, ensemble in [(1, "sequential"), (5, "sequential"), (5, "stacked")]:
        for precision in ("fp32", "bf16"):
            params = Params(models=networks, epochs=epochs, ensemble=ensemble, precision=precision)
            start = time.perf_counter()
            InceptionTime(params, device="cpu", seed=0).fit(train, valid)
            per = (time.perf_counter() - start) / epochs / networks
            peak = peaks[precision]
            rows.append(
                f"| {networks} | {ensemble if networks > 1 else '–'} | {precision} | {per:.3f} s | "
                f"{flops / per / 1e9:.0f} GFLOP/s | {100 * flops / per / peak:.0f}% of {precision} matmul |"
            )
    return rows


# -- 5. and 6. aeon, time to accuracy ------------------------------------------------------------------------------


def aeon_python() -> Path:
    """A virtual environment under benchmarks/work holding aeon 1.6 and TensorFlow (CPU), apart from kfts's."""
    venv = WORK / "aeon-venv"
    python = venv / "bin" / "python"
    if not (venv / ".installed").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "aeon==1.6.*", "tensorflow-cpu"], check=True)
        (venv / ".installed").touch()
    return python


def aeon_fit(train: Path, test: Path, networks: int, epochs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:  # aeon writes its checkpoint files into the working directory
        out = subprocess.run(
            [str(aeon_python()), "-c", AEON_SCRIPT, str(train), str(test), str(networks), str(epochs)],
            cwd=tmp,
            capture_output=True,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
    if out.returncode:
        raise RuntimeError("aeon failed:\n" + out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def seed_test_file(tmp: Path) -> Path:
    """aeon reads one file with the label first: the seed sample's test series with their labels."""
    labels = (SEED / "test_labels.csv").read_text().split()
    rows = (SEED / "test_data.csv").read_text().splitlines()
    path = tmp / "seed_test.csv"
    path.write_text("".join(f"{label},{row}\n" for label, row in zip(labels, rows)))
    return path


def split_validation(train: LabeledSeries, share: float = 0.25) -> tuple[LabeledSeries, LabeledSeries]:
    """A seeded random quarter of the training series held out for early stopping (UCR sets have no
    validation split; the test set is never looked at)."""
    order = np.random.default_rng(0).permutation(len(train.labels))
    cut = int(len(order) * (1 - share))
    part = lambda idx: LabeledSeries(train.labels[idx], train.values[idx])  # noqa: E731
    return part(order[:cut]), part(order[cut:])


def kfts_fit(train, test, valid, **params) -> dict:
    start = time.perf_counter()
    model = InceptionTime(Params(**params), device="cpu", seed=0).fit(train, valid)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "accuracy": float((model.predict(test.values) == test.labels).mean()),
        "epochs": max(h["epoch"] for h in model.history),
    }


def time_to_accuracy(runs: dict, quick: bool) -> list[str]:
    lines = [
        "| data | tool | settings | epochs run | training wall time | test accuracy |",
        "|---|---|---|---|---|---|",
    ]
    budget, patience = (2, 2) if quick else (100, 10)
    stopped = cli_run(None, budget, ["--early-stopping", str(patience)])
    for name, run in runs.items():
        lines.append(
            f"| seed sample | {name} | 5 networks, {budget} epochs | {run['epochs']} | "
            f"{run['seconds']:.0f} s | {run['accuracy']:.3f} |"
        )
    lines.append(
        f"| seed sample | kfts now | 5 networks, early stopping (patience {patience}, at most {budget} "
        f"epochs; valid.csv watched) | {stopped['epochs']} | {stopped['seconds']:.0f} s | "
        f"{stopped['accuracy']:.3f} |"
    )
    for dataset in UCR_SETS:
        train_path, test_path = UCR / dataset / f"{dataset}_train.csv", UCR / dataset / f"{dataset}_test.csv"
        train, test = read_labeled_series(train_path), read_labeled_series(test_path, min_classes=1)
        fit_part, held_out = split_validation(train)
        budgets = [2] if quick else [25, 100]
        results = [(f"kfts | 5 networks, {e} epochs", kfts_fit(train, test, None, epochs=e)) for e in budgets]
        results.append(
            (
                f"kfts | 5 networks, early stopping (patience {2 if quick else 20}, at most "
                f"{budgets[-1]} epochs; a quarter of train held out)",
                kfts_fit(fit_part, test, held_out, epochs=budgets[-1], early_stopping=2 if quick else 20),
            )
        )
        results.append(
            (
                f"aeon 1.6 | 5 networks, {budgets[-1]} epochs",
                {**aeon_fit(train_path, test_path, 5, budgets[-1]), "epochs": budgets[-1]},
            )
        )
        for settings, r in results:
            tool, settings = settings.split(" | ")
            lines.append(
                f"| {dataset} | {tool} | {settings} | {r['epochs']} | {r['seconds']:.0f} s | {r['accuracy']:.3f} |"
            )
    return lines


# -- 7. the GPU ------------------------------------------------------------------------------------------------------


def device_rows(device: str, epochs: int) -> list[str]:
    """The seed default on one device, each layout and precision: a Markdown table."""
    train, valid = read_labeled_series(SEED / "train.csv"), read_labeled_series(SEED / "valid.csv")
    labels = np.array((SEED / "test_labels.csv").read_text().split())
    values = np.loadtxt(SEED / "test_data.csv", delimiter=",", dtype=np.float32, ndmin=2)
    name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
    rows = [
        f"{name}, the seed sample, 5 networks, {epochs} epochs, seed 0:",
        "",
        "| layout | precision | training wall time | s per network-epoch | test accuracy |",
        "|---|---|---|---|---|",
    ]
    for ensemble in ("stacked", "sequential"):
        for precision in ("fp32", "bf16"):
            start = time.perf_counter()
            model = InceptionTime(
                Params(epochs=epochs, ensemble=ensemble, precision=precision), device=device, seed=0
            ).fit(train, valid)
            seconds = time.perf_counter() - start  # fit ends by copying its scores to the CPU: synchronized
            accuracy = float((model.predict(values) == labels).mean())
            rows.append(
                f"| {ensemble} | {precision} | {seconds:.1f} s | {seconds / epochs / 5:.3f} s | {accuracy:.3f} |"
            )
    return rows


# -- the section -------------------------------------------------------------------------------------------------------


def section(quick: bool) -> str:
    use_cpu_share()
    train, valid = read_labeled_series(SEED / "train.csv"), read_labeled_series(SEED / "valid.csv")
    peaks = {"fp32": matmul_rate(torch.float32), "bf16": matmul_rate(torch.bfloat16)}
    lines = [
        "## Training speed (InceptionTime)",
        "",
        f"CPU with {torch.get_num_threads()} threads; native bf16 (AVX512-BF16 or AMX): "
        f"{'yes' if cpu_supports_bf16() else 'no'}, so `--precision auto` trains in "
        f"{'bf16' if cpu_supports_bf16() else 'fp32'}. Matmul 2048x2048 measured at "
        f"{peaks['fp32'] / 1e9:.0f} GFLOP/s in fp32 and {peaks['bf16'] / 1e9:.0f} GFLOP/s in bf16.",
        "",
    ]
    accept, runs = acceptance(2 if quick else 100)
    lines += accept
    lines += ["### With and without the CPU kernels add-on", "", *addon_rows(2 if quick else 20), ""]
    lines += [
        "### Where an epoch goes (5 networks stacked, the seed sample, training precision "
        f"{'bf16' if cpu_supports_bf16() else 'fp32'})",
        "",
        "Median of 6 epochs (3 in each of two processes, after one warm-up): the 11 training steps, "
        "the validation pass over 150 series in fp32 (as fb93916 ran it) and at the training precision "
        "(as kfts runs it now), and the minor page faults per epoch.",
        "",
        "| allocator | training steps | validation fp32 | validation at training precision | page faults |",
        "|---|---|---|---|---|",
        *breakdown_rows(),
        "",
    ]
    lines += [
        "### Seconds per network-epoch, each layout and precision (the seed sample, 700 x 100, with its "
        "validation pass)",
        "",
        "| networks | layout | precision | s per network-epoch | training rate "
        "(3x forward conv FLOPs) | share of matmul rate |",
        "|---|---|---|---|---|---|",
        *layout_rows(train, valid, 1 if quick else 4, peaks),
        "",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        test_file = seed_test_file(Path(tmp))
        short, longer = (1, 2) if quick else (2, 12)
        a, b = (aeon_fit(SEED / "train.csv", test_file, 1, e) for e in (short, longer))
    aeon_epoch = (b["seconds"] - a["seconds"]) / (longer - short)
    # like for like: aeon validates on nothing during training, so neither does this kfts run
    bare_epoch = cli_run(None, longer, valid=False)["epoch"] / 5
    now_epoch = float(np.mean([run["epoch"] for name, run in runs.items() if name.startswith("kfts")])) / 5
    lines += [
        "### kfts beside aeon 1.6 per epoch",
        "",
        f"aeon 1.6 InceptionTimeClassifier (TensorFlow, CPU), one network, batch 64, on the seed sample: "
        f"{a['seconds']:.1f} s for {short} epochs and {b['seconds']:.1f} s for {longer}, so "
        f"**{aeon_epoch:.3f} s per network-epoch**, with no validation data.",
        "",
        "| kfts, the 5-network seed default | s per network-epoch | faster than aeon |",
        "|---|---|---|",
        f"| without validation data, as aeon ran ({longer} epochs, the mean time between epoch lines) | "
        f"{bare_epoch:.3f} s | **{aeon_epoch / bare_epoch:.2f}x** |",
        f"| validating on valid.csv every epoch (the acceptance runs above) | {now_epoch:.3f} s | "
        f"{aeon_epoch / now_epoch:.2f}x |",
        "",
    ]
    lines += ["### Time to accuracy", "", *time_to_accuracy(runs, quick), ""]
    lines += ["### GPU", ""]
    lines += (
        device_rows("cuda", 2 if quick else 100)
        if torch.cuda.is_available()
        else [
            "No GPU at hand in this run. On a GPU machine, `python benchmarks/training_speed.py --gpu` measures the "
            "seed default there, stacked and sequential, fp32 and bf16."
        ]
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--breakdown", help=argparse.SUPPRESS)
    parser.add_argument(
        "--gpu",
        action="store_true",
        help="only the GPU part (the seed default on one GPU, each layout and precision), printed as Markdown",
    )
    parser.add_argument("--device", default="cuda", help="the device of --gpu (cpu: to try the script out)")
    parser.add_argument(
        "--addon",
        action="store_true",
        help="only the comparison with and without the CPU kernels add-on, printed as Markdown",
    )
    parser.add_argument("--epochs", type=int, help="epochs of --gpu (default 100) or --addon (default 20)")
    args = parser.parse_args()
    if args.breakdown:
        measure_breakdown(args.breakdown)
    elif args.addon:
        print("\n".join(addon_rows(args.epochs or 20)))
    elif args.gpu:
        use_cpu_share()
        print("\n".join(device_rows(args.device, args.epochs or 100)))
