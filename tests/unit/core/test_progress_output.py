"""At a terminal the progress bar (stderr) and the epoch lines (stdout) share one screen: an epoch line is
never written onto the bar's line."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

from helpers import make_classification, write_csv


def _screen_lines(raw: str) -> list[str]:
    """What a terminal shows of each line: a carriage return moves back to column 0 and overwrites."""
    lines = []
    for text in raw.replace("\r\n", "\n").split("\n"):
        cells: list[str] = []
        column = 0
        for ch in text.replace("\x1b[A", ""):
            if ch == "\r":
                column = 0
                continue
            cells[column : column + 1] = [ch]
            column += 1
        lines.append("".join(cells).rstrip())
    return lines


def test_epoch_lines_and_the_progress_bar_never_share_a_line(tmp_path):
    labels, values = make_classification(n_per_class=6, length=16)
    train = write_csv(tmp_path / "train.csv", ([lab, *row] for lab, row in zip(labels, values)))
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # tqdm sizes its bar by it
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kfts",
            "train",
            "inception-time",
            "--train",
            str(train),
            "--model-dir",
            str(tmp_path / "model"),
            "--filters",
            "4",
            "--depth",
            "3",
            "--models",
            "1",
            "--epochs",
            "4",
            "--seed",
            "0",
        ],
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    raw = b""
    while True:
        try:
            chunk = os.read(leader, 1 << 16)
        except OSError:  # the terminal closed: the process has exited
            break
        if not chunk:
            break
        raw += chunk
    assert process.wait(timeout=300) == 0
    screen = _screen_lines(raw.decode(errors="replace"))
    epochs = [line for line in screen if "epoch=" in line]
    assert len(epochs) == 4, screen
    assert all(line.startswith("epoch=") for line in epochs), epochs
    assert "%|" in raw.decode(errors="replace")  # there was a bar to keep apart from them
