"""`kfts pipeline run`: the flags as a pipeline's arguments (local files staged where the steps read them),
the run itself by kfts.kubeflow.local_run, one line per task as it ends."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import fields
from pathlib import Path

from kfts.cli import hyperparameters
from kfts.core.errors import InputError
from kfts.kubeflow.local_run import TaskLog, container_runner, pipeline_root, run_local


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

    params = hyperparameters(args, spec(args.algorithm).Params)  # checks the values before anything runs
    runner = container_runner() if args.containers else None  # before anything is written: is there an engine?
    staging = Path(tempfile.mkdtemp(prefix="inputs-", dir=pipeline_root(args.output_dir))) if runner else None
    arguments = {
        "train_uri": _uri(args.train, staging),
        "valid_uri": _uri(args.valid, staging),
        "seed": args.seed,
        "checkpoint_root": str(Path(args.output_dir).resolve() / "checkpoints"),
    }
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
        print(
            f"error: pipeline {name} failed"
            + (f" at {tasks.name(failed)!r}" if failed else "")
            + f"; its full log: {_log_file(args.output_dir, name)}",
            file=sys.stderr,
        )
        return 2 if failed in tasks.errors else 1  # a task's `error:` line: the input's fault, as in the CLI
    finally:
        terminal.close()
    print(
        f"\npipeline {name} finished; full log: {_log_file(args.output_dir, name)}; "
        f"outputs under {Path(args.output_dir).resolve()}:"
    )
    for task, paths in outputs.items():
        for name, path in paths.items():
            print(f"  {task}/{name}: {path}")
    return 0


def _training_arguments(args, params, staging) -> dict:
    """An algorithm's pipeline's parameters from `kfts pipeline run` flags: the data, every hyperparameter and
    the algorithm's predict options (src/kfts/kubeflow/pipelines/inception_time.py,
    src/kfts/kubeflow/pipelines/lstm_ad.py)."""
    from kfts.algorithms import spec

    if args.test_labels and not args.test:
        raise InputError("--test-labels label the rows of --test: give --test too")
    arguments = {
        "test_uri": _uri(args.test, staging),
        "test_labels_uri": _uri(args.test_labels, staging),
        **{f.name: getattr(params, f.name) for f in fields(params)},
        **{name: getattr(args, name) for name in spec(args.algorithm).predict_options},
    }
    if not args.fan_out:
        arguments["init_model_uri"] = _uri(args.init_model, staging)
    elif args.init_model:
        raise InputError("--init-model cannot be combined with --fan-out")
    return arguments


def _retraining_arguments(args, params, staging) -> dict:
    """The retraining pipelines' parameters. The champion is promoted in place, so a container run needs it
    at a URI the containers write to (they see only the pipeline root)."""
    if staging is not None and "://" not in args.champion:
        raise InputError(
            "with --containers the champion is replaced where the containers can write: give "
            "--champion as a URI (s3://...), or run without --containers",
            path=args.champion,
        )
    arguments = {
        "champion_uri": _uri(args.champion),
        "holdout_uri": _uri(args.holdout, staging),
        "holdout_labels_uri": _uri(args.holdout_labels, staging),
        "init_model_uri": _uri(args.init_model, staging),
        "hyperparameters": {f.name: getattr(params, f.name) for f in fields(params)},
        "higher_is_better": not args.lower_is_better,
    }
    if args.metric:
        arguments["metric"] = args.metric
    return arguments


def _log_file(output_dir, name: str) -> Path:
    """The newest run's pipeline.log (run_local puts it there)."""
    logs = sorted(Path(output_dir).resolve().glob(f"{name}-*/pipeline.log"), key=lambda p: p.stat().st_mtime)
    return logs[-1] if logs else Path(output_dir).resolve() / f"{name}.log"
