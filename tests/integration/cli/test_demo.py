"""`make demo` (kfts.cli.demo): short enough to read, under 60 lines per part, and it ends with where the
reports are."""

from __future__ import annotations

import re
import subprocess
import sys


def test_the_demo_is_short_per_part_and_ends_with_the_reports(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "kfts.cli.demo"], cwd=tmp_path, capture_output=True, text=True, timeout=1800
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("== ") or line.startswith("$ kfts pipeline run")]
    parts = [lines[a:b] for a, b in zip(starts, starts[1:] + [len(lines)])]
    assert len(parts) >= 4 and all(len(part) < 60 for part in parts), [len(p) for p in parts]
    tail = lines[lines.index(next(line for line in lines if line.startswith("demo done"))) :]
    reports = [line.strip() for line in tail[1:]]
    assert len(reports) == 6 and all(re.fullmatch(r"demo-output/\S+/report\.html", r) for r in reports)
    assert all((tmp_path / r).is_file() for r in reports)
