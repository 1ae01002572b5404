"""Outputs on a local filesystem: synced to the disk before the rename that publishes them, and the scratch
files of a killed writer removed by the next write of the same output (never those of a writer still running)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from kfts.core import artifact

from helpers import run_cli, tiny_inception_time, write_csv


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model"
    tiny_inception_time(save_to=path)
    return path


def _recorded(monkeypatch) -> list[tuple[str, str]]:
    """What this process syncs and renames, in order: ("fsync", path) and ("rename", target)."""
    events = []
    fsync, replace, rename = os.fsync, os.replace, Path.rename

    def recording_fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return fsync(fd)

    def recording_replace(source, target, **kwargs):
        events.append(("rename", os.fspath(target)))
        return replace(source, target, **kwargs)

    def recording_rename(self, target):
        events.append(("rename", os.fspath(target)))
        return rename(self, target)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    monkeypatch.setattr(Path, "rename", recording_rename)
    return events


def test_a_model_directory_is_on_the_disk_before_it_is_renamed_into_place(model, tmp_path, monkeypatch):
    from kfts.jobs.load import load_model

    events = _recorded(monkeypatch)
    load_model(model, device="cpu").save(tmp_path / "saved")
    published = events.index(("rename", str(tmp_path / "saved")))
    synced = {Path(path).name for kind, path in events[:published] if kind == "fsync"}
    assert set(artifact.FILES) <= synced
    assert ("fsync", str(tmp_path)) in events[published:]  # the rename itself, in its directory


def test_predictions_are_on_the_disk_before_they_are_renamed_into_place(model, tmp_path, monkeypatch):
    from kfts.jobs.load import load_model
    from kfts.jobs.predict import write_predictions

    write_csv(tmp_path / "series.csv", np.zeros((3, 24)))
    events = _recorded(monkeypatch)
    write_predictions(load_model(model, device="cpu"), tmp_path / "series.csv", tmp_path / "out.csv")
    published = events.index(("rename", str(tmp_path / "out.csv")))
    [synced] = [Path(path).name for kind, path in events[:published] if kind == "fsync"]
    assert synced.startswith(".out.csv.") and synced.endswith(".partial")  # the file, under its scratch name
    assert events[published + 1 :] == [("fsync", str(tmp_path))]


def _writer(target: Path) -> subprocess.Popen:
    """A process writing `target` through kfts's atomic output, stopped half way until it is killed."""
    code = textwrap.dedent(f"""
        import sys, time
        from kfts.core.artifact import atomic_file
        with atomic_file({str(target)!r}) as f:
            f.write("half")
            f.flush()
            print("writing", flush=True)
            time.sleep(600)
    """)
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "writing\n"
    return process


def _scratch(target: Path) -> list[str]:
    return sorted(p.name for p in target.parent.glob(f".{target.name}.*.partial"))


def test_a_killed_writers_scratch_file_goes_with_the_next_write_a_running_ones_stays(model, tmp_path):
    target = tmp_path / "predictions.csv"
    killed = _writer(target)
    killed.send_signal(signal.SIGKILL)
    killed.wait(60)
    left = _scratch(target)
    assert len(left) == 1  # what SIGKILL (the OOM killer, a lost node) leaves
    running = _writer(target)
    try:
        live = sorted(set(_scratch(target)) - set(left))
        write_csv(tmp_path / "series.csv", np.zeros((3, 24)))
        run_cli("predict", "--model-dir", model, "--input", tmp_path / "series.csv", "--output", target, check=True)
        assert len(target.read_text().splitlines()) == 3
        assert _scratch(target) == live  # the killed writer's is gone, the running one's is its own
    finally:
        running.kill()
        running.wait(60)


def test_a_scratch_output_untouched_for_a_day_is_stale_whoever_wrote_it(model, tmp_path):
    """One written on another machine (a pod gone, on a shared volume): its process cannot be looked up here."""
    from kfts.jobs.load import load_model

    foreign = tmp_path / ".saved.kfts-1-0123abcd.x7q_k2.partial"
    foreign.mkdir()
    recent = tmp_path / ".saved.kfts-2-0123abcd.y8r_l3.partial"
    recent.mkdir()
    day_ago = time.time() - 25 * 3600
    os.utime(foreign, (day_ago, day_ago))
    load_model(model, device="cpu").save(tmp_path / "saved")
    assert sorted(p.name for p in tmp_path.iterdir()) == [recent.name, "saved"]
