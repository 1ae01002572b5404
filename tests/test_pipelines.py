"""Compiled pipelines: the committed IR is current, and GPU placement is there exactly when asked for."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT

from kfts.pipeline_cli import compile_pipeline, variants
from kfts.pipelines.common import Cluster


def _documents(path):
    docs = list(yaml.safe_load_all(path.read_text()))
    return docs[0], (docs[1] if len(docs) > 1 else {})


def _executor(spec, task):
    return spec["deploymentSpec"]["executors"][f"exec-{task}"]["container"]


def test_committed_ir_is_what_make_compile_writes(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "KFTS_IMAGE"}  # the committed files use the default
    subprocess.run([sys.executable, "-m", "kfts", "pipeline", "compile", "--output-dir", str(tmp_path)],
                   check=True, env=env, capture_output=True, timeout=600)
    stale = [name for name in variants()
             if (tmp_path / name).read_text() != (ROOT / "pipelines/compiled" / name).read_text()]
    assert not stale, f"pipelines/compiled is stale: run `make compile` ({', '.join(stale)})"


@pytest.mark.parametrize("name", ["inception-time", "lstm-ad"])
def test_gpu_variant_puts_train_and_predict_on_the_gpu_pool(name, tmp_path):
    cluster = Cluster(gpus=2, node_selector={"pool": "gpu-a100"},
                      tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoExecute"}])
    spec, platform = _documents(compile_pipeline(name, tmp_path / "p.yaml", cluster))
    for task in ("train", "batch-predict"):
        assert _executor(spec, task)["image"] == "ghcr.io/kfts/kfts:0.1.0-cuda"  # torch's CUDA build
        resources = _executor(spec, task)["resources"]
        assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
        assert resources["accelerator"]["resourceCount"] == "2"
        k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][f"exec-{task}"]
        assert k8s["nodeSelector"]["labels"] == {"pool": "gpu-a100"}
        assert k8s["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "gpu",
                                       "effect": "NoExecute"}]
    train_k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    assert train_k8s["pvcMount"][0]["mountPath"] == "/kfts-checkpoints"
    assert spec["root"]["inputDefinitions"]["parameters"]["checkpoint_root"]["defaultValue"] == "/kfts-checkpoints"
    # validation stays on ordinary nodes, in the CPU image
    assert "accelerator" not in _executor(spec, "validate-csv")["resources"]
    assert _executor(spec, "validate-csv")["image"] == "ghcr.io/kfts/kfts:0.1.0"
    # the model is served on the GPU pool too, unless deploy_gpu=false is passed
    assert spec["root"]["inputDefinitions"]["parameters"]["deploy_gpu"]["defaultValue"] is True


@pytest.mark.parametrize("name", ["inception-time", "lstm-ad", "retrain-lstm-ad"])
def test_cpu_variant_has_no_gpu_request_node_selector_or_toleration(name, tmp_path):
    spec, platform = _documents(compile_pipeline(name, tmp_path / "p.yaml", Cluster(gpus=0)))
    assert spec["root"]["inputDefinitions"]["parameters"]["deploy_gpu"]["defaultValue"] is False
    for executor in spec["deploymentSpec"]["executors"].values():
        assert executor["container"]["image"] == "ghcr.io/kfts/kfts:0.1.0"
        assert "accelerator" not in executor["container"].get("resources", {})
        assert executor["container"]["resources"]["resourceCpuRequest"] == "2"
    for executor in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values():
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
    from kfts.pipelines import inception_time, lstm_ad
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


@pytest.mark.parametrize("name, fan_out", [("inception-time", False), ("inception-time", True),
                                           ("lstm-ad", False), ("retrain-inception-time", False)])
def test_training_waits_for_every_input_checked_alone_and_together(name, fan_out, tmp_path):
    spec, _ = _documents(compile_pipeline(name, tmp_path / "p.yaml", Cluster(), fan_out=fan_out))
    tasks = spec["root"]["dag"]["tasks"]
    check = tasks["check-inputs"]
    validations = {t for t in tasks if t.startswith("validate-csv")}
    assert len(validations) == 4 and set(check["dependentTasks"]) == validations
    trains = [task for dag in [spec["root"]["dag"], *(c["dag"] for c in spec["components"].values() if "dag" in c)]
              for task in dag["tasks"].values() if task["componentRef"]["name"] == "comp-train"]
    assert trains
    if fan_out:  # the members' loop as a whole waits
        assert "check-inputs" in tasks["for-loop-1"]["dependentTasks"]
    else:
        assert all("check-inputs" in task["dependentTasks"] for task in trains)
    # what the KFP UI shows for each task
    names = {task["taskInfo"]["name"] for task in tasks.values()}
    assert {"validate train", "check inputs together"} <= names


def test_the_task_log_reports_each_task_by_its_display_name_with_its_error_and_container():
    from kfts.pipeline_cli import TaskLog
    lines = []
    tasks = TaskLog(lines.append, {"validate-csv-3": "validate test", "train": "train member"})
    for line in ["21:00:00.250 - INFO - Executing task \x1b[96m'validate-csv-3'\x1b[0m",
                 "    in container 1a2b3c of reg/kfts:1", "    ok: something", "    error: t.csv: row 1: bad",
                 "21:00:01.750 - ERROR - Task \x1b[96m'validate-csv-3'\x1b[0m finished with status "
                 "\x1b[91mFAILURE\x1b[0m",
                 "23:59:59.000 - INFO - Executing task 'train-2'",
                 "00:00:02.000 - INFO - Task 'train-2' finished with status SUCCESS"]:
        tasks.feed(line)
    assert lines == [f"{'validate test':<28} FAILURE     1.5 s  in container 1a2b3c of reg/kfts:1",
                     "  error: t.csv: row 1: bad", f"{'train member-2':<28} SUCCESS     3.0 s"]
    assert tasks.failed == ["validate-csv-3"] and tasks.name("validate-csv-3") == "validate test"
    # a task that crashed (a bug, no `error:` line): its exception's last line
    for line in ["21:00:00.000 - INFO - Executing task 'train'", "    Traceback (most recent call last):",
                 "    RuntimeError: CUDA out of memory",
                 "21:00:09.000 - ERROR - Task 'train' finished with status FAILURE"]:
        tasks.feed(line)
    assert lines[-1] == "  RuntimeError: CUDA out of memory" and lines[-2].startswith("train member ")


@pytest.mark.parametrize("name", ["inception-time", "lstm-ad", "retrain-lstm-ad"])
def test_trainjob_variant_trains_on_kubeflow_trainer_after_the_input_check(name, tmp_path):
    spec, platform = _documents(compile_pipeline(name, tmp_path / "p.yaml", Cluster(gpus=4, trainjob_nodes=2)))
    tasks = spec["root"]["dag"]["tasks"]
    assert "train" not in tasks and "exec-train" not in spec["deploymentSpec"]["executors"]
    [launcher] = [t for t in tasks.values() if t["componentRef"]["name"] == "comp-train-on-trainjob"]
    assert "check-inputs" in launcher["dependentTasks"]
    constants = {k: v["runtimeValue"]["constant"] for k, v in launcher["inputs"]["parameters"].items()
                 if "runtimeValue" in v}
    assert (constants["nodes"], constants["gpus_per_node"], constants["procs_per_node"]) == (2, 4, 4)
    # each torchrun process gets what a task gets; the TrainJob keeps its checkpoints on the claim
    assert (constants["cpu"], constants["memory"], constants["checkpoint_pvc"]) == ("2", "8Gi", "kfts-checkpoints")
    assert constants["runtime"] == "kfts-torch"
    # the launcher is a small CPU pod: the GPUs are the TrainJob's
    assert "accelerator" not in _executor(spec, "train-on-trainjob")["resources"]


def test_trainjob_and_fan_out_do_not_mix():
    result = subprocess.run([sys.executable, "-m", "kfts", "pipeline", "compile", "inception-time", "--fan-out",
                             "--trainjob-nodes", "2", "--output", "/dev/null"], capture_output=True, text=True)
    assert result.returncode == 2 and "choose one" in result.stderr


def test_the_deploy_step_gets_the_clusters_kserve_settings(tmp_path):
    cluster = Cluster(kserve_version="0.15", deployment_mode="Standard", deploy_timeout_minutes=45)
    spec, _ = _documents(compile_pipeline("retrain-inception-time", tmp_path / "p.yaml", cluster))
    [deploy] = [task for component in spec["components"].values() for task in
                component.get("dag", {}).get("tasks", {}).values() if task["componentRef"]["name"] == "comp-deploy"]
    constants = {k: v["runtimeValue"]["constant"] for k, v in deploy["inputs"]["parameters"].items()
                 if "runtimeValue" in v}
    assert (constants["kserve_version"], constants["deployment_mode"], constants["timeout_minutes"]) == (
        "0.15", "Standard", 45.0)


def test_a_kserve_version_that_is_not_one_is_refused_at_compile_time():
    result = subprocess.run([sys.executable, "-m", "kfts", "pipeline", "compile", "lstm-ad", "--kserve-version",
                             "newest", "--output", "/dev/null"], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith("error: --kserve-version 'newest'")
