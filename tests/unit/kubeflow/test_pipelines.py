"""Compiled pipelines: the committed IR is current and valid, and placement (GPUs, requests and limits,
images, the object store's Secret, the security context, the checkpoint volume) is there exactly as asked."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml

from kfts.kubeflow.compile import compile_pipeline, variants
from kfts.kubeflow.pipelines.common import Cluster

from helpers import ROOT, run_cli


def _documents(path):
    docs = list(yaml.safe_load_all(path.read_text()))
    return docs[0], (docs[1] if len(docs) > 1 else {})


def _executor(spec, task):
    return spec["deploymentSpec"]["executors"][f"exec-{task}"]["container"]


def _k8s(platform) -> dict:
    """The kfp-kubernetes settings of every executor that has some."""
    return platform.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {})


def _dags(spec):
    yield "root", spec["root"]["dag"]
    yield from ((name, c["dag"]) for name, c in spec["components"].items() if "dag" in c)


def _resolve(spec, dag: str, parameter: str, arguments: dict):
    """The value of input `parameter` of the DAG component `dag` in a run given `arguments`: up through the
    tasks that instantiate it to the pipeline's own parameter (or its default)."""
    if dag == "root":
        return arguments.get(parameter, spec["root"]["inputDefinitions"]["parameters"][parameter]["defaultValue"])
    [(parent, task)] = [
        (name, t) for name, d in _dags(spec) for t in d["tasks"].values() if t["componentRef"]["name"] == dag
    ]
    return _resolve(spec, parent, task["inputs"]["parameters"][parameter]["componentInputParameter"], arguments)


def _container_tasks(spec) -> list[str]:
    """Every task that runs a container (not a DAG of its own)."""
    return [
        name
        for _, dag in _dags(spec)
        for name, task in dag["tasks"].items()
        if "executorLabel" in spec["components"][task["componentRef"]["name"]]
    ]


def _run_image(spec, task_name: str, arguments: dict | None = None) -> str:
    """The image KFP starts task `task_name` in, in a run given `arguments`. As kfp's backend 2.17 does
    (backend/src/v2/driver/driver.go initPodSpecPatch -> resolve.go resolvePodSpecInputRuntimeParameter, and
    util.go's pattern): an executor image holding `$.inputs.parameters['NAME']` is the value of the task's
    input NAME; any other image is taken as it is."""
    [(dag, task)] = [(name, d["tasks"][task_name]) for name, d in _dags(spec) if task_name in d["tasks"]]
    executor = spec["components"][task["componentRef"]["name"]]["executorLabel"]
    image = spec["deploymentSpec"]["executors"][executor]["container"]["image"]
    channel = re.search(r"\$.inputs.parameters\['(.+?)'\]", image)
    if channel is None:
        return image
    source = task["inputs"]["parameters"][channel.group(1)]
    return _resolve(spec, dag, source["componentInputParameter"], arguments or {})


def test_committed_ir_is_what_make_compile_writes(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "KFTS_IMAGE"}  # the committed files use the default
    subprocess.run(
        [sys.executable, "-m", "kfts", "pipeline", "compile", "--output-dir", str(tmp_path)],
        check=True,
        env=env,
        capture_output=True,
        timeout=600,
    )
    stale = [
        name for name in variants() if (tmp_path / name).read_text() != (ROOT / "pipelines/compiled" / name).read_text()
    ]
    assert not stale, f"pipelines/compiled is stale: run `make compile` ({', '.join(stale)})"


@pytest.mark.parametrize("name", ["inception-time", "lstm-ad"])
def test_gpu_variant_puts_train_and_predict_on_the_gpu_pool(name, tmp_path):
    cluster = Cluster(
        gpus=2,
        node_selector={"pool": "gpu-a100"},
        tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoExecute"}],
    )
    spec, platform = _documents(compile_pipeline(name, tmp_path / "p.yaml", cluster))
    for task in ("train", "batch-predict"):
        assert _run_image(spec, task) == "ghcr.io/kfts/kfts:0.1.0-cuda"  # torch's CUDA build
        resources = _executor(spec, task)["resources"]
        assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
        assert resources["accelerator"]["resourceCount"] == "2"
        k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][f"exec-{task}"]
        assert k8s["nodeSelector"]["labels"] == {"pool": "gpu-a100"}
        assert k8s["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoExecute"}]
    # validation stays on ordinary nodes, in the CPU image
    assert "accelerator" not in _executor(spec, "validate-csv")["resources"]
    assert _run_image(spec, "validate-csv") == "ghcr.io/kfts/kfts:0.1.0"
    # the model is served on the GPU pool too, unless deploy_gpu=false is passed
    assert spec["root"]["inputDefinitions"]["parameters"]["deploy_gpu"]["defaultValue"] is True


@pytest.mark.parametrize("name", ["inception-time", "lstm-ad", "retrain-lstm-ad"])
def test_cpu_variant_has_no_gpu_request_node_selector_or_toleration(name, tmp_path):
    spec, platform = _documents(compile_pipeline(name, tmp_path / "p.yaml", Cluster(gpus=0)))
    assert spec["root"]["inputDefinitions"]["parameters"]["deploy_gpu"]["defaultValue"] is False
    assert {_run_image(spec, task) for task in _container_tasks(spec)} == {"ghcr.io/kfts/kfts:0.1.0"}
    for executor in spec["deploymentSpec"]["executors"].values():
        assert "accelerator" not in executor["container"].get("resources", {})
    for executor in _k8s(platform).values():
        assert "nodeSelector" not in executor and "tolerations" not in executor


def test_train_is_retried_and_resumes_from_its_checkpoint_folder(tmp_path):
    spec, _ = _documents(compile_pipeline("inception-time", tmp_path / "p.yaml", Cluster(retries=4)))
    train = spec["root"]["dag"]["tasks"]["train"]
    assert train["retryPolicy"]["maxRetryCount"] == 4
    # the same folder on every retry: the run id (and member), not the attempt
    inputs = train["inputs"]["parameters"]
    assert inputs["run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
    assert inputs["checkpoint_root"]["componentInputParameter"] == "checkpoint_root"


def test_pipeline_parameters_carry_every_hyperparameter_with_its_default():
    from dataclasses import fields

    from kfts.algorithms.inception_time.estimator import Params as InceptionParams
    from kfts.algorithms.lstm_ad.estimator import Params as LstmParams
    from kfts.kubeflow.pipelines import inception_time, lstm_ad

    for build, params in ((inception_time.build, InceptionParams), (lstm_ad.build, LstmParams)):
        inputs = build().component_spec.inputs
        for f in fields(params):
            assert inputs[f.name].default == f.default, f.name


def test_fan_out_trains_members_in_a_parallel_for_and_combines_them(tmp_path):
    spec, _ = _documents(compile_pipeline("inception-time", tmp_path / "p.yaml", Cluster(gpus=1), fan_out=True))
    loop = spec["root"]["dag"]["tasks"]["for-loop-1"]
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--member-indices-Output"
    assert "combine-members" in spec["root"]["dag"]["tasks"]
    members = spec["components"]["comp-for-loop-1"]["dag"]["tasks"]["train"]
    assert members["inputs"]["parameters"]["hyperparameters"]["runtimeValue"]["constant"]["models"] == 1


@pytest.mark.parametrize(
    "name, fan_out",
    [("inception-time", False), ("inception-time", True), ("lstm-ad", False), ("retrain-inception-time", False)],
)
def test_training_waits_for_every_input_checked_alone_and_together(name, fan_out, tmp_path):
    spec, _ = _documents(compile_pipeline(name, tmp_path / "p.yaml", Cluster(), fan_out=fan_out))
    tasks = spec["root"]["dag"]["tasks"]
    check = tasks["check-inputs"]
    validations = {t for t in tasks if t.startswith("validate-csv")}
    assert len(validations) == 4 and set(check["dependentTasks"]) == validations
    trains = [
        task
        for dag in [spec["root"]["dag"], *(c["dag"] for c in spec["components"].values() if "dag" in c)]
        for task in dag["tasks"].values()
        if task["componentRef"]["name"] == "comp-train"
    ]
    assert trains
    if fan_out:  # the members' loop as a whole waits
        assert "check-inputs" in tasks["for-loop-1"]["dependentTasks"]
    else:
        assert all("check-inputs" in task["dependentTasks"] for task in trains)
    # what the KFP UI shows for each task
    names = {task["taskInfo"]["name"] for task in tasks.values()}
    assert {"validate train", "check inputs together"} <= names


def test_the_task_log_reports_each_task_by_its_display_name_with_its_error_and_container():
    from kfts.kubeflow.local_run import TaskLog

    lines = []
    tasks = TaskLog(lines.append, {"validate-csv-3": "validate test", "train": "train member"})
    for line in [
        "21:00:00.250 - INFO - Executing task \x1b[96m'validate-csv-3'\x1b[0m",
        "    in container 1a2b3c of reg/kfts:1",
        "    ok: something",
        "    error: t.csv: row 1: bad",
        "21:00:01.750 - ERROR - Task \x1b[96m'validate-csv-3'\x1b[0m finished with status \x1b[91mFAILURE\x1b[0m",
        "23:59:59.000 - INFO - Executing task 'train-2'",
        "00:00:02.000 - INFO - Task 'train-2' finished with status SUCCESS",
    ]:
        tasks.feed(line)
    assert lines == [
        f"{'validate test':<28} FAILURE     1.5 s  in container 1a2b3c of reg/kfts:1",
        "  error: t.csv: row 1: bad",
        f"{'train member-2':<28} SUCCESS     3.0 s",
    ]
    assert tasks.failed == ["validate-csv-3"] and tasks.name("validate-csv-3") == "validate test"
    # a task that crashed (a bug, no `error:` line): its exception's last line
    for line in [
        "21:00:00.000 - INFO - Executing task 'train'",
        "    Traceback (most recent call last):",
        "    RuntimeError: CUDA out of memory",
        "21:00:09.000 - ERROR - Task 'train' finished with status FAILURE",
    ]:
        tasks.feed(line)
    assert lines[-1] == "  RuntimeError: CUDA out of memory" and lines[-2].startswith("train member ")


def test_a_task_container_that_failed_at_once_reports_its_exit_code_and_is_removed_after(capsys):
    """--containers: kfp.local's own run_docker_container (kfp 2.17.0) starts a container with auto_remove, and
    when it has left before the exit code is read, takes the NotFound for a success (kubeflow/pipelines#13332)."""
    from types import SimpleNamespace

    import docker

    from kfts.kubeflow.kfp_local_patch import run_container

    started = []

    class Container:
        short_id = "c0ffee"

        def __init__(self, auto_remove):
            self.auto_remove, self.removed = auto_remove, False

        def logs(self, stream, follow=False):
            return iter([b"error: t.csv: row 1: bad\n"])

        def wait(self):
            if self.auto_remove or self.removed:
                raise docker.errors.NotFound("no such container")
            return {"StatusCode": 2}

        def remove(self, force=False):
            self.removed = True

    def run(auto_remove=False, **settings):
        started.append(Container(auto_remove))
        return started[-1]

    client = SimpleNamespace(
        containers=SimpleNamespace(run=run),
        images=SimpleNamespace(list=lambda: [SimpleNamespace(tags=["reg/kfts:1"], attrs={"RepoDigests": []})]),
    )
    assert run_container(client, "reg/kfts:1", ["kfts", "validate"], {}) == 2
    assert started[0].removed
    assert capsys.readouterr().out.splitlines() == ["in container c0ffee of reg/kfts:1", "error: t.csv: row 1: bad"]


@pytest.mark.parametrize("name", ["inception-time", "lstm-ad", "retrain-lstm-ad"])
def test_trainjob_variant_trains_on_kubeflow_trainer_after_the_input_check(name, tmp_path):
    spec, platform = _documents(
        compile_pipeline(name, tmp_path / "p.yaml", Cluster(gpus=4, trainjob_nodes=2, checkpoint_pvc="ckpt"))
    )
    tasks = spec["root"]["dag"]["tasks"]
    assert "train" not in tasks and "exec-train" not in spec["deploymentSpec"]["executors"]
    [launcher] = [t for t in tasks.values() if t["componentRef"]["name"] == "comp-train-on-trainjob"]
    assert "check-inputs" in launcher["dependentTasks"]
    constants = {
        k: v["runtimeValue"]["constant"] for k, v in launcher["inputs"]["parameters"].items() if "runtimeValue" in v
    }
    assert (constants["nodes"], constants["gpus_per_node"], constants["procs_per_node"]) == (2, 4, 4)
    # each torchrun process gets what the train step gets; the TrainJob keeps its checkpoints on the claim
    assert (constants["cpu"], constants["memory"], constants["checkpoint_pvc"]) == ("2", "8Gi", "ckpt")
    assert constants["runtime"] == "kfts-torch"
    # the launcher is a small CPU pod: the GPUs are the TrainJob's
    assert "accelerator" not in _executor(spec, "train-on-trainjob")["resources"]


def test_trainjob_and_fan_out_do_not_mix():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kfts",
            "pipeline",
            "compile",
            "inception-time",
            "--fan-out",
            "--trainjob-nodes",
            "2",
            "--output",
            "/dev/null",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "choose one" in result.stderr


def test_committed_ir_parses_strictly_as_kfp_and_kfp_kubernetes_messages():
    """Every committed file is a PipelineSpec, and every executor's Kubernetes settings a
    KubernetesExecutorConfig (kfp-kubernetes 2.17's proto), no field unknown to either."""
    from google.protobuf import json_format
    from kfp.kubernetes import kubernetes_executor_config_pb2
    from kfp.pipeline_spec import pipeline_spec_pb2

    for name in variants():
        spec, platform = _documents(ROOT / "pipelines/compiled" / name)
        json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
        for executor in _k8s(platform).values():
            json_format.ParseDict(executor, kubernetes_executor_config_pb2.KubernetesExecutorConfig())


def _tasks_of(spec, component: str) -> list[str]:
    return [
        name
        for _, dag in _dags(spec)
        for name, task in dag["tasks"].items()
        if task["componentRef"]["name"] == f"comp-{component}"
    ]


@pytest.mark.parametrize(
    "name, fan_out", [("inception-time", False), ("inception-time", True), ("retrain-lstm-ad", False)]
)
def test_the_checkpoint_volume_is_mounted_only_when_a_claim_is_named(name, fan_out, tmp_path):
    spec, platform = _documents(compile_pipeline(name, tmp_path / "p.yaml", Cluster(gpus=1), fan_out=fan_out))
    assert not any("pvcMount" in executor for executor in _k8s(platform).values())
    assert spec["root"]["inputDefinitions"]["parameters"]["checkpoint_root"]["defaultValue"] == ""

    spec, platform = _documents(
        compile_pipeline(name, tmp_path / "p.yaml", Cluster(gpus=1, checkpoint_pvc="ckpt"), fan_out=fan_out)
    )
    mounted = {label for label, executor in _k8s(platform).items() if "pvcMount" in executor}
    assert mounted == {"exec-train"}  # the training tasks only (members too, when they fan out)
    [mount] = _k8s(platform)["exec-train"]["pvcMount"]
    assert (mount["pvcNameParameter"]["runtimeValue"]["constant"], mount["mountPath"]) == ("ckpt", "/kfts-checkpoints")
    assert spec["root"]["inputDefinitions"]["parameters"]["checkpoint_root"]["defaultValue"] == "/kfts-checkpoints"


def test_gpu_tasks_by_default_tolerate_the_gpu_taint_and_select_no_node_label(tmp_path):
    spec, platform = _documents(compile_pipeline("lstm-ad", tmp_path / "p.yaml", Cluster(gpus=1)))
    for task in ("train", "batch-predict"):
        assert _executor(spec, task)["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
        k8s = _k8s(platform)[f"exec-{task}"]
        assert k8s["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        assert "nodeSelector" not in k8s
    # the deploy step is handed no node selector for the predictor either
    deploy = [t for _, d in _dags(spec) for t in d["tasks"].values() if t["componentRef"]["name"] == "comp-deploy"]
    assert deploy[0]["inputs"]["parameters"]["node_selector"]["runtimeValue"]["constant"] == {}


def _compile_cli(tmp_path, *flags) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "kfts",
            "pipeline",
            "compile",
            "retrain-lstm-ad",
            "--output",
            str(tmp_path / "p.yaml"),
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_task_has_requests_and_limits_set_per_step(tmp_path):
    result = _compile_cli(
        tmp_path,
        "--resources",
        "train=cpu:8,cpu_limit:8,memory:30Gi,memory_limit:32Gi",
        "--resources",
        "all=cpu:250m,cpu_limit:1",
        "--resources",
        "evaluate=cpu_limit:2",
    )
    assert result.returncode == 0, result.stderr
    spec, _ = _documents(tmp_path / "p.yaml")
    keys = ("resourceCpuRequest", "resourceCpuLimit", "resourceMemoryRequest", "resourceMemoryLimit")
    figures = {
        label: tuple(e["container"]["resources"].get(k) for k in keys)
        for label, e in spec["deploymentSpec"]["executors"].items()
    }
    # `all`, and over it the step's own; what neither names keeps its default
    assert figures.pop("exec-train") == ("8", "8", "30Gi", "32Gi")
    assert figures.pop("exec-choose-champion") == ("250m", "1", "1Gi", "2Gi")
    assert figures.pop("exec-validate-csv") == ("250m", "1", "8Gi", "8Gi")
    assert figures.pop("exec-evaluate") == ("250m", "2", "8Gi", "8Gi")
    assert all(None not in f for f in figures.values()), figures


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--resources", "train=cpu:4,cpu_limit:2"], "--resources: step train: cpu 4 is more than cpu_limit 2"),
        (["--resources", "all=cpu_limit:1"], "--resources: step validate-csv: cpu 2 is more than cpu_limit 1"),
        (["--resources", "evaluate=memory:1.5Gi"], "memory '1.5Gi' is not a Kubernetes quantity"),
        (["--resources", "trian=cpu:1"], "no such step"),
        (["--resources", "train=gpu:1"], "expected STEP=NAME:QUANTITY"),
        (["--storage-secret", "S3_Creds"], "--storage-secret 'S3_Creds' is not a Kubernetes object name"),
        (["--trainjob-nodes", "1", "--trainjob-runtime", "Torch"], "--trainjob-runtime 'Torch' is not"),
        (["--deploy-timeout-minutes", "nan"], "--deploy-timeout-minutes nan: a number of minutes above 0"),
        (["--deploy-timeout-minutes", "inf"], "--deploy-timeout-minutes inf: a number of minutes above 0"),
        (["--deploy-timeout-minutes", "0"], "--deploy-timeout-minutes 0: a number of minutes above 0"),
    ],
)
def test_bad_placement_flags_are_refused_in_one_line(flags, message, tmp_path):
    result = _compile_cli(tmp_path, *flags)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1 and not (tmp_path / "p.yaml").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["lstm-ad", "--output", "{tmp}/p.json"], "--output '{tmp}/p.json': give the path of a .yaml file"),
        (["lstm-ad", "--output", "{tmp}/folder.yaml"], "--output '{tmp}/folder.yaml': give the path of a .yaml"),
        (["lstm-ad", "--output", ""], "--output is empty (''): give a value"),
        (["--output", "{tmp}/p.yaml"], "--output is the file of one PIPELINE"),
    ],
)
def test_an_output_kfp_cannot_write_is_refused_in_one_line(args, message, tmp_path):
    (tmp_path / "folder.yaml").mkdir()
    result = run_cli("pipeline", "compile", *(a.format(tmp=tmp_path) for a in args), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: {message.format(tmp=tmp_path)}") and result.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.yaml"]


@pytest.mark.parametrize(
    "cron, message",
    [
        ("99 * * * *", "minute '99' is not *, ? or 0-59"),
        ("0 3 * * MON-XYZ", "day of week 'MON-XYZ' is not *, ? or 0-6"),
        ("0 0 3 * * 7", "day of week '7' is not"),
        ("0 */0 * * *", "hour '*/0' is not"),
    ],
)
def test_a_cron_kfp_would_refuse_is_refused_before_the_host_is_asked(cron, message):
    # port 9 (discard) refuses connections: reaching it would be a different error
    result = run_cli("pipeline", "schedule", "lstm-ad", "--cron", cron, "--host", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert result.stderr == f"error: --cron {cron!r}: {message}" + result.stderr.partition(message)[2]
    assert result.stderr.count("\n") == 1, result.stderr


@pytest.mark.parametrize("command", [["submit"], ["schedule", "--cron", "0 3 * * 1"]])
def test_a_malformed_param_is_refused_before_the_host_is_asked(command):
    verb, *flags = command
    result = run_cli("pipeline", verb, "lstm-ad", *flags, "--param", "epochs", "--host", "http://127.0.0.1:9")
    assert (result.returncode, result.stderr) == (2, "error: --param 'epochs': expected KEY=VALUE\n")


@pytest.mark.parametrize("name", ["inception-time", "retrain-lstm-ad"])
def test_images_are_run_parameters_with_the_compiled_image_as_default(name, tmp_path):
    cluster = Cluster(gpus=1, image="reg.example/kfts:2")
    spec, _ = _documents(compile_pipeline(name, tmp_path / "p.yaml", cluster))
    assert _run_image(spec, "validate-csv") == "reg.example/kfts:2"
    assert _run_image(spec, "train") == "reg.example/kfts:2-cuda"
    run = {"image": "reg.example/kfts:3", "gpu_image": "reg.example/kfts:3-cuda"}
    assert _run_image(spec, "validate-csv", run) == "reg.example/kfts:3"
    assert _run_image(spec, "train", run) == "reg.example/kfts:3-cuda"
    assert {_run_image(spec, t, run) for t in _tasks_of(spec, "evaluate")} == {"reg.example/kfts:3"}
    # the deploy step derives the predictor's image from the run's image
    [deploy] = _tasks_of(spec, "deploy")
    [(dag, task)] = [(n, d["tasks"][deploy]) for n, d in _dags(spec) if deploy in d["tasks"]]
    source = task["inputs"]["parameters"]["image_base"]["componentInputParameter"]
    assert _resolve(spec, dag, source, run) == "reg.example/kfts:3"


def test_the_trainjob_runs_the_runs_gpu_image(tmp_path):
    spec, _ = _documents(compile_pipeline("lstm-ad", tmp_path / "p.yaml", Cluster(gpus=2, trainjob_nodes=2)))
    launcher = spec["root"]["dag"]["tasks"]["train-on-trainjob"]
    source = launcher["inputs"]["parameters"]["image"]["componentInputParameter"]
    assert _resolve(spec, "root", source, {"gpu_image": "reg.example/kfts:3-cuda"}) == "reg.example/kfts:3-cuda"
    assert _run_image(spec, "train-on-trainjob") == "ghcr.io/kfts/kfts:0.1.0"  # the launcher itself: CPU


# the components that read or write the object store themselves (pyarrow): the others' inputs and outputs
# move through KFP's launcher, with the pipeline root's own credentials
STORAGE_COMPONENTS = {"validate-csv", "fetch-model", "promote-model", "train-on-trainjob", "deploy"}


@pytest.mark.parametrize(
    "name, settings",
    [
        ("retrain-lstm-ad", {}),
        ("retrain-inception-time", {"gpus": 1}),
        ("inception-time", {"gpus": 1, "trainjob_nodes": 2}),
    ],
)
def test_the_storage_secret_reaches_exactly_the_steps_that_touch_the_store(name, settings, tmp_path):
    spec, platform = _documents(compile_pipeline(name, tmp_path / "p.yaml", Cluster(**settings)))
    assert not any("secretAsEnv" in executor for executor in _k8s(platform).values())  # none unless asked

    spec, platform = _documents(
        compile_pipeline(name, tmp_path / "p.yaml", Cluster(storage_secret="kfts-s3", **settings))
    )
    # the component of each executor; a component's copies for different tasks are numbered (validate-csv-2)
    component_of = {
        c["executorLabel"]: re.sub(r"-[0-9]+$", "", name.removeprefix("comp-"))
        for name, c in spec["components"].items()
        if "executorLabel" in c
    }
    with_secret = {component_of[label] for label, e in _k8s(platform).items() if "secretAsEnv" in e}
    assert with_secret == STORAGE_COMPONENTS & set(component_of.values())
    for label, executor in _k8s(platform).items():
        if component_of[label] not in STORAGE_COMPONENTS:
            continue
        env = {
            m["envVar"]: (
                m["secretKey"],
                entry["secretNameParameter"]["runtimeValue"]["constant"],
                entry.get("optional", False),
            )
            for entry in executor["secretAsEnv"]
            for m in entry["keyToEnv"]
        }
        assert env == {
            "AWS_ACCESS_KEY_ID": ("AWS_ACCESS_KEY_ID", "kfts-s3", False),
            "AWS_SECRET_ACCESS_KEY": ("AWS_SECRET_ACCESS_KEY", "kfts-s3", False),
            "AWS_ENDPOINT_URL": ("AWS_ENDPOINT_URL", "kfts-s3", True),
            "AWS_REGION": ("AWS_REGION", "kfts-s3", True),
        }


def test_storage_secret_and_placement_flags_reach_the_compiled_ir(tmp_path):
    result = _compile_cli(
        tmp_path, "--storage-secret", "kfts-s3", "--image", "reg.example/kfts:2", "--checkpoint-pvc", "ckpt"
    )
    assert result.returncode == 0, result.stderr
    spec, platform = _documents(tmp_path / "p.yaml")
    assert _k8s(platform)["exec-promote-model"]["secretAsEnv"][0]["secretName"] == "kfts-s3"
    assert _run_image(spec, "choose-champion") == "reg.example/kfts:2"
    assert _k8s(platform)["exec-train"]["pvcMount"][0]["constant"] == "ckpt"


@pytest.mark.parametrize(
    "name, fan_out, settings",
    [
        ("inception-time", True, {"gpus": 1, "checkpoint_pvc": "ckpt", "storage_secret": "s3"}),
        ("retrain-inception-time", False, {}),
        ("lstm-ad", False, {"trainjob_nodes": 2}),
    ],
)
def test_every_task_runs_as_the_images_non_root_user(name, fan_out, settings, tmp_path):
    """Pod Security "restricted" for what a task sets: runAsNonRoot with a non-zero user (the images' USER
    1000:1000). The rest of the profile comes from KFP's backend (2.16 and later): the argo compiler's
    applySecurityContextToExecutorTemplate sets the pod's seccompProfile RuntimeDefault, the main container's
    allowPrivilegeEscalation false and drops ALL capabilities (backend/src/v2/compiler/argocompiler/
    security_context.go), and the driver copies this security context onto the container (backend/src/v2/
    driver/k8s.go); the only volumes are emptyDirs, Secrets and the claim, all allowed."""
    spec, platform = _documents(compile_pipeline(name, tmp_path / "p.yaml", Cluster(**settings), fan_out=fan_out))
    executors = _k8s(platform)
    assert set(executors) == set(spec["deploymentSpec"]["executors"])  # every task
    for executor in executors.values():
        context = executor["securityContext"]
        assert context["runAsNonRoot"] is True
        assert int(context["runAsUser"]) == 1000 and int(context["runAsGroup"]) == 1000
        assert set(executor) <= {"securityContext", "secretAsEnv", "pvcMount", "tolerations", "nodeSelector"}


def test_the_deploy_step_gets_the_clusters_kserve_settings(tmp_path):
    cluster = Cluster(kserve_version="0.15", deployment_mode="Standard", deploy_timeout_minutes=45)
    spec, _ = _documents(compile_pipeline("retrain-inception-time", tmp_path / "p.yaml", cluster))
    [deploy] = [
        task
        for component in spec["components"].values()
        for task in component.get("dag", {}).get("tasks", {}).values()
        if task["componentRef"]["name"] == "comp-deploy"
    ]
    constants = {
        k: v["runtimeValue"]["constant"] for k, v in deploy["inputs"]["parameters"].items() if "runtimeValue" in v
    }
    assert (constants["kserve_version"], constants["deployment_mode"], constants["timeout_minutes"]) == (
        "0.15",
        "Standard",
        45.0,
    )


def test_a_kserve_version_that_is_not_one_is_refused_at_compile_time():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kfts",
            "pipeline",
            "compile",
            "lstm-ad",
            "--kserve-version",
            "newest",
            "--output",
            "/dev/null",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and result.stderr.startswith("error: --kserve-version 'newest'")
