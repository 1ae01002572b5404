"""`kfts pipeline ...`: run the KFP pipelines locally, compile them, submit and schedule them on a cluster,
and render Katib tuning experiments.

    kfts pipeline run ALGORITHM --train F [--valid F] [--test F] [--test-labels F] [...]
    kfts pipeline run retrain-ALGORITHM --champion DIR --train F --holdout F [...]
    kfts pipeline compile [--output-dir pipelines/compiled] | [PIPELINE --output FILE [placement options]]
    kfts pipeline submit --host URL (PIPELINE [placement options] | --package FILE) [--param NAME=VALUE ...]
        [--service-account NAME] [--cache | --no-cache]
    kfts pipeline schedule --host URL --cron EXPR (PIPELINE ... | --package FILE) [--param NAME=VALUE ...] [...]
    kfts pipeline tune ALGORITHM --train URI [--valid URI] --search NAME=SPEC ... [...]

Local runs use kfp.local: by default its SubprocessRunner, every step a subprocess here with the kfts
installed here; with --containers its DockerRunner, every step in the component image (kfts.kubeflow.images, built by
`make images`) through a Docker-compatible engine (Docker, or Podman's API service: DOCKER_HOST). GPU
requests, node selectors, tolerations, retries and volumes are cluster settings and are left out of local
runs. A local run prints one line per task as it ends (its display name, status and seconds, and a failed
task's error); kfp.local's full log is kept in pipeline.log in the run's folder. Placement (GPUs, requests and
limits, images, the object store's Secret, retries, the checkpoint volume) is chosen when a pipeline is
compiled: see pipelines.common.Cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import fields
from pathlib import Path

from kfts.kubeflow.deploy import DEPLOYMENT_MODES, parse_key_value, parse_kserve_version, parse_toleration
from kfts.core.errors import InputError

def pipeline_names() -> list[str]:
    """Every algorithm's pipeline (for those that have one) and its retraining pipeline: retrain-ALGORITHM."""
    from kfts.algorithms import ALGORITHMS
    return [a.id for a in ALGORITHMS.values() if a.pipeline_path] + [f"retrain-{a}" for a in ALGORITHMS]


def build_pipeline(name: str, cluster=None, *, fan_out: bool = False):
    """The pipeline function called `name` (pipeline_names()), for `cluster` (None: kfp.local)."""
    from kfts.algorithms import ALGORITHMS
    from kfts.kubeflow.pipelines import retraining
    if name not in pipeline_names():
        raise InputError(f"unknown pipeline {name!r}: choose {', '.join(pipeline_names())}")
    algorithm = ALGORITHMS[name.removeprefix("retrain-")]
    if fan_out and (name.startswith("retrain-") or not algorithm.fan_out):
        raise InputError(f"--fan-out trains ensemble members in parallel: only for "
                         f"{', '.join(a.id for a in ALGORITHMS.values() if a.fan_out)}")
    if name.startswith("retrain-"):
        return retraining.build(algorithm.id, cluster)
    return algorithm.pipeline()(cluster, **({"fan_out": True} if fan_out else {}))


def variants() -> dict[str, tuple[str, dict, bool]]:
    """The compiled IR committed under pipelines/compiled/: file name -> (pipeline, Cluster fields, fan_out):
    every algorithm's pipeline for CPUs and GPUs (and with members fanned out over GPUs), and its retraining."""
    from kfts.algorithms import ALGORITHMS
    files = {}
    for a in ALGORITHMS.values():
        if a.pipeline_path:
            files[f"{a.id}.yaml"] = (a.id, {}, False)
            files[f"{a.id}-gpu.yaml"] = (a.id, {"gpus": 1}, False)
            if a.fan_out:
                files[f"{a.id}-fan-out-gpu.yaml"] = (a.id, {"gpus": 1}, True)
    for a in ALGORITHMS:
        files[f"retrain-{a}.yaml"] = (f"retrain-{a}", {}, False)
    return files


def compile_pipeline(name: str, output: str | os.PathLike, cluster=None, *, fan_out: bool = False) -> Path:
    from kfp import compiler

    from kfts.kubeflow.pipelines.common import Cluster
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(name, cluster or Cluster(), fan_out=fan_out), str(output))
    return output


def compile_all(output_dir: str | os.PathLike) -> list[Path]:
    from kfts.kubeflow.pipelines.common import Cluster
    return [compile_pipeline(name, Path(output_dir) / file, Cluster(**settings), fan_out=fan_out)
            for file, (name, settings, fan_out) in variants().items()]


# -- local runs -------------------------------------------------------------------------------------------------

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
            progress.names = display_names(pipeline)
            with _output_into(log_path, progress.feed):
                pipeline(**arguments)
    finally:
        runs = sorted((p for p in root.iterdir() if p not in before and p.is_dir() and p.name != log_path.name),
                      key=lambda p: p.stat().st_mtime)
        if log_path.exists():
            log_path.replace(runs[-1] / "pipeline.log" if runs else root / f"{name}.log")
    return local_outputs(runs[-1]) if runs else {}


def display_names(pipeline) -> dict[str, str]:
    """kfp.local's task names (the IR's, e.g. validate-csv-3) -> the display names the pipeline gave them (what
    the KFP UI shows, e.g. "validate test"): kfp.local itself ignores display names."""
    spec = pipeline.pipeline_spec
    dags = [spec.root.dag, *(c.dag for c in spec.components.values() if c.HasField("dag"))]
    return {name: task.task_info.name for dag in dags for name, task in dag.tasks.items()}


class TaskLog:
    """Reads kfp.local's log as it is written and reports each task when it ends: its display name, status
    and seconds (and the container it ran in, with --containers), and for a failed task its own error line
    (what src/kfts/kubeflow/components/settings.py's fail() prints)."""

    _ANSI = re.compile(r"\x1b\[[0-9;]*m")
    _EVENT = re.compile(r"^(\d\d):(\d\d):(\d\d\.\d+) - \w+ - (?:Executing task '([^']+)'|"
                        r"Task '([^']+)' finished with status (\w+))")
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
        line = self._ANSI.sub("", line)
        event = self._EVENT.match(line)
        if event is None:
            text = line.strip()
            if text.startswith("error: ") and self.started:
                self.errors.setdefault(list(self.started)[-1], text)
            elif self._EXCEPTION.match(text) and self.started:  # a bug rather than bad input: its last line
                self.crashes[list(self.started)[-1]] = text
            elif text.startswith("in container ") and self.started:  # run_container's line: say where it ran
                self.containers[list(self.started)[-1]] = text
            return
        hours, minutes, seconds, started, ended, status = event.groups()
        at = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
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


@contextlib.contextmanager
def _output_into(log_path: Path, feed):
    """File descriptors 1 and 2 (this process's, and so its subprocesses') into `log_path` while the block
    runs; `feed` gets every line of it as it is written, from a thread that tails the file (what it prints
    must go to a copy of the terminal's descriptor taken before)."""
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
    from kfp.local import docker_task_handler
    try:
        docker.from_env().ping()
    except docker.errors.DockerException as e:
        raise InputError("--containers needs a Docker-compatible engine: start Docker, or Podman's API service "
                         "(podman system service --time 0 unix:///tmp/podman.sock &) with "
                         f"DOCKER_HOST=unix:///tmp/podman.sock ({type(e).__name__})") from None
    docker_task_handler.run_docker_container = run_container
    return local.DockerRunner(user=f"{os.getuid()}:{os.getgid()}", read_only=True, tmpfs={"/tmp": ""})


def run_container(client, image: str, command: list[str], volumes: dict, **run_args) -> int:
    """One task's container, for kfp.local's DockerRunner: its logs streamed, its exit code returned.

    Replaces kfp.local's own version, which starts containers with auto-remove: a task that ends within a
    second is then gone before the SDK's first inspect, and Podman answers that with a 500 (kfp expects a
    404, and on a 404 takes the task for a success whatever its exit code). Here the container is removed
    only after its exit code was read."""
    image = image if ":" in image.rsplit("/", 1)[-1] else image + ":latest"
    if not any(image in i.tags for i in client.images.list()):
        print(f"pulling image {image}", flush=True)
        client.images.pull(image)
    container = client.containers.run(image=image, command=command, volumes=volumes, detach=True, stdout=True,
                                      stderr=True, **run_args)
    print(f"in container {container.short_id} of {image}", flush=True)
    try:
        for line in container.logs(stream=True, follow=True):
            print(line.decode(errors="replace"), end="")
        return container.wait()["StatusCode"]
    finally:
        container.remove(force=True)


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
    the algorithm's predict options (src/kfts/kubeflow/pipelines/inception_time.py, src/kfts/kubeflow/pipelines/lstm_ad.py)."""
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


# -- cluster: compile, submit, schedule ---------------------------------------------------------------------

def cluster_from_args(args):
    from kfts.kubeflow.images import base_image
    from kfts.kubeflow.pipelines.common import Cluster
    cluster = Cluster(gpus=args.gpus, accelerator=args.accelerator, resources=resources_from_args(args.resources),
                      image=args.image or base_image(), storage_secret=args.storage_secret,
                      retries=args.retries, checkpoint_pvc=args.checkpoint_pvc, trainjob_nodes=args.trainjob_nodes,
                      trainjob_procs_per_node=args.trainjob_procs_per_node, trainjob_runtime=args.trainjob_runtime,
                      kserve_version=args.kserve_version, deployment_mode=args.deployment_mode,
                      deploy_timeout_minutes=args.deploy_timeout_minutes)
    if args.kserve_version:
        parse_kserve_version(args.kserve_version)
    if args.deploy_timeout_minutes <= 0:
        raise InputError(f"--deploy-timeout-minutes {args.deploy_timeout_minutes:g}: more than 0")
    if cluster.trainjob_nodes and args.fan_out:
        raise InputError("--trainjob-nodes trains one TrainJob; --fan-out trains members as separate tasks: "
                         "choose one (a TrainJob shares the members out over its processes)")
    if args.node_selector is not None:
        cluster.node_selector = dict(parse_key_value(s, "--node-selector") for s in args.node_selector)
    if args.toleration is not None:
        cluster.tolerations = [parse_toleration(s) for s in args.toleration]
    if min(cluster.gpus, cluster.retries, cluster.trainjob_nodes) < 0 or cluster.trainjob_procs_per_node < 1:
        raise InputError("--gpus, --retries and --trainjob-nodes must be at least 0, --trainjob-procs-per-node "
                         "at least 1")
    return cluster


def resources_from_args(specs: list[str] | None) -> dict:
    """--resources STEP=cpu:2,memory:8Gi,cpu_limit:4,memory_limit:8Gi (repeatable): each step's requests and
    limits over pipelines.common.default_resources(); what STEP `all` sets applies to every step, and what a
    step's own flag sets over that."""
    from dataclasses import replace

    from kfts.kubeflow.pipelines.common import STEPS, default_resources
    asked = {}
    for spec in specs or []:
        step, text = parse_key_value(spec, "--resources")
        if step != "all" and step not in STEPS:
            raise InputError(f"--resources {step}=...: no such step; choose all, {', '.join(STEPS)}")
        values = dict(item.partition(":")[::2] for item in text.split(","))
        if set(values) - {"cpu", "memory", "cpu_limit", "memory_limit"} or not all(values.values()):
            raise InputError(f"--resources {spec}: expected STEP=NAME:QUANTITY,... with NAME cpu, memory, "
                             "cpu_limit or memory_limit")
        asked.setdefault(step, {}).update(values)
    resources = default_resources()
    for step in STEPS:
        try:
            resources[step] = replace(resources[step], **{**asked.get("all", {}), **asked.get(step, {})})
        except InputError as e:
            raise InputError(f"--resources: step {step}: {e}") from None
    return resources


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


def cmd_compile(args) -> int:
    if args.pipeline is None:
        for path in compile_all(args.output_dir):
            print(f"compiled {path}")
        return 0
    output = args.output or Path(args.output_dir) / f"{args.pipeline}.yaml"
    print(f"compiled {compile_pipeline(args.pipeline, output, cluster_from_args(args), fan_out=args.fan_out)}")
    return 0


def _package(args, tmp: str) -> str:
    """The IR file to send: --package as given, or PIPELINE compiled with the placement options."""
    if args.package:
        if not Path(args.package).is_file():
            raise InputError("does not exist", path=args.package)
        return args.package
    if not args.pipeline:
        raise InputError("name a PIPELINE or give --package FILE")
    return str(compile_pipeline(args.pipeline, Path(tmp) / "pipeline.yaml", cluster_from_args(args),
                                fan_out=args.fan_out))


@contextlib.contextmanager
def _kfp_api(host: str):
    """Talking to the KFP API at `host`: a host that does not answer is the user's to fix, in one line."""
    import urllib3
    try:
        yield
    except (urllib3.exceptions.HTTPError, ConnectionError) as e:
        reason = getattr(e, "reason", None) or e
        reason = str(reason).split(": ", 1)[-1] if isinstance(reason, Exception) else reason
        raise InputError(f"the KFP API at {host} cannot be reached ({reason}): check --host (in the "
                         "cluster http://ml-pipeline.kubeflow:8888; from outside, kubectl port-forward -n kubeflow "
                         "svc/ml-pipeline 8888 and http://localhost:8888)") from None


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
    with tempfile.TemporaryDirectory() as tmp, _kfp_api(args.host):
        package = _package(args, tmp)
        result = _client(args).create_run_from_pipeline_package(
            package, arguments=_parameters(args.param), run_name=args.run_name, experiment_name=args.experiment,
            namespace=args.namespace, enable_caching=_caching(args), service_account=args.service_account)
    print(f"run {result.run_id} created on {args.host}")
    return 0


def cmd_schedule(args) -> int:
    fields_ = args.cron.split()
    if len(fields_) not in (5, 6):
        raise InputError(f"--cron takes a cron expression of 5 fields (or 6, seconds first), not {args.cron!r}")
    cron = " ".join(["0", *fields_]) if len(fields_) == 5 else args.cron  # KFP's cron has seconds first
    with tempfile.TemporaryDirectory() as tmp, _kfp_api(args.host):
        client = _client(args)
        package = _package(args, tmp)
        experiment = client.create_experiment(args.experiment, namespace=args.namespace)
        job = client.create_recurring_run(
            experiment_id=experiment.experiment_id, job_name=args.job_name or f"{args.pipeline or 'kfts'}-schedule",
            cron_expression=cron, max_concurrency=1, no_catchup=True, params=_parameters(args.param),
            pipeline_package_path=package, enable_caching=_caching(args), service_account=args.service_account)
    print(f"recurring run {job.recurring_run_id} created on {args.host}: cron {cron!r}")
    return 0


def cmd_tune(args) -> int:
    from kfts.kubeflow import katib
    from kfts.core.artifact import atomic_file
    experiment = katib.render_experiment(
        algorithm=args.algorithm, name=args.name, train_uri=args.train, valid_uri=args.valid,
        search=[parse_key_value(s, "--search") for s in args.search],
        fixed=dict(parse_key_value(s, "--set") for s in args.set or []), image=args.image,
        objective=args.objective, max_trials=args.max_trials, parallel_trials=args.parallel_trials,
        namespace=args.namespace, gpus=args.gpus, seed=args.seed, model_root=args.model_root, cpu=args.cpu,
        memory=args.memory, deadline_s=args.trial_deadline, storage_secret=args.storage_secret,
        service_account=args.service_account)
    text = katib.to_yaml(experiment)
    if args.output:
        with atomic_file(args.output) as f:
            f.write(text)
        print(f"Katib experiment written to {args.output}: kubectl apply -f {args.output}")
    else:
        sys.stdout.write(text)
    return 0


# -- parser ---------------------------------------------------------------------------------------------------

def local_run_flags(p, algorithm: str, spec) -> None:
    """What every `kfts pipeline run PIPELINE` takes: seed, output folder, containers, hyperparameters."""
    from kfts.cli import add_hyperparameter_flags
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--output-dir", default="pipeline-output",
                   help="the pipeline root: every step's outputs are kept here (default pipeline-output)")
    p.add_argument("--containers", action="store_true",
                   help="run every step in the component image ($KFTS_IMAGE, `make images`) through a "
                        "Docker-compatible engine (DOCKER_HOST) instead of as subprocesses here")
    add_hyperparameter_flags(p, spec.Params)
    p.set_defaults(func=cmd_run, algorithm=algorithm)


def register(commands) -> None:
    from kfts.algorithms import ALGORITHMS
    from kfts.kubeflow.images import component_image

    pipeline = commands.add_parser("pipeline", help="Kubeflow Pipelines: run locally, compile, submit, "
                                                    "schedule, tune with Katib")
    sub = pipeline.add_subparsers(dest="pipeline_command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a pipeline on this machine with kfp.local")
    run_pipelines = run.add_subparsers(dest="pipeline", required=True, metavar="PIPELINE")
    for algorithm, spec in ALGORITHMS.items():
        if spec.pipeline_path:
            p = run_pipelines.add_parser(algorithm, help=f"the {algorithm} pipeline")
            p.add_argument("--train", required=True, help="training CSV (path or URI)")
            p.add_argument("--valid", help="validation CSV: scored, and the gate of deployment")
            p.add_argument("--test", help="CSV to batch-predict (inference layout)")
            p.add_argument("--test-labels", help="labels of --test, one per row: the test data is then evaluated")
            p.add_argument("--init-model", help="a previous model directory (or URI) to continue training from")
            for name, text in spec.predict_options.items():
                p.add_argument(f"--{name.replace('_', '-')}", action="store_true", help=f"predictions: {text}")
            if spec.fan_out:
                p.add_argument("--fan-out", action="store_true",
                               help="train the ensemble members as parallel tasks and combine them")
            local_run_flags(p, algorithm, spec)

        p = run_pipelines.add_parser(f"retrain-{algorithm}", help=f"champion/challenger retraining of a "
                                                                  f"{algorithm} model")
        p.add_argument("--champion", required=True, help="the current model directory (or URI): replaced by "
                                                         "the challenger when the challenger scores better")
        p.add_argument("--train", required=True, help="the new training CSV (path or URI)")
        p.add_argument("--holdout", required=True, help="held-out CSV both models are scored on"
                       + (" (labeled layout)" if spec.labeled_layout else ""))
        if not spec.labeled_layout:
            p.add_argument("--holdout-labels", help=f"labels of --holdout, one per row (needed for the default "
                                                    f"metric, {spec.holdout_metric}; without them use another "
                                                    "--metric, e.g. --metric mse --lower-is-better)")
        p.add_argument("--valid", help="validation CSV, scored while the challenger trains")
        p.add_argument("--init-model", help="start the challenger from this model (e.g. the champion)")
        p.add_argument("--metric", help=f"the held-out metric that decides (default {spec.holdout_metric})")
        p.add_argument("--lower-is-better", action="store_true", help="the metric is an error (mse)")
        local_run_flags(p, algorithm, spec)
    run.set_defaults(fan_out=False, holdout_labels=None)

    def placement(p):
        p.add_argument("--fan-out", action="store_true", help="ensemble members as parallel tasks (" + ", ".join(
            a for a, s in ALGORITHMS.items() if s.fan_out) + ")")
        g = p.add_argument_group("placement on the cluster (pipelines.common.Cluster, pipelines/README.md)")
        g.add_argument("--gpus", type=int, default=0, help="GPUs per training / prediction task (default 0: CPU)")
        g.add_argument("--accelerator", default="nvidia.com/gpu", help="the GPU resource name")
        g.add_argument("--node-selector", action="append", metavar="LABEL=VALUE",
                       help="label of the GPU nodes the GPU tasks must run on (repeatable; default none)")
        g.add_argument("--toleration", action="append", metavar="KEY[=VALUE][:EFFECT]",
                       help="taint of the GPU nodes to tolerate (repeatable; default nvidia.com/gpu:NoSchedule)")
        g.add_argument("--resources", action="append", metavar="STEP=cpu:Q,memory:Q,cpu_limit:Q,memory_limit:Q",
                       help="requests and limits of a step's tasks (repeatable; STEP all: every step); default "
                            "validate-csv, train, combine-members, evaluate, batch-predict cpu:2,memory:8Gi,"
                            "cpu_limit:4,memory_limit:8Gi; the others cpu:500m,memory:1Gi,cpu_limit:1,"
                            "memory_limit:2Gi")
        g.add_argument("--image", help=f"the default of the pipeline's `image` parameter, the tasks' image "
                                       f"(default {component_image()}, from KFTS_IMAGE); GPU tasks run its -cuda "
                                       "twin (`gpu_image`). A run may pass other images as those parameters")
        g.add_argument("--storage-secret", default="", metavar="SECRET",
                       help="Kubernetes Secret of the object store's credentials (keys AWS_ACCESS_KEY_ID, "
                            "AWS_SECRET_ACCESS_KEY, optional AWS_ENDPOINT_URL, AWS_REGION), given as env vars "
                            "to the steps that read or write it (default none)")
        g.add_argument("--retries", type=int, default=3, help="retries of the training task (default 3)")
        g.add_argument("--checkpoint-pvc", default="", metavar="CLAIM",
                       help="PersistentVolumeClaim keeping training checkpoints so a retry resumes "
                            "(pipelines/checkpoints-pvc.yaml; default none: a retry starts over)")
        g.add_argument("--trainjob-nodes", type=int, default=0,
                       help="train on Kubeflow Trainer: a TrainJob over this many nodes, --gpus each (one "
                            "process per GPU), from the pipeline's train step (default 0: in the step's pod)")
        g.add_argument("--trainjob-procs-per-node", type=int, default=1,
                       help="processes per TrainJob node without GPUs (default 1)")
        g.add_argument("--trainjob-runtime", default="kfts-torch",
                       help="the ClusterTrainingRuntime of the TrainJob (default kfts-torch: `kfts deploy "
                            "render --kind ClusterTrainingRuntime`)")
        g.add_argument("--deployment-mode", default="", choices=["", *DEPLOYMENT_MODES],
                       help="the deploy step's KServe deployment mode (default: the cluster's)")
        g.add_argument("--kserve-version", default="", metavar="X.Y",
                       help="the cluster's KServe release, which names the mode (before 0.16: RawDeployment, "
                            "Serverless; default: Standard, Knative)")
        g.add_argument("--deploy-timeout-minutes", type=float, default=30.0,
                       help="how long the deploy step waits for the new model to serve before it puts the "
                            "previous one back (default 30)")

    comp = sub.add_parser("compile", help="write pipeline IR YAML (all committed variants, or one)")
    comp.add_argument("pipeline", nargs="?", choices=pipeline_names(),
                      help="one pipeline to compile with the placement options; none: every variant")
    comp.add_argument("--output-dir", default=".", help="where the YAML goes (default: the current folder; "
                                                        "`make compile` writes pipelines/compiled/)")
    comp.add_argument("--output", help="file for the one PIPELINE (default OUTPUT_DIR/PIPELINE.yaml)")
    placement(comp)
    comp.set_defaults(func=cmd_compile)

    def remote(p):
        p.add_argument("pipeline", nargs="?", choices=pipeline_names(), help="a pipeline, compiled with the "
                                                                           "placement options")
        p.add_argument("--package", help="or an IR YAML file to send (pipelines/compiled/...)")
        p.add_argument("--host", required=True, help="the KFP API endpoint (e.g. http://ml-pipeline.kubeflow:8888)")
        p.add_argument("--namespace", help="the Kubeflow profile namespace (multi-user installs)")
        p.add_argument("--token", help="a bearer token for the KFP API")
        p.add_argument("--experiment", default="kfts", help="experiment name (default kfts)")
        p.add_argument("--param", action="append", metavar="NAME=VALUE",
                       help="pipeline parameter (repeatable), e.g. train_uri=s3://bucket/train.csv")
        caching = p.add_mutually_exclusive_group()
        caching.add_argument("--cache", dest="caching", action="store_const", const="cache",
                             help="let KFP serve the steps from its cache, side-effect steps too (default: each "
                                  "step as compiled)")
        caching.add_argument("--no-cache", dest="caching", action="store_const", const="no-cache",
                             help="run the steps again even when KFP has them cached")
        p.add_argument("--service-account", metavar="NAME",
                       help="the Kubernetes service account the run's pods run as (default: the KFP API's, "
                            "pipeline-runner or the profile's default-editor)")
        placement(p)

    submit = sub.add_parser("submit", help="create a run on a Kubeflow Pipelines cluster")
    remote(submit)
    submit.add_argument("--run-name")
    submit.set_defaults(func=cmd_submit)

    schedule = sub.add_parser("schedule", help="create a recurring run (scheduled retraining)")
    remote(schedule)
    schedule.add_argument("--cron", required=True, help="cron expression, e.g. '0 3 * * 1' (Mondays 03:00)")
    schedule.add_argument("--job-name")
    schedule.set_defaults(func=cmd_schedule)

    tune = sub.add_parser("tune", help="render a Katib Experiment that tunes hyperparameters of the train step")
    tune.add_argument("algorithm", choices=list(ALGORITHMS))
    tune.add_argument("--train", required=True, help="training CSV URI the trials read (s3://, gs://, path)")
    tune.add_argument("--valid", required=True, help="validation CSV URI: the objective is measured on it")
    tune.add_argument("--search", action="append", required=True, metavar="NAME=SPEC",
                      help="a hyperparameter to search: MIN:MAX (a range), MIN:MAX:log (log scale, "
                           "floats), or A,B,C (a list). Repeatable")
    tune.add_argument("--set", action="append", metavar="NAME=VALUE", help="a fixed hyperparameter of every trial")
    tune.add_argument("--objective", help="metric to optimise (default: the algorithm's first, " + "; ".join(
        f"{a} {s.metrics[0]}" for a, s in ALGORITHMS.items()) + ")")
    tune.add_argument("--max-trials", type=int, default=12)
    tune.add_argument("--parallel-trials", type=int, default=3)
    tune.add_argument("--name", help="experiment name (default kfts-ALGORITHM)")
    tune.add_argument("--namespace")
    tune.add_argument("--image", help=f"trial image (default {component_image()}, from KFTS_IMAGE; its -cuda "
                                      "twin with --gpus)")
    tune.add_argument("--gpus", type=int, default=0, help="GPUs per trial")
    tune.add_argument("--model-root", help="URI each trial writes its model under, as ROOT/TRIAL-NAME "
                                           "(e.g. s3://bucket/tuning): the best trial's model is then there for "
                                           "`kfts pipeline run ... --init-model ROOT/TRIAL-NAME`")
    tune.add_argument("--cpu", default="2", help="CPU request and limit of each trial (default 2)")
    tune.add_argument("--memory", default="8Gi", help="memory request and limit of each trial (default 8Gi)")
    tune.add_argument("--trial-deadline", type=int, default=24 * 3600, metavar="SECONDS",
                      help="a trial running longer fails (its Job's activeDeadlineSeconds; default 86400)")
    tune.add_argument("--storage-secret", metavar="NAME", help="Secret whose keys (AWS_ACCESS_KEY_ID, "
                      "AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_REGION) are the trials' object-store identity")
    tune.add_argument("--service-account", metavar="NAME", help="the trial pods' service account")
    tune.add_argument("--seed", type=int, default=0)
    tune.add_argument("--output", help="write the YAML here instead of stdout")
    tune.set_defaults(func=cmd_tune)
