"""`kfts pipeline tune`: a Katib Experiment whose trials run `kfts train` and read its metric lines.

Katib cannot run here, so what it does to a trial between the Experiment and the trial's shell is reproduced
from its source, kubeflow/katib v0.19.0 (commit 578e60f1ce83dbb5e7151026a3bdc4de233947fc):
- katib_trial: pkg/controller.v1beta1/experiment/manifest/generator.go, applyParameters: the trial template
  as JSON text (util.ConvertUnstructuredToString), each `${trialParameters.NAME}` replaced by its value
  (strings.Replace), parsed back (ConvertStringToUnstructured).
- katib_wrap: pkg/webhook/v1beta1/pod/utils.go, wrapWorkerContainer, for the StdOut collector without early
  stopping: the container's command and args joined, ` 1>/var/log/katib/metrics.log 2>&1` appended (the
  path is common.DefaultFilePath, pkg/apis/controller/common/v1beta1/common_types.go), then
  `&& echo completed > /var/log/katib/$$$$.pid` (getMarkCompletedCommand), one `sh -c` string.
- katib_metrics: pkg/metricscollector/v1beta1/file-metricscollector/file-metricscollector.go,
  parseLogsInTextFormat and newObservationLog, with the default filter of
  pkg/metricscollector/v1beta1/common/const.go (DefaultFilter).
and what the kubelet does to a container's args before the shell reads them: kubelet_expand, kubernetes
third_party/forked/golang/expansion/expand.go (`$(VAR)` from the container's env, `$$` to `$`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from kfts.core.errors import InputError
from kfts.core.training import metric_line
from kfts.kubeflow.katib import render_experiment

from helpers import make_classification, run_cli, write_csv


def test_tune_renders_an_experiment_with_the_search_space(tmp_path):
    out = tmp_path / "experiment.yaml"
    run_cli(
        "pipeline",
        "tune",
        "inception-time",
        "--train",
        "s3://b/train.csv",
        "--valid",
        "s3://b/valid.csv",
        "--search",
        "lr=0.0001:0.01:log",
        "--search",
        "filters=16,32",
        "--search",
        "depth=3:9",
        "--set",
        "epochs=50",
        "--max-trials",
        "8",
        "--parallel-trials",
        "2",
        "--output",
        out,
        check=True,
    )
    experiment = yaml.safe_load(out.read_text())
    spec = experiment["spec"]
    assert experiment["kind"] == "Experiment" and experiment["metadata"]["name"] == "kfts-inception-time"
    assert spec["objective"]["type"] == "maximize" and spec["objective"]["objectiveMetricName"] == "valid_accuracy"
    assert spec["maxTrialCount"] == 8 and spec["parallelTrialCount"] == 2
    assert spec["metricsCollectorSpec"]["collector"]["kind"] == "StdOut"
    assert spec["parameters"] == [
        {
            "name": "lr",
            "parameterType": "double",
            "feasibleSpace": {"min": "0.0001", "max": "0.01", "distribution": "logUniform"},
        },
        {"name": "filters", "parameterType": "discrete", "feasibleSpace": {"list": ["16", "32"]}},
        {"name": "depth", "parameterType": "int", "feasibleSpace": {"min": "3", "max": "9"}},
    ]
    assert [p["name"] for p in spec["trialTemplate"]["trialParameters"]] == ["lr", "filters", "depth"]
    command = spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert "kfts train inception-time --train /tmp/kfts/train.csv --valid /tmp/kfts/valid.csv" in command
    for flag in (
        "--epochs 50",
        "--lr '${trialParameters.lr}'",
        "--filters '${trialParameters.filters}'",
        "--depth '${trialParameters.depth}'",
    ):
        assert flag in command
    assert "kfts copy s3://b/train.csv /tmp/kfts/train.csv && kfts copy s3://b/valid.csv /tmp/kfts/valid.csv" in command


def test_lstm_ad_minimises_valid_loss_and_gpu_trials_ask_for_a_gpu():
    experiment = render_experiment(
        algorithm="lstm-ad",
        train_uri="/d/train.csv",
        valid_uri="/d/valid.csv",
        search=[("hidden_size", "32,64,128")],
        image="reg/kfts:1",
        gpus=1,
    )
    assert experiment["spec"]["objective"]["type"] == "minimize"
    assert experiment["spec"]["objective"]["objectiveMetricName"] == "valid_loss"
    pod = experiment["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "reg/kfts:1"
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"


@pytest.mark.parametrize("gpus, image", [(0, "reg/kfts:2"), (1, "reg/kfts:2-cuda")])
def test_trials_run_the_component_image_and_its_cuda_build_on_gpus(gpus, image, monkeypatch):
    monkeypatch.setenv("KFTS_IMAGE", "reg/kfts:2")
    experiment = render_experiment(
        algorithm="lstm-ad",
        train_uri="/d/train.csv",
        valid_uri="/d/valid.csv",
        search=[("hidden_size", "32,64")],
        gpus=gpus,
    )
    pod = experiment["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == image


def test_the_objective_is_read_from_the_train_step_s_metric_lines():
    line = metric_line({"epoch": 3, "train_loss": 0.4123, "valid_loss": 0.00001, "valid_accuracy": 0.84})
    found = dict(katib_metrics(line, ["valid_accuracy", "valid_loss"]))
    assert float(found["valid_accuracy"]) == pytest.approx(0.84)
    assert float(found["valid_loss"]) == pytest.approx(0.00001)


@pytest.mark.parametrize(
    "search, message",
    [
        (("lr", "0.1:0.01"), "MIN must be below MAX"),
        (("depth", "2:8:log"), "log scale"),
        (("nope", "1:2"), "unknown inception-time hyperparameter"),
        (("filters", "a,b"), "'a' is not an integer"),
        (("depth", "0:5"), "--depth must be positive, not 0"),
        (("lr", "0.01"), "not MIN:MAX, MIN:MAX:log or A,B,C"),
    ],
)
def test_bad_search_specs_are_input_errors(search, message):
    with pytest.raises(InputError, match=message):
        render_experiment(algorithm="inception-time", train_uri="t", valid_uri="v", search=[search], image="i")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--cpu", "-1"], "--cpu '-1' is not a Kubernetes quantity"),
        (["--memory", "8GB"], "--memory '8GB' is not a Kubernetes quantity"),
        (["--name", "Bad_Name"], "--name 'Bad_Name' must be a DNS label"),
        (["--namespace", "Bad_NS"], "--namespace 'Bad_NS' is not a Kubernetes namespace name"),
        (["--service-account", "Bad_SA"], "--service-account 'Bad_SA' is not a Kubernetes object name"),
        (["--train", ""], "--train is empty"),
        (["--valid", ""], "--valid is empty"),
        (["--valid", "s3:///v.csv"], "--valid 's3:///v.csv' names no bucket"),
        (["--model-root", "gs://"], "--model-root 'gs://' names no bucket"),
        (["--gpus", "-1"], "--gpus -1: at least 0"),
        (["--search", "depth=4,5"], "hyperparameter 'depth' is given twice"),
        (["--set", "depth=4"], "hyperparameter 'depth' is given twice"),
    ],
)
def test_an_experiment_katib_or_its_trials_would_fail_is_refused(tmp_path, args, message):
    out = tmp_path / "experiment.yaml"
    result = run_cli(
        "pipeline",
        "tune",
        "inception-time",
        *("--train", "s3://b/t.csv", "--valid", "s3://b/v.csv", "--search", "depth=3:6"),
        *(*args, "--output", out),
    )
    assert result.returncode == 2 and not out.exists()
    assert result.stderr.startswith(f"error: {message}") and result.stderr.count("\n") == 1, result.stderr


def test_an_objective_no_trial_prints_is_refused_with_those_it_prints():
    result = run_cli(
        "pipeline",
        "tune",
        "inception-time",
        "--train",
        "s3://b/t.csv",
        "--valid",
        "s3://b/v.csv",
        "--search",
        "lr=0.0001:0.01:log",
        "--objective",
        "valid_f1",
    )
    assert result.returncode == 2
    assert result.stderr == (
        "error: --objective valid_f1: the trials print valid_accuracy, valid_loss, train_loss, "
        "train_accuracy; choose one of them\n"
    )


def test_a_model_root_without_a_scheme_is_refused():
    with pytest.raises(InputError, match="give a URI the trial pods write to"):
        render_experiment(
            algorithm="lstm-ad", train_uri="t", valid_uri="v", search=[("lr", "0.001,0.01")], model_root="/models"
        )


# -- Katib and the kubelet, reproduced (the module's docstring names the upstream code) ---------------------------

KATIB_FILTER = re.compile(r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)", re.ASCII)  # Go's RE2: ASCII \w \d


def katib_trial(experiment: dict, assignments: dict[str, str], trial_name: str) -> dict:
    """The trial's Job as Katib creates it: placeholders replaced in the template's JSON text."""
    template = experiment["spec"]["trialTemplate"]
    text = json.dumps(template["trialSpec"])
    for parameter in template["trialParameters"]:
        reference = parameter["reference"]
        value = trial_name if reference == "${trialSpec.Name}" else assignments[reference]
        text = text.replace("${trialParameters." + parameter["name"] + "}", value)
    return json.loads(text)


def katib_wrap(container: dict, metrics_file: str) -> list[str]:
    """The primary container's command line after Katib's pod webhook (StdOut collector, no early stopping)."""
    command, args = ["sh", "-c"], [*container["command"], *container["args"]]
    if args[0] in ("sh", "bash") and args[1] == "-c":
        command, args = args[:2], args[2:]
    args.append(f"1>{metrics_file} 2>&1")
    args += ["&&", f"echo completed > {os.path.dirname(metrics_file)}/$$$$.pid"]
    return [*command, " ".join(args)]


def kubelet_expand(text: str, env: dict[str, str]) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] != "$" or i + 1 == len(text):
            out.append(text[i])
            i += 1
        elif text[i + 1] == "$":
            out.append("$")
            i += 2
        elif text[i + 1] == "(" and ")" in text[i + 2 :]:
            name = text[i + 2 : text.index(")", i + 2)]
            out.append(env.get(name, f"$({name})"))
            i += len(name) + 3
        else:
            out.append(text[i : i + 2])
            i += 2
    return "".join(out)


def katib_metrics(log: str, metrics: list[str]) -> list[tuple[str, str]]:
    """(name, value) pairs as Katib records them; [(objective, "unavailable")] when the objective is missing."""
    found = [
        (m.group(1).strip(), m.group(2).strip())
        for line in log.split("\n")
        if any(name in line for name in metrics)
        for m in KATIB_FILTER.finditer(line)
    ]
    found = [(name, value) for name, value in found if name in metrics]
    return found if any(name == metrics[0] for name, _ in found) else [(metrics[0], "unavailable")]


def test_the_reproductions_behave_as_katib_s_and_the_kubelet_s_code():
    container = {"command": ["sh", "-c"], "args": ["{ a && b; }"]}
    assert katib_wrap(container, "/var/log/katib/metrics.log") == [
        "sh",
        "-c",
        "{ a && b; } 1>/var/log/katib/metrics.log 2>&1 && echo completed > /var/log/katib/$$$$.pid",
    ]
    assert kubelet_expand("$$$$.pid $(A) $(B) $$(A) $x $( $", {"A": "1"}) == "$$.pid 1 $(B) $(A) $x $( $"
    assert katib_metrics(
        "epoch=1 valid_loss=0.5\nx=1\nvalid_accuracy=.25 valid_loss=1e-3", ["valid_accuracy", "valid_loss"]
    ) == [("valid_loss", "0.5"), ("valid_accuracy", ".25"), ("valid_loss", "1e-3")]
    assert katib_metrics("valid_loss=0.5", ["valid_accuracy", "valid_loss"]) == [("valid_accuracy", "unavailable")]


# -- search and --set values: checked as `kfts train` checks them, so only they reach a trial's shell -------------

HOSTILE = ["$(id)", "`id`", "constant;id", 'constant"', "constant\nid", "plateau'", "16 && id"]


@pytest.mark.parametrize(
    "flag, spec, value",
    [
        *(("--search", "schedule=constant,{}", value) for value in HOSTILE),
        ("--set", "schedule={}", "$(id)"),
        ("--search", "filters=16,{}", "16;id"),
        ("--set", "epochs={}", "1\nid"),
        ("--search", "lr=0.001:{}", "`id`"),
    ],
)
def test_hostile_values_are_refused_in_one_line(tmp_path, flag, spec, value):
    """Katib would paste a search value into the trial's JSON and `sh -c` string as it is: `$(id)` would run in
    every trial, `"` break the JSON. Each is refused by the check `kfts train` makes (exit 2, one line)."""
    out = tmp_path / "experiment.yaml"
    result = run_cli(
        "pipeline",
        "tune",
        "inception-time",
        "--train",
        "s3://b/t.csv",
        "--valid",
        "s3://b/v.csv",
        "--search",
        "depth=3:6",
        flag,
        spec.format(value),
        "--output",
        out,
    )
    assert result.returncode == 2 and not out.exists()
    assert result.stderr.startswith(f"error: {flag} ") and result.stderr.count("\n") == 1, result.stderr
    assert repr(value) in result.stderr  # the value, as Python writes it: control characters visible
    name = spec.partition("=")[0]
    assert (
        f"--{name} must be one of constant, plateau" in result.stderr
        if name == "schedule"
        else f"is not {'an integer' if name in ('filters', 'epochs') else 'a number'}" in result.stderr
    )


@pytest.mark.parametrize(
    "algorithm, name, choice",
    [
        ("inception-time", "ensemble", "stacked"),
        ("inception-time", "precision", "fp32"),
        ("lstm-ad", "precision", "bf16"),
        ("lstm-ad", "scoring", "paper"),
    ],
)
def test_every_text_hyperparameter_takes_only_its_choices(algorithm, name, choice):
    experiment = render_experiment(
        algorithm=algorithm, train_uri="t", valid_uri="v", search=[(name, choice)], image="i"
    )
    assert experiment["spec"]["parameters"][0]["feasibleSpace"] == {"list": [choice]}
    with pytest.raises(InputError, match=rf"--{name} must be one of .*, not '\$\(id\)'"):
        render_experiment(
            algorithm=algorithm, train_uri="t", valid_uri="v", search=[(name, f"{choice},$(id)")], image="i"
        )
    with pytest.raises(InputError, match=rf"--set {name}='\$\(id\)': --{name} must be one of"):
        render_experiment(
            algorithm=algorithm,
            train_uri="t",
            valid_uri="v",
            search=[("lr", "0.001,0.01")],
            fixed={name: "$(id)"},
            image="i",
        )


def test_what_katib_may_paste_is_the_canonical_value_not_the_text_given():
    experiment = render_experiment(
        algorithm="inception-time",
        train_uri="t",
        valid_uri="v",
        image="i",
        search=[
            ("filters", " 16 ,\t32\n"),
            ("lr", "1e-4:1e-2:log"),
            ("depth", " 3:9 "),
            ("schedule", "plateau, constant"),
        ],
        fixed={"epochs": " 5\n", "early_stopping": "00"},
    )
    assert [p["feasibleSpace"] for p in experiment["spec"]["parameters"]] == [
        {"list": ["16", "32"]},
        {"min": "0.0001", "max": "0.01", "distribution": "logUniform"},
        {"min": "3", "max": "9"},
        {"list": ["plateau", "constant"]},
    ]
    command = experiment["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert "--epochs 5 --early-stopping 0 --filters '${trialParameters.filters}'" in command


# -- a trial as Katib runs it: its metrics reach Katib's collector, with and without a model root ---------------


@pytest.mark.parametrize("with_model_root", [False, True], ids=["no-model-root", "model-root"])
def test_a_trial_wrapped_by_katib_reports_its_objective_and_trains_what_was_drawn(tmp_path, with_model_root):
    """The rendered trial, through Katib's substitution, its webhook's wrapping and the kubelet's expansion,
    run by `sh -c` with the pod's /tmp and /var/log/katib replaced by folders here; the metrics file is read
    as Katib's collector reads it. The data sit in a folder whose name a shell or the kubelet would expand."""
    from kfp.dsl import Model

    from kfts.jobs.load import load_model
    from kfts.kubeflow.components import fetch_model

    labels, values = make_classification(n_per_class=6, length=16)
    data = tmp_path / "in $(AWS_REGION) 'quoted' $HOME"
    data.mkdir()
    write_csv(data / "train.csv", ([lab, *row] for lab, row in zip(labels, values)))
    root = f"file://{tmp_path}/tuning" if with_model_root else None
    experiment = render_experiment(
        algorithm="inception-time",
        train_uri=str(data / "train.csv"),
        valid_uri=str(data / "train.csv"),
        search=[("lr", "0.001:0.01"), ("schedule", "constant,plateau")],
        model_root=root,
        fixed={"filters": 4, "depth": 3, "models": 1, "epochs": 1},
        storage_secret="kfts-storage",
    )
    job = katib_trial(experiment, {"lr": "0.005", "schedule": "plateau"}, "trial-7")
    container = job["spec"]["template"]["spec"]["containers"][0]
    katib_dir = tmp_path / "katib"  # the pod's /var/log/katib, an emptyDir Katib mounts
    katib_dir.mkdir()
    command = katib_wrap(container, f"{katib_dir}/metrics.log")
    env = {"AWS_REGION": "us-east-1"}  # what envFrom the storage secret gives the container
    command = [kubelet_expand(c, env).replace("/tmp/kfts", f"{tmp_path}/pod") for c in command]
    bin_dir = os.path.dirname(sys.executable)
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env, "OMP_NUM_THREADS": "1", "PATH": f"{bin_dir}:{os.environ['PATH']}"},
    )
    log = (katib_dir / "metrics.log").read_text()
    assert result.returncode == 0, log
    assert [p.read_text() for p in katib_dir.glob("*.pid")] == ["completed\n"]
    objective = experiment["spec"]["objective"]
    recorded = katib_metrics(log, [objective["objectiveMetricName"], *objective["additionalMetricNames"]])
    assert recorded != [("valid_accuracy", "unavailable")], log
    assert 0 <= float(dict(recorded)["valid_accuracy"]) <= 1
    model_dir = tmp_path / "tuning" / "trial-7" if with_model_root else tmp_path / "pod" / "model"
    params = load_model(model_dir, device="cpu").params
    assert (params.lr, params.schedule) == (0.005, "plateau")
    if with_model_root:  # what `kfts pipeline run --init-model ROOT/trial-7` hands the fetch-model step
        model = Model(uri=str(tmp_path / "fetched"))
        fetch_model.python_func(uri=f"{root}/trial-7", model=model)
        assert load_model(tmp_path / "fetched", device="cpu").params.lr == 0.005


# -- the trial pod: Pod Security "restricted", resources, a deadline, the storage identity ------------------------

RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(pod: dict) -> list[str]:
    """What Pod Security "restricted" (kubernetes.io/docs/concepts/security/pod-security-standards, v1.30+)
    refuses in a pod spec, one line per fault; [] when it admits the pod."""
    faults, security = [], pod.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            faults.append(key)
    faults += [
        f"volume {v['name']}: {kind}"
        for v in pod.get("volumes", [])
        for kind in v
        if kind != "name" and kind not in RESTRICTED_VOLUMES
    ]
    for c in [*pod.get("initContainers", []), *pod["containers"]]:
        own, name = c.get("securityContext", {}), c["name"]
        if own.get("privileged"):
            faults.append(f"{name}: privileged")
        if own.get("allowPrivilegeEscalation") is not False:
            faults.append(f"{name}: allowPrivilegeEscalation is not false")
        capabilities = own.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []) or set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            faults.append(f"{name}: capabilities: drop ALL, add NET_BIND_SERVICE at most")
        if not own.get("runAsNonRoot", security.get("runAsNonRoot")):
            faults.append(f"{name}: runAsNonRoot is not true")
        if own.get("runAsUser", security.get("runAsUser")) == 0:
            faults.append(f"{name}: runAsUser 0")
        seccomp = own.get("seccompProfile", security.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            faults.append(f"{name}: seccompProfile {seccomp}")
        if any(port.get("hostPort") for port in c.get("ports", [])):
            faults.append(f"{name}: hostPort")
    return faults


def test_the_restricted_check_finds_what_the_profile_refuses():
    assert restricted_violations({"containers": [{"name": "c"}], "volumes": [{"name": "h", "hostPath": {}}]}) == [
        "volume h: hostPath",
        "c: allowPrivilegeEscalation is not false",
        "c: capabilities: drop ALL, add NET_BIND_SERVICE at most",
        "c: runAsNonRoot is not true",
        "c: seccompProfile None",
    ]


def test_trial_pods_are_restricted_bounded_and_carry_the_storage_identity(tmp_path):
    out = tmp_path / "experiment.yaml"
    run_cli(
        "pipeline",
        "tune",
        "lstm-ad",
        "--train",
        "s3://b/t.csv",
        "--valid",
        "s3://b/v.csv",
        "--search",
        "hidden_size=32,64",
        "--cpu",
        "3",
        "--memory",
        "6Gi",
        "--trial-deadline",
        "3600",
        "--storage-secret",
        "kfts-storage",
        "--service-account",
        "kfts-runner",
        "--gpus",
        "1",
        "--output",
        out,
        check=True,
    )
    job = yaml.safe_load(out.read_text())["spec"]["trialTemplate"]["trialSpec"]
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert restricted_violations(pod) == []
    assert job["spec"]["activeDeadlineSeconds"] == 3600
    assert container["resources"] == {
        "requests": {"cpu": "3", "memory": "6Gi"},
        "limits": {"cpu": "3", "memory": "6Gi", "nvidia.com/gpu": "1"},
    }
    assert container["envFrom"] == [{"secretRef": {"name": "kfts-storage"}}]
    assert pod["serviceAccountName"] == "kfts-runner"
    # a read-only root, and the /tmp the trial writes to (its files, the images' caches) an emptyDir
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    tmp = next(m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    assert {"name": tmp, "emptyDir": {}} in pod["volumes"]
    assert "/tmp/kfts/" in container["args"][0] and "/tmp/" not in container["args"][0].replace("/tmp/kfts/", "")
    # Katib's webhook adds its collector (an image running as root) with container[0]'s securityContext when
    # katib-config sets injectSecurityContext (pkg/webhook/v1beta1/pod/inject_webhook.go,
    # getMetricsCollectorContainer): the pod it admits stays restricted
    sidecar = {
        "name": "metrics-logger-and-collector",
        "image": "ghcr.io/kubeflow/katib/file-metrics-collector",
        "securityContext": dict(container["securityContext"]),
    }
    assert restricted_violations({**pod, "containers": [*pod["containers"], sidecar]}) == []


def test_without_a_storage_identity_trials_name_none():
    experiment = render_experiment(
        algorithm="lstm-ad",
        train_uri="s3://b/t.csv",
        valid_uri="s3://b/v.csv",
        search=[("hidden_size", "32,64")],
        image="i",
    )
    job = experiment["spec"]["trialTemplate"]["trialSpec"]["spec"]
    pod = job["template"]["spec"]
    assert "serviceAccountName" not in pod and "envFrom" not in pod["containers"][0]
    assert job["activeDeadlineSeconds"] == 24 * 3600
    assert pod["containers"][0]["resources"]["limits"] == {"cpu": "2", "memory": "8Gi"}
    assert restricted_violations(pod) == []
