"""Every workaround of kfp.local (the local runners of the kfp SDK, version 2.17.0) in one place.

kfts runs its pipelines locally with kfp.local (kfts.kubeflow.local_run). Where kfp.local does not do what a local
run needs, this module works around it, each with what kfp does, where (kfp/local/..., kfp 2.17.0) and the
upstream report. Check them against kfp's source when its version changes:

- replace_docker_handler: the DockerRunner reports a task that failed fast as a success (kubeflow/pipelines
  issue #13332).
- output_into and task_event: kfp.local has no hook that tells a caller when a task starts or ends. It writes
  its log and every step's output to this process's standard output; kfts keeps that in a file and reads the
  task events out of its log lines.
- display_names: kfp.local names tasks by their IR names; it ignores the display names the pipeline gave them.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from pathlib import Path


def replace_docker_handler() -> None:
    """Have kfp.local's DockerRunner run each task's container with run_container."""
    from kfp.local import docker_task_handler

    docker_task_handler.run_docker_container = run_container


def run_container(client, image: str, command: list[str], volumes: dict, **run_args) -> int:
    """One task's container, for kfp.local's DockerRunner: its logs streamed, its exit code returned.

    Replaces run_docker_container of kfp/local/docker_task_handler.py (kfp 2.17.0, lines 123-160), which starts
    containers with auto_remove=True: a task that ends within a second is then gone before the SDK's first
    inspect. Docker answers that inspect with a 404, which kfp takes for a success whatever the exit code
    (kubeflow/pipelines issue #13332); Podman answers it with a 500, which kfp does not expect. Here the
    container is removed only after its exit code was read."""
    image = image if ":" in image.rsplit("/", 1)[-1] else image + ":latest"
    if not any(image in i.tags for i in client.images.list()):
        print(f"pulling image {image}", flush=True)
        client.images.pull(image)
    container = client.containers.run(
        image=image, command=command, volumes=volumes, detach=True, stdout=True, stderr=True, **run_args
    )
    print(f"in container {container.short_id} of {image}", flush=True)
    try:
        for line in container.logs(stream=True, follow=True):
            print(line.decode(errors="replace"), end="")
        return container.wait()["StatusCode"]
    finally:
        container.remove(force=True)


# kfp.local's task events, as kfp/local/task_dispatcher.py logs them (kfp 2.17.0, lines 199, 216 and 233:
# "Executing task 'NAME'", "Task 'NAME' finished with status STATUS", names and statuses in ANSI colours)
# through kfp/local/logging_utils.py's format, "%H:%M:%S.mmm - LEVEL - message"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EVENT = re.compile(
    r"^(\d\d):(\d\d):(\d\d\.\d+) - \w+ - (?:Executing task '([^']+)'|"
    r"Task '([^']+)' finished with status (\w+))"
)


def plain(line: str) -> str:
    """A line of kfp.local's log without its ANSI colours."""
    return _ANSI.sub("", line)


def task_event(line: str) -> tuple[float, str | None, str | None, str | None] | None:
    """A plain() log line that says a task started or ended: (seconds since midnight, the task started, the
    task ended, its status); None for any other line."""
    event = _EVENT.match(line)
    if event is None:
        return None
    hours, minutes, seconds, started, ended, status = event.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds), started, ended, status


def display_names(pipeline) -> dict[str, str]:
    """kfp.local's task names (the IR's, e.g. validate-csv-3) -> the display names the pipeline gave them (what
    the KFP UI shows, e.g. "validate test"): kfp/local/task_dispatcher.py logs a task by its IR name only."""
    spec = pipeline.pipeline_spec
    dags = [spec.root.dag, *(c.dag for c in spec.components.values() if c.HasField("dag"))]
    return {name: task.task_info.name for dag in dags for name, task in dag.tasks.items()}


@contextlib.contextmanager
def output_into(log_path: Path, feed):
    """File descriptors 1 and 2 (this process's, and so its subprocesses') into `log_path` while the block
    runs; `feed` gets every line of it as it is written, from a thread that tails the file (what it prints
    must go to a copy of the terminal's descriptor taken before).

    kfp.local writes to sys.stdout (kfp/local/logging_utils.py's local_logger_context) and has each step's
    output printed there (subprocess_task_handler.py, docker_task_handler.py), with no option to send it
    elsewhere: the descriptors are what there is to take it from."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    done = threading.Event()
    with open(log_path, "wb") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)

        def tail():
            with open(log_path, "rb") as f:
                pending = b""
                while True:
                    chunk = f.read()
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        feed(line.decode(errors="replace"))
                    if not chunk:
                        if done.is_set():
                            break
                        time.sleep(0.1)

        reader = threading.Thread(target=tail, daemon=True)
        reader.start()
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            done.set()
            reader.join()
