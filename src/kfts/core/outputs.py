"""Local outputs: scratch names beside the target, stale ones removed, and durable renames (fsync before a
rename publishes). kfts.core.artifact's atomic_directory and atomic_file build every output on them."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import socket
import time
from pathlib import Path

# Outputs are built under a scratch name beside the target: `.NAME.kfts-PID-HOST.RANDOM.partial`. A process
# killed outright (SIGKILL, the OOM killer, a node lost) leaves it behind; the next write of NAME removes it.
PARTIAL = ".partial"
STALE_AFTER_S = 24 * 3600  # a scratch output untouched this long is stale whoever wrote it (a pod gone)


def scratch_prefix(target: Path) -> str:
    return f".{target.name}.kfts-{os.getpid()}-{_host()}."


def _host() -> str:
    """This machine (a pod: its name) in a scratch name, so that only its own processes' are judged by pid."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def remove_stale(target: Path) -> None:
    """Remove the scratch outputs of `target` that no running writer owns: written here by a process that is
    gone, or untouched for STALE_AFTER_S (written on another machine sharing the volume)."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.kfts-(\d+)-([0-9a-f]{{8}})\.[^./]+{re.escape(PARTIAL)}")
    for entry in target.parent.iterdir():
        found = pattern.fullmatch(entry.name)
        if not found:
            continue
        with contextlib.suppress(FileNotFoundError):  # another writer's cleanup got there first
            mine = found.group(2) == _host()
            if (mine and not _running(int(found.group(1)))) or time.time() - entry.lstat().st_mtime > STALE_AFTER_S:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: running
        pass
    return True


def synced(path: Path) -> None:
    """Flush `path` to the disk before the rename that publishes it (and a directory's entries after it): after
    a crash or power loss, a renamed output must not turn out empty or missing."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot sync a directory; the files in it are synced
        if not path.is_dir():
            raise
    finally:
        os.close(fd)
