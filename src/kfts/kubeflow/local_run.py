"""A KFP pipeline run on this machine with kfp.local (what `kfts pipeline run` does: kfts.cli.pipeline.run).

By default kfp.local's SubprocessRunner runs every step as a subprocess here with the kfts installed here;
with --containers its DockerRunner runs every step in the component image (kfts.kubeflow.images, built by `make images`)
through a Docker-compatible engine (Docker, or Podman's API service: DOCKER_HOST). GPU requests, node
selectors, tolerations, retries and volumes are cluster settings and are left out of local runs. A local run
prints one line per task as it ends (its display name, status and seconds, and a failed task's error);
kfp.local's full log is kept in pipeline.log in the run's folder. What kfts works around in kfp.local to do
so is in kfts.kubeflow.kfp_local_patch.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from kfts.core.errors import InputError
from kfts.kubeflow import kfp_local_patch
from kfts.kubeflow.compile import build_pipeline


def run_local(
    name: str, arguments: dict, output_dir: str | os.PathLike, *, fan_out: bool = False, runner=None, progress=None
) -> dict:
    """Run pipeline `name` with kfp.local under `output_dir` (the pipeline root, kept): {task: {output: path}}.
    runner: kfp.local's SubprocessRunner here (None), or container_runner() for every step in the image.
    progress: a TaskLog, told of each task as it ends; kfp.local's own log (every task's executor input and
    output) then goes to pipeline.log in the run's folder instead of the terminal.

    Raises RuntimeError naming the failed task when a step fails (its log says why)."""
    from kfp import local

    root = pipeline_root(output_dir)
    runner = runner or local.SubprocessRunner(use_venv=False)
    # workspace_root stays unset: kfp.local makes a temporary one and deletes it after the run
    local.init(runner=runner, pipeline_root=str(root), raise_on_error=True)
    pipeline = build_pipeline(name, None, fan_out=fan_out)
    before = {p for p in root.iterdir()}
    log_path = root / f".{name}-{os.getpid()}.log"
    try:
        if progress is None:
            pipeline(**arguments)
        else:
            progress.names = kfp_local_patch.display_names(pipeline)
            with kfp_local_patch.output_into(log_path, progress.feed):
                pipeline(**arguments)
    finally:
        runs = sorted(
            (p for p in root.iterdir() if p not in before and p.is_dir() and p.name != log_path.name),
            key=lambda p: p.stat().st_mtime,
        )
        if log_path.exists():
            log_path.replace(runs[-1] / "pipeline.log" if runs else root / f"{name}.log")
    return local_outputs(runs[-1]) if runs else {}


class TaskLog:
    """Reads kfp.local's log as it is written and reports each task when it ends: its display name, status
    and seconds (and the container it ran in, with --containers), and for a failed task its own error line
    (what src/kfts/kubeflow/components/settings.py's fail() prints)."""

    _EXCEPTION = re.compile(r"^[\w.]+(?:Error|Exception): ")

    def __init__(self, report, names: dict[str, str] | None = None):
        self.report, self.names = report, names or {}
        self.started: dict[str, float] = {}
        self.errors: dict[str, str] = {}
        self.containers: dict[str, str] = {}
        self.crashes: dict[str, str] = {}
        self.failed: list[str] = []

    def name(self, task: str) -> str:
        """The display name of a task; a loop iteration's task (train-member-2) is named after its task."""
        base = max((n for n in self.names if task == n or task.startswith(n + "-")), key=len, default=None)
        return self.names.get(base, task) + task[len(base) :] if base and base != task else self.names.get(task, task)

    def feed(self, line: str) -> None:
        line = kfp_local_patch.plain(line)
        event = kfp_local_patch.task_event(line)
        if event is None:
            text = line.strip()
            if text.startswith("error: ") and self.started:
                self.errors.setdefault(list(self.started)[-1], text)
            elif self._EXCEPTION.match(text) and self.started:  # a bug rather than bad input: its last line
                self.crashes[list(self.started)[-1]] = text
            elif text.startswith("in container ") and self.started:  # run_container's line: where it ran
                self.containers[list(self.started)[-1]] = text
            return
        at, started, ended, status = event
        if started:
            self.started[started] = at
            return
        assert ended is not None  # an event is a start or an end
        took = (at - self.started.pop(ended, at)) % 86400  # a run past midnight
        where = f"  {self.containers.pop(ended)}" if ended in self.containers else ""
        self.report(f"{self.name(ended):<28} {status:<8} {took:6.1f} s{where}")
        if status != "SUCCESS":
            self.failed.append(ended)
            if ended in self.errors or ended in self.crashes:
                self.report(f"  {self.errors.get(ended) or self.crashes[ended]}")


def pipeline_root(output_dir: str | os.PathLike) -> Path:
    root = Path(output_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def container_runner():
    """kfp.local's DockerRunner, its containers as a cluster runs them: read-only root filesystem, /tmp a
    tmpfs. They run as the caller's user, so that what they write into the pipeline root (mounted at the same
    path) belongs to whoever started the run."""
    import docker
    from kfp import local

    try:
        docker.from_env().ping()
    except docker.errors.DockerException as e:
        raise InputError(
            "--containers needs a Docker-compatible engine: start Docker, or Podman's API service "
            "(podman system service --time 0 unix:///tmp/podman.sock &) with "
            f"DOCKER_HOST=unix:///tmp/podman.sock ({type(e).__name__})"
        ) from None
    kfp_local_patch.replace_docker_handler()
    return local.DockerRunner(user=f"{os.getuid()}:{os.getgid()}", read_only=True, tmpfs={"/tmp": ""})


def local_outputs(run_dir: Path) -> dict:
    """{task: {output name: path}} of a finished kfp.local run, from each task's executor_output.json."""
    outputs = {}
    for out_file in sorted(run_dir.rglob("executor_output.json")):
        task = out_file.parent.relative_to(run_dir).as_posix()
        produced = json.loads(out_file.read_text()).get("artifacts", {})
        paths = {name: a["artifacts"][0]["uri"] for name, a in produced.items() if a.get("artifacts")}
        # placeholders of optional inputs that were not given are not outputs worth pointing at
        paths = {
            name: uri
            for name, uri in paths.items()
            if produced[name]["artifacts"][0].get("metadata", {}).get("present", True)
        }
        if paths:
            outputs[task] = paths
    return outputs
