"""`kfts pipeline run`: a KFP pipeline run on this machine with kfp.local.

By default kfp.local's SubprocessRunner runs every step as a subprocess here with the kfts installed here;
with --containers its DockerRunner runs every step in the component image (kfts.images, built by `make images`)
through a Docker-compatible engine (Docker, or Podman's API service: DOCKER_HOST). GPU requests, node
selectors, tolerations, retries and volumes are cluster settings and are left out of local runs. A local run
prints one line per task as it ends (its display name, status and seconds, and a failed task's error);
kfp.local's full log is kept in pipeline.log in the run's folder. What kfts works around in kfp.local to do
so is in kfts.kfp_local_patch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import fields
from pathlib import Path

from kfts import kfp_local_patch
from kfts.errors import InputError
from kfts.pipeline_compile import build_pipeline


def run_local(name: str, arguments: dict, output_dir: str | os.PathLike, *, fan_out: bool = False,
              runner=None, progress=None) -> dict:
    """Run pipeline `name` with kfp.local under `output_dir` (the pipeline root, kept): {task: {output: path}}.
    runner: kfp.local's SubprocessRunner here (None), or container_runner() for every step in the image.
    progress: a TaskLog, told of each task as it ends; kfp.local's own log (every task's executor input and
    output) then goes to pipeline.log in the run's folder instead of the terminal.

    Raises RuntimeError naming the failed task when a step fails (its log says why)."""
    from kfp import local
    root = _root(output_dir)
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
        runs = sorted((p for p in root.iterdir() if p not in before and p.is_dir() and p.name != log_path.name),
                      key=lambda p: p.stat().st_mtime)
        if log_path.exists():
            log_path.replace(runs[-1] / "pipeline.log" if runs else root / f"{name}.log")
    return local_outputs(runs[-1]) if runs else {}


class TaskLog:
    """Reads kfp.local's log as it is written and reports each task when it ends: its display name, status
    and seconds (and the container it ran in, with --containers), and for a failed task its own error line
    (what components/settings.py's fail() prints)."""

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
        return self.names.get(base, task) + task[len(base):] if base and base != task else self.names.get(task, task)

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
        took = (at - self.started.pop(ended, at)) % 86400  # a run past midnight
        where = f"  {self.containers.pop(ended)}" if ended in self.containers else ""
        self.report(f"{self.name(ended):<28} {status:<8} {took:6.1f} s{where}")
        if status != "SUCCESS":
            self.failed.append(ended)
            if ended in self.errors or ended in self.crashes:
                self.report(f"  {self.errors.get(ended) or self.crashes[ended]}")


def _root(output_dir: str | os.PathLike) -> Path:
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
        raise InputError("--containers needs a Docker-compatible engine: start Docker, or Podman's API service "
                         "(podman system service --time 0 unix:///tmp/podman.sock &) with "
                         f"DOCKER_HOST=unix:///tmp/podman.sock ({type(e).__name__})") from None
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
        paths = {name: uri for name, uri in paths.items()
                 if produced[name]["artifacts"][0].get("metadata", {}).get("present", True)}
        if paths:
            outputs[task] = paths
    return outputs


def _uri(path: str | None, staging: Path | None = None) -> str:
    """A local file (or model folder) as the absolute path a pipeline step reads; URIs with a scheme are passed
    through. With `staging` (container runs, which see only the pipeline root) it is copied there first."""
    if not path:
        return ""
    if "://" in path:
        return path
    source = Path(path)
    if not source.exists():
        raise InputError("does not exist", path=path)
    if staging is None:
        return str(source.resolve())
    target = staging / source.name
    while target.exists():  # two inputs of the same name from different folders
        target = target.with_name("_" + target.name)
    staging.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copyfile(source, target)
    return str(target)


def cmd_run(args) -> int:
    from kfts.algorithms import spec
    from kfts.cli import hyperparameters
    params = hyperparameters(args, spec(args.algorithm).Params)  # checks the values before anything runs
    runner = container_runner() if args.containers else None  # before anything is written: is there an engine?
    staging = Path(tempfile.mkdtemp(prefix="inputs-", dir=_root(args.output_dir))) if runner else None
    arguments = {"train_uri": _uri(args.train, staging), "valid_uri": _uri(args.valid, staging),
                 "seed": args.seed, "checkpoint_root": str(Path(args.output_dir).resolve() / "checkpoints")}
    if args.pipeline.startswith("retrain-"):
        arguments.update(_retraining_arguments(args, params, staging))
    else:
        arguments.update(_training_arguments(args, params, staging))
    name = args.pipeline
    terminal = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)  # kept while the run's output is logged
    tasks = TaskLog(lambda line: print(line, file=terminal, flush=True))
    try:
        outputs = run_local(name, arguments, args.output_dir, fan_out=args.fan_out, runner=runner, progress=tasks)
    except RuntimeError:
        failed = tasks.failed[-1] if tasks.failed else None
        print(f"error: pipeline {name} failed" + (f" at {tasks.name(failed)!r}" if failed else "")
              + f"; its full log: {_log_file(args.output_dir, name)}", file=sys.stderr)
        return 2 if failed in tasks.errors else 1  # a task's `error:` line: the input's fault, as in the CLI
    finally:
        terminal.close()
    print(f"\npipeline {name} finished; full log: {_log_file(args.output_dir, name)}; "
          f"outputs under {Path(args.output_dir).resolve()}:")
    for task, paths in outputs.items():
        for name, path in paths.items():
            print(f"  {task}/{name}: {path}")
    return 0


def _training_arguments(args, params, staging) -> dict:
    """An algorithm's pipeline's parameters from `kfts pipeline run` flags: the data, every hyperparameter and
    the algorithm's predict options (pipelines/inception_time.py, pipelines/lstm_ad.py)."""
    from kfts.algorithms import spec
    if args.test_labels and not args.test:
        raise InputError("--test-labels label the rows of --test: give --test too")
    arguments = {"test_uri": _uri(args.test, staging), "test_labels_uri": _uri(args.test_labels, staging),
                 **{f.name: getattr(params, f.name) for f in fields(params)},
                 **{name: getattr(args, name) for name in spec(args.algorithm).predict_options}}
    if not args.fan_out:
        arguments["init_model_uri"] = _uri(args.init_model, staging)
    elif args.init_model:
        raise InputError("--init-model cannot be combined with --fan-out")
    return arguments


def _retraining_arguments(args, params, staging) -> dict:
    """The retraining pipelines' parameters. The champion is promoted in place, so a container run needs it
    at a URI the containers write to (they see only the pipeline root)."""
    if staging is not None and "://" not in args.champion:
        raise InputError("with --containers the champion is replaced where the containers can write: give "
                         "--champion as a URI (s3://...), or run without --containers", path=args.champion)
    arguments = {"champion_uri": _uri(args.champion), "holdout_uri": _uri(args.holdout, staging),
                 "holdout_labels_uri": _uri(args.holdout_labels, staging),
                 "init_model_uri": _uri(args.init_model, staging),
                 "hyperparameters": {f.name: getattr(params, f.name) for f in fields(params)},
                 "higher_is_better": not args.lower_is_better}
    if args.metric:
        arguments["metric"] = args.metric
    return arguments


def _log_file(output_dir, name: str) -> Path:
    """The newest run's pipeline.log (run_local puts it there)."""
    logs = sorted(Path(output_dir).resolve().glob(f"{name}-*/pipeline.log"), key=lambda p: p.stat().st_mtime)
    return logs[-1] if logs else Path(output_dir).resolve() / f"{name}.log"
