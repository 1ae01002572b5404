"""The `kfts` command line (docs/CLI.md).

User mistakes (kfts.core.errors.InputError) end as one line on stderr, ``error: <file>: row R, column C: <what>``,
with exit code 2 and nothing half-written. Set KFTS_DEBUG=1 to see a traceback for anything else. SIGTERM
(how Kubernetes stops a pod, and KFP a cancelled run) unwinds like Ctrl-C, so temporary outputs are removed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from dataclasses import MISSING, fields
from pathlib import Path

from kfts.core.errors import InputError
from kfts.core.storage import check_apart, staged

# Modules that add their own subcommands: each has register(subparsers) and sets `func` on its parsers.
COMMAND_MODULES: list[str] = ["kfts.cli.serve", "kfts.cli.pipeline", "kfts.cli.storage"]

# What commands import that a core install (`pip install kfts`) lacks, by top-level module: the extra that brings
# it (for serve also the packages of KServe's that kfts.serving imports itself). Registering the commands imports
# none of them; a command that needs one says which extra to install.
EXTRAS = {
    **dict.fromkeys(
        ("kserve", "orjson", "fastapi", "starlette", "grpc", "grpc_interceptor", "prometheus_client"), "serve"
    ),
    **dict.fromkeys(("kfp", "docker", "kubernetes"), "kubeflow"),
}


class Terminated(BaseException):
    """SIGTERM arrived: raised where the program is, so that `finally` blocks and context managers run."""


def _terminate(signum, frame):
    raise Terminated


def _refuse_empty_arguments(parser: argparse.ArgumentParser | None, args: argparse.Namespace) -> None:
    """An argument given as '' where its default is not '': a shell variable left unset, which would otherwise
    pass for an option left out (the default image, no namespace) or a path here (the working directory)."""
    while parser is not None:
        chosen = None
        for action in parser._actions:  # argparse keeps no public list of a parser's actions
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices[getattr(args, action.dest)]
            elif action.default != "":
                value = getattr(args, action.dest, None)
                if value == "" or isinstance(value, list) and "" in value:
                    name = action.option_strings[-1] if action.option_strings else action.metavar or action.dest.upper()
                    also = ", or leave it out for its default" if action.option_strings else ""
                    raise InputError(f"{name} is empty (''): give a value{also}")
        parser = chosen


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # `kfts serve` installs KServe's own handler later; a caller of main() in-process gets its own back at the end
    previous = None
    if threading.current_thread() is threading.main_thread():  # the only thread that may set handlers
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        _refuse_empty_arguments(parser, args)
        return args.func(args) or 0
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("error: terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except Exception as e:  # a bug, not the user's fault: say so in one line unless debugging
        missing = (e.name or "") if isinstance(e, ModuleNotFoundError) else ""
        extra = EXTRAS.get(missing.partition(".")[0])
        if extra:
            print(
                f"error: kfts {args.command} needs the {extra} extra ({missing} is not installed): "
                f"pip install 'kfts[{extra}]'",
                file=sys.stderr,
            )
            return 2
        if os.environ.get("KFTS_DEBUG"):
            raise
        print(f"error: internal error ({type(e).__name__}: {e}); rerun with KFTS_DEBUG=1 for details", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def build_parser() -> argparse.ArgumentParser:
    from kfts import __version__
    from kfts.algorithms import ALGORITHMS

    parser = argparse.ArgumentParser(prog="kfts", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"kfts {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", help="check a CSV file against the kfts contract")
    validate.add_argument("algorithm", choices=list(ALGORITHMS))
    validate.add_argument("file")
    validate.add_argument("--inference", action="store_true", help="the inference layout (no labels)")
    validate.set_defaults(func=cmd_validate)

    train = commands.add_parser("train", help="train a model and write its artifact directory")
    train_algorithms = train.add_subparsers(dest="algorithm", required=True, metavar="ALGORITHM")
    for algorithm, spec in ALGORITHMS.items():
        sub = train_algorithms.add_parser(algorithm, help=spec.summary)
        sub.add_argument("--train", required=True, help="training CSV")
        sub.add_argument("--valid", help="validation CSV (only scored)")
        sub.add_argument("--model-dir", required=True, help="where the model artifact is written")
        sub.add_argument("--init-model", help="a previous model directory to continue training from")
        sub.add_argument(
            "--checkpoint-dir",
            help="keep the training state here after every epoch; the same "
            "command run again resumes from the last finished epoch",
        )
        sub.add_argument("--seed", type=int, help="random seed for a reproducible run")
        sub.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
        add_hyperparameter_flags(sub, spec.Params)
        sub.set_defaults(func=cmd_train, Params=spec.Params)

    predict = commands.add_parser("predict", help="batch prediction of a CSV file")
    predict.add_argument("--model-dir", required=True)
    predict.add_argument("--input", required=True)
    predict.add_argument("--output", required=True)
    for name, (ids, text) in predict_options().items():
        predict.add_argument(f"--{name.replace('_', '-')}", action="store_true", help=f"{', '.join(ids)}: {text}")
    predict.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    predict.set_defaults(func=cmd_predict)

    evaluate = commands.add_parser("evaluate", help="score a model on labeled data: metrics.json + report.html")
    evaluate.add_argument("--model-dir", required=True)
    evaluate.add_argument("--input", required=True)
    evaluate.add_argument(
        "--labels", help="one label per input row, when the input is in the inference layout (series only)"
    )
    evaluate.add_argument("--output-dir", required=True)
    evaluate.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    evaluate.set_defaults(func=cmd_evaluate)

    inspect = commands.add_parser("inspect", help="what a model artifact holds (reads its JSON only)")
    inspect.add_argument("model_dir")
    inspect.set_defaults(func=cmd_inspect)

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(commands)
    return parser


def predict_options() -> dict[str, tuple[list[str], str]]:
    """Every algorithm's batch prediction options: name -> (the algorithms that have it, help)."""
    from kfts.algorithms import ALGORITHMS

    options: dict[str, tuple[list[str], str]] = {}
    for algorithm in ALGORITHMS.values():
        for name, text in algorithm.predict_options.items():
            options.setdefault(name, ([], text))[0].append(algorithm.id)
    return options


def add_hyperparameter_flags(parser: argparse.ArgumentParser, params_class) -> None:
    """One flag per hyperparameter field: `batch_size` becomes --batch-size, with the field's default."""
    from kfts.core.hyperparameters import FIELD_TYPES, field_type

    group = parser.add_argument_group("hyperparameters")
    for f in fields(params_class):
        kind = FIELD_TYPES[field_type(f)]
        default = f.default if f.default is not MISSING else None
        group.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=f.name,
            type=kind,
            default=default,
            choices=f.metadata.get("choices"),
            help=f"{f.metadata.get('help', '')} (default {default})",
        )


def hyperparameters(args: argparse.Namespace, params_class):
    return params_class(**{f.name: getattr(args, f.name) for f in fields(params_class)})


# -- commands -----------------------------------------------------------------------------------------------


def cmd_validate(args) -> None:
    from kfts.algorithms import spec
    from kfts.jobs.validate import check, describe

    layout = "inference" if args.inference else "training"
    with staged(args, inputs=("file",)):
        summary = describe(args.algorithm, args.file, layout)  # with a hint when the file looks like the other layout
        if layout == "training":
            check(args.algorithm, {"train": summary})  # a classifier's training data needs two classes
    print(f"ok: {args.file}: {spec(args.algorithm).summary_line(summary)}")


def cmd_train(args) -> None:
    from kfts.core.training import use_cpu_share
    from kfts.jobs.train import train
    from kfts.jobs.validate import check_files

    params = hyperparameters(args, args.Params)
    with staged(args, inputs=("train", "valid", "init_model"), outputs=("model_dir",)):
        check_files(args.algorithm, {"train": (args.train, "training"), "valid": (args.valid, "training")})
        use_cpu_share()
        train(
            args.algorithm,
            args.train,
            args.model_dir,
            valid_path=args.valid,
            params=params,
            init_model=args.init_model,
            checkpoint_dir=args.checkpoint_dir,
            seed=args.seed,
            device=args.device,
        )
    if int(os.environ.get("RANK", 0)) == 0:  # under torchrun, the process that wrote it
        print(f"model written to {args.model_dir}")


def cmd_predict(args) -> None:
    check_apart(args.output, "--output", {"--model-dir": args.model_dir, "--input": args.input})
    with staged(args, inputs=("model_dir", "input"), outputs=("output",)):
        rows = _predict(args)
    print(f"{rows} rows predicted into {args.output}")


def _predict(args) -> int:
    from kfts.algorithms import spec
    from kfts.core.training import use_cpu_share
    from kfts.jobs.load import load_model
    from kfts.jobs.predict import write_predictions
    from kfts.jobs.validate import check_files, read_checked_manifest

    manifest = read_checked_manifest(args.model_dir)
    algorithm = spec(manifest["algorithm"])
    for name in predict_options():
        if getattr(args, name) and name not in algorithm.predict_options:
            its = " ".join(f"--{o.replace('_', '-')}" for o in algorithm.predict_options) or "none"
            raise InputError(
                f"--{name.replace('_', '-')} does not apply to {args.model_dir}, an {algorithm.id} "
                f"model (its options: {its})"
            )
    # the first rows only: the file is streamed, and checked as it goes, whatever its size
    check_files(algorithm.id, {"input": (args.input, "inference")}, model=manifest, head=True)
    use_cpu_share()
    model = load_model(args.model_dir, device=args.device)
    options = {name: getattr(args, name) for name in algorithm.predict_options}
    return write_predictions(model, args.input, args.output, **options)  # streamed: any file size


def cmd_evaluate(args) -> None:
    from kfts.core.training import metric_line, use_cpu_share
    from kfts.jobs.evaluate import evaluate, headline
    from kfts.jobs.validate import check_files, read_checked_manifest

    check_apart(args.output_dir, "--output-dir", {"--model-dir": args.model_dir, "--input": args.input})
    with staged(args, inputs=("model_dir", "input", "labels"), outputs=("output_dir",)):
        manifest = read_checked_manifest(args.model_dir)
        check_files(
            manifest["algorithm"], evaluation_files(manifest["algorithm"], args.input, args.labels), model=manifest
        )
        use_cpu_share()
        metrics = evaluate(args.model_dir, args.input, args.output_dir, labels=args.labels, device=args.device)
    print(metric_line(headline(metrics)))
    print(f"metrics and report written to {Path(args.output_dir)}")


def evaluation_files(algorithm: str, data, labels) -> dict[str, tuple]:
    """An evaluation's inputs for kfts.jobs.validate.check_files: a labeled file, or series and their labels."""
    from kfts.algorithms import spec

    return {"input": (data, spec(algorithm).evaluation_layout(bool(labels))), "input_labels": (labels, "labels")}


def cmd_inspect(args) -> None:
    from kfts.jobs.model_info import describe_model

    print("\n".join(describe_model(args.model_dir)))
