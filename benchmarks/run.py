"""`make bench`: measure kfts on this machine and write one Markdown report.

Each section is a module in this folder with `section(quick: bool) -> str` (Markdown). All figures in a
report come from the one run that wrote it; the header says on which machine.
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
    "classification",   # InceptionTime accuracy on the UCR sets and the seed sample
    "ensemble_speed",   # sequential vs stacked vs reduced-precision ensemble training
    "csv_parse",        # CSV parse speed and peak memory
    "serving",          # kfts serve latency and requests/s at concurrency 1, 8, 32, beside in-process
]


def machine() -> str:
    import torch
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {len(os.sched_getaffinity(0))} cores, "
            f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, {gpu}; "
            f"torch {torch.__version__}, Python {platform.python_version()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", default="benchmarks/REPORT.md")
    parser.add_argument("--quick", action="store_true", help="small budgets: checks the benchmarks run")
    parser.add_argument("--only", nargs="*", help="run only these sections")
    args = parser.parse_args()
    parts = [f"# kfts benchmark report\n\nMeasured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on "
             f"{machine()}.{' Quick mode: small budgets, not representative.' if args.quick else ''}\n"]
    for name in args.only or SECTIONS:
        start = time.perf_counter()
        print(f"bench: {name} ...", flush=True)
        parts.append(importlib.import_module(name).section(quick=args.quick))
        print(f"bench: {name} done in {time.perf_counter() - start:.0f}s", flush=True)
    Path(args.report).write_text("\n".join(parts))
    print(f"report written to {args.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
