"""`make bench`: measure kfts on this machine and write one Markdown report.

Each section is a module in this folder with `section(quick: bool) -> str` (Markdown). A section's figures
all come from one run of it; its result is kept in benchmarks/results/<section>.md, stamped with when it ran,
on which machine and under what load, and REPORT.md is assembled from those files. `--only NAME ...` reruns
some sections and keeps the others' last results (timings need a quiet machine; accuracy does not).
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SECTIONS = [
    "seed_accuracy",  # InceptionTime on seed-samples/inception_time with default hyperparameters (acceptance)
    "ucr_accuracy",  # InceptionTime on the UCR sets, the reference product's defaults and the paper's protocol
    "batch_norm_stats",  # InceptionTime on the UCR sets, 3 seeds: running BatchNorm averages against precise statistics
    "training_speed",  # InceptionTime training speed: against fb93916 and aeon, layouts, precisions, time to accuracy
    "csv_parse",  # CSV parse speed and peak memory
    "anomaly",  # LSTM-AD detection quality (ROC-AUC, VUS-PR) and prediction speed
    "serving",  # kfts serve latency and requests/s at concurrency 1, 8, 32, beside in-process
    "streaming",  # kfts predict of files larger than its memory budget: peak memory against file size
    "serving_faults",  # kfts serve under a mix of good requests and client mistakes: status codes, RSS
    "images",  # image build times and sizes, predictor cold start, CLI start-up before and after
    "distributed",  # kfts train in one process and under torchrun (2 processes, 2 nodes on loopback)
]


def machine() -> str:
    import torch

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {len(os.sched_getaffinity(0))} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, {gpu}; "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", default="benchmarks/REPORT.md")
    parser.add_argument("--quick", action="store_true", help="small budgets: checks the benchmarks run")
    parser.add_argument("--only", nargs="*", choices=SECTIONS, help="run only these sections")
    args = parser.parse_args()
    results = Path(args.report).parent / ("results-quick" if args.quick else "results")
    results.mkdir(parents=True, exist_ok=True)
    for name in args.only or SECTIONS:
        print(f"bench: {name} ...", flush=True)
        load, start = os.getloadavg()[0], time.perf_counter()
        body = importlib.import_module(name).section(quick=args.quick)
        stamp = (
            f"_Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC in {time.perf_counter() - start:.0f} s "
            f"on {machine()}; load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
            f"{'; quick mode: small budgets, not representative' if args.quick else ''}._\n"
        )
        (results / f"{name}.md").write_text(body.replace("\n", f"\n\n{stamp}", 1))
        print(f"bench: {name} done in {time.perf_counter() - start:.0f}s", flush=True)
    parts = [
        "# kfts benchmark report\n\nWritten by `make bench` (benchmarks/run.py). Each section says when, on "
        "which machine and under what load it was measured; all figures in a section come from one run.\n"
    ]
    parts += [(results / f"{name}.md").read_text() for name in SECTIONS if (results / f"{name}.md").exists()]
    Path(args.report).write_text("\n".join(parts))
    print(f"report written to {args.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
