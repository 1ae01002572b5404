"""`kfts pipeline submit` and `kfts pipeline schedule`: a run, or a recurring run, on a Kubeflow Pipelines
cluster, of a pipeline compiled with the placement flags (kfts.cli.pipeline.compile) or of an IR YAML file.
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
from pathlib import Path

from kfts.cli.pipeline.compile import cluster_from_args
from kfts.core.errors import InputError
from kfts.kubeflow.compile import compile_pipeline
from kfts.kubeflow.deploy import parse_key_value

# the fields of KFP's cron (robfig/cron, seconds first): name, lowest, highest, and the names it also takes
_CRON_FIELDS = (
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("", *"JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())),
    ("day of week", 0, 6, tuple("SUN MON TUE WED THU FRI SAT".split())),
)
# *, ?, N or N-M, each maybe /STEP
_CRON_ITEM = re.compile(r"(?:\*|\?|([0-9A-Za-z]+)(?:-([0-9A-Za-z]+))?)(?:/([1-9]\d*))?")


def _check_cron(text: str, fields_: list[str]) -> None:
    """Refuse here what the KFP API would refuse only after the pipeline was compiled and uploaded."""
    for field, (what, low, high, names) in zip(fields_, _CRON_FIELDS):
        for item in field.split(","):
            match = _CRON_ITEM.fullmatch(item)
            values = [v for v in match.groups()[:2] if v] if match else []
            if not match or any(_cron_value(v, names) not in range(low, high + 1) for v in values):
                raise InputError(
                    f"--cron {text!r}: {what} {item!r} is not *, ? or {low}-{high} (N, N-M, a list, /STEP)"
                )


def _cron_value(text: str, names: tuple[str, ...]) -> int:
    return int(text) if text.isdigit() else names.index(text.upper()) if text.upper() in names else -1


def _parameters(pairs: list[str]) -> dict:
    """--param NAME=VALUE: VALUE read as JSON when it is JSON (numbers, true, lists), else as text."""
    result = {}
    for pair in pairs or []:
        key, value = parse_key_value(pair, "--param")
        try:
            result[key] = json.loads(value)
        except ValueError:
            result[key] = value
    return result


def _package(args, tmp: str) -> str:
    """The IR file to send: --package as given, or PIPELINE compiled with the placement options."""
    if args.package:
        if not Path(args.package).is_file():
            raise InputError("does not exist", path=args.package)
        return args.package
    if not args.pipeline:
        raise InputError("name a PIPELINE or give --package FILE")
    return str(
        compile_pipeline(args.pipeline, Path(tmp) / "pipeline.yaml", cluster_from_args(args), fan_out=args.fan_out)
    )


@contextlib.contextmanager
def _kfp_api(host: str):
    """Talking to the KFP API at `host`: a host that does not answer is the user's to fix, in one line."""
    import urllib3

    try:
        yield
    except (urllib3.exceptions.HTTPError, ConnectionError) as e:
        reason = getattr(e, "reason", None) or e
        reason = str(reason).split(": ", 1)[-1] if isinstance(reason, Exception) else reason
        raise InputError(
            f"the KFP API at {host} cannot be reached ({reason}): check --host (in the "
            "cluster http://ml-pipeline.kubeflow:8888; from outside, kubectl port-forward -n kubeflow "
            "svc/ml-pipeline 8888 and http://localhost:8888)"
        ) from None


def _client(args):
    import warnings

    import kfp

    # kfp.Client warns on every use that it needs KFP 2; the API's own answer says more when it does not fit
    warnings.filterwarnings("ignore", category=FutureWarning, module="kfp.client")
    return kfp.Client(host=args.host, namespace=args.namespace, existing_token=args.token)


def _caching(args) -> bool | None:
    """--cache / --no-cache: every task's caching, as the user asks; neither: None, the caching each task was
    compiled with (kfp's Client overrides every task's setting whenever enable_caching is not None)."""
    return {"cache": True, "no-cache": False}.get(args.caching)


def cmd_submit(args) -> int:
    params = _parameters(args.param)  # before the host is asked: a typo here is no unreachable host
    with tempfile.TemporaryDirectory() as tmp, _kfp_api(args.host):
        package = _package(args, tmp)
        result = _client(args).create_run_from_pipeline_package(
            package,
            arguments=params,
            run_name=args.run_name,
            experiment_name=args.experiment,
            namespace=args.namespace,
            enable_caching=_caching(args),
            service_account=args.service_account,
        )
    print(f"run {result.run_id} created on {args.host}")
    return 0


def cmd_schedule(args) -> int:
    fields_ = args.cron.split()
    if len(fields_) not in (5, 6):
        raise InputError(f"--cron takes a cron expression of 5 fields (or 6, seconds first), not {args.cron!r}")
    cron = " ".join(["0", *fields_]) if len(fields_) == 5 else args.cron  # KFP's cron has seconds first
    _check_cron(args.cron, cron.split())
    params = _parameters(args.param)
    with tempfile.TemporaryDirectory() as tmp, _kfp_api(args.host):
        client = _client(args)
        package = _package(args, tmp)
        experiment = client.create_experiment(args.experiment, namespace=args.namespace)
        job = client.create_recurring_run(
            experiment_id=experiment.experiment_id,
            job_name=args.job_name or f"{args.pipeline or 'kfts'}-schedule",
            cron_expression=cron,
            max_concurrency=1,
            no_catchup=True,
            params=params,
            pipeline_package_path=package,
            enable_caching=_caching(args),
            service_account=args.service_account,
        )
    print(f"recurring run {job.recurring_run_id} created on {args.host}: cron {cron!r}")
    return 0
