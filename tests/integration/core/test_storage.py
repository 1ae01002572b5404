"""kfts against a real S3-API server (tests/s3_server.py: moto's server on 127.0.0.1, checking signatures) with
its identity given only as environment variables, as a Kubernetes Secret gives it to a pod: the CLI, the
components' own functions, and a champion promotion killed half way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from datetime import timedelta

import pytest
from kfp.dsl import Dataset, Model

from kfts.core import artifact, storage
from kfts.core.errors import InputError
from kfts.jobs.promote import promote
from kfts.kubeflow.components import deploy, fetch_model, promote_model, validate_csv

from helpers import make_classification, run_cli, tiny_inception_time, write_csv
from s3_server import BUCKET, S3Server


@pytest.fixture(scope="module")
def s3():
    server = S3Server()
    yield server
    server.close()


@pytest.fixture
def in_pod(s3, monkeypatch):
    """This process's environment as a pod's with the storage Secret (for the components' functions run here)."""
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    for name in set(os.environ) - set(s3.env()):
        monkeypatch.delenv(name)
    return s3


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Three different small models and a file they predict."""
    d = tmp_path_factory.mktemp("models")
    _, values = tiny_inception_time(save_to=d / "old")
    tiny_inception_time(save_to=d / "new", epochs=2, filters=5)
    tiny_inception_time(save_to=d / "third", filters=6)
    write_csv(d / "series.csv", values)
    return d


def _predicted(model, data, tmp_path, env=None) -> str:
    out = tmp_path / f"predictions-{abs(hash(str(model)))}.csv"
    run_cli("predict", "--model-dir", model, "--input", data, "--output", out, env=env, check=True)
    return out.read_text()


def test_validate_reads_an_s3_csv(s3, tmp_path):
    labels, values = make_classification(n_per_class=4, length=8)
    train = write_csv(tmp_path / "train.csv", ([lab, *row] for lab, row in zip(labels, values)))
    uri = s3.put("data/train.csv", train.read_bytes())
    result = run_cli("validate", "inception-time", uri, env=s3.env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"ok: {uri}: 12 series")
    bad = s3.put("data/bad.csv", b"a,1,2\nb,1,x\n")
    result = run_cli("validate", "inception-time", bad, env=s3.env())
    assert (result.returncode, result.stderr) == (2, f"error: {bad}: row 2, column 3: 'x' is not a number\n")


def test_copy_both_ways_with_kfps_names(s3, models, tmp_path):
    """With the scheme and variable names KFP uses for its own store: minio://, and MINIO_ACCESS_KEY /
    MINIO_SECRET_KEY (kubeflow/pipelines 2.17.0 manifests/kustomize/base/installs/multi-user/
    pipelines-profile-controller/sync.py gives its artifact Secret to pods under these names)."""
    env = s3.env(
        AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None, MINIO_ACCESS_KEY=s3.key_id, MINIO_SECRET_KEY=s3.secret
    )
    scheme = "minio"
    remote = f"{scheme}://{BUCKET}/copied-{scheme}"
    run_cli("copy", models / "old", f"{remote}/model", env=env, check=True)
    run_cli("copy", models / "series.csv", f"{remote}/series.csv", env=env, check=True)
    assert s3.keys(f"copied-{scheme}/") == [
        f"copied-{scheme}/{name}" for name in ("model/kfts-model.json", "model/weights.safetensors", "series.csv")
    ]
    result = run_cli("copy", f"{remote}/model", tmp_path / "back", env=env, check=True)
    assert result.stdout == f"copied {remote}/model to {tmp_path / 'back'}\n"
    run_cli("copy", f"{remote}/series.csv", tmp_path / "series.csv", env=env, check=True)
    for name in artifact.FILES:
        assert (tmp_path / "back" / name).read_bytes() == (models / "old" / name).read_bytes()
    assert (tmp_path / "series.csv").read_bytes() == (models / "series.csv").read_bytes()


def test_train_and_predict_from_and_to_s3(s3, tmp_path):
    labels, values = make_classification(n_per_class=6, length=16)
    train = s3.put(
        "train/train.csv",
        write_csv(tmp_path / "train.csv", ([lab, *row] for lab, row in zip(labels, values))).read_bytes(),
    )
    series = s3.put("train/series.csv", write_csv(tmp_path / "series.csv", values).read_bytes())
    model = f"s3://{BUCKET}/train/model"
    result = run_cli(
        "train",
        "inception-time",
        "--train",
        train,
        "--model-dir",
        model,
        "--filters",
        "4",
        "--depth",
        "1",
        "--models",
        "1",
        "--epochs",
        "1",
        "--seed",
        "0",
        env=s3.env(),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(f"model written to {model}\n")
    result = run_cli(
        "predict", "--model-dir", model, "--input", series, "--output", f"{model}-predictions.csv", env=s3.env()
    )
    assert (result.returncode, result.stdout) == (0, f"{len(values)} rows predicted into {model}-predictions.csv\n")
    run_cli("copy", model, tmp_path / "model", env=s3.env(), check=True)
    local = _predicted(tmp_path / "model", tmp_path / "series.csv", tmp_path)
    remote = s3.client.get_object(Bucket=BUCKET, Key="train/model-predictions.csv")["Body"].read().decode()
    assert remote == local and len(local.splitlines()) == len(values)
    run_cli(
        "evaluate",
        "--model-dir",
        model,
        "--input",
        train,
        "--output-dir",
        f"{model}-evaluation",
        env=s3.env(),
        check=True,
    )
    assert {"train/model-evaluation/metrics.json", "train/model-evaluation/report.html"} <= set(
        s3.keys("train/model-evaluation/")
    )


def test_a_wrong_key_is_one_clear_line(s3, models, tmp_path):
    data = s3.put("wrong/series.csv", (models / "series.csv").read_bytes())
    wrong = s3.env(AWS_SECRET_ACCESS_KEY="not-the-key")
    refused = ": the object store refused the credentials ("
    for args, uri in (
        (("validate", "inception-time", data, "--inference"), data),
        (("copy", data, tmp_path / "x.csv"), data),
        (("copy", models / "old", f"s3://{BUCKET}/wrong/model"), f"s3://{BUCKET}/wrong/model"),
        (("predict", "--model-dir", models / "old", "--input", data, "--output", tmp_path / "p.csv"), data),
    ):
        result = run_cli(*args, env=wrong)
        assert result.returncode == 2 and result.stderr.startswith(f"error: {uri}{refused}"), result.stderr
        assert len(result.stderr.splitlines()) == 1 and "AWS_SECRET_ACCESS_KEY" in result.stderr
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "p.csv").exists()
    unknown = run_cli("copy", data, tmp_path / "x.csv", env=s3.env(AWS_ACCESS_KEY_ID="AKIAUNKNOWNUNKNOWN"))
    assert unknown.returncode == 2 and unknown.stderr.startswith(f"error: {data}{refused}")


def test_a_wrong_key_fails_the_validate_task_with_that_line(in_pod, tmp_path, monkeypatch, capsys):
    uri = in_pod.put("task/train.csv", b"a,1,2\nb,3,4\n")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-key")
    with pytest.raises(SystemExit) as exit:
        validate_csv.python_func(
            algorithm="inception-time", uri=uri, layout="training", data=Dataset(uri=str(tmp_path / "data"))
        )
    assert exit.value.code == 2
    assert capsys.readouterr().err.startswith(f"error: {uri}: the object store refused the credentials (")


def test_the_champion_is_fetched_promoted_and_deployed_from_its_current_version(in_pod, models, tmp_path, monkeypatch):
    s3 = in_pod
    # promotions as far apart as scheduled retrainings are: none is another's upload in progress
    monkeypatch.setattr(storage, "IN_FLIGHT", timedelta(0))
    champion = f"s3://{BUCKET}/champion"
    run_cli("copy", models / "old", champion, env=s3.env(), check=True)  # as an older kfts promoted it
    fetched = Model(uri=str(tmp_path / "fetched-old"))
    fetch_model.python_func(uri=champion, model=fetched)
    assert artifact.read_manifest(fetched.path) == artifact.read_manifest(models / "old")

    promote_model.python_func(model=Model(uri=str(models / "new")), uri=champion)
    [version] = {key.split("/")[2] for key in s3.keys("champion/versions/")}
    assert s3.keys("champion/") == [
        "champion/kfts-champion.json",
        f"champion/versions/{version}/kfts-model.json",
        f"champion/versions/{version}/weights.safetensors",
    ]
    fetched = Model(uri=str(tmp_path / "fetched-new"))
    fetch_model.python_func(uri=champion, model=fetched)
    assert artifact.read_manifest(fetched.path) == artifact.read_manifest(models / "new")
    assert _predicted(champion, models / "series.csv", tmp_path, s3.env()) == _predicted(
        models / "new", models / "series.csv", tmp_path
    )
    assert storage.serving_uri(champion) == f"{champion}/versions/{version}"

    # back to the old model, as a person rolls a champion back: the version before stays (an InferenceService
    # may still name it), those before it go
    result = run_cli("promote", models / "old", champion, env=s3.env(), check=True)
    old_version = _versions(s3, "champion") - {version}
    assert result.stdout == f"promoted {models / 'old'} to {champion}: {champion}/versions/{old_version.pop()}\n"
    assert _predicted(champion, models / "series.csv", tmp_path, s3.env()) == _predicted(
        models / "old", models / "series.csv", tmp_path
    )
    promote(str(models / "new"), champion)
    promote(str(models / "new"), champion)  # the same model: the same version, now the previous one too
    assert s3.keys("champion/") == [
        "champion/kfts-champion.json",
        f"champion/versions/{version}/kfts-model.json",
        f"champion/versions/{version}/weights.safetensors",
    ]


def _versions(s3, prefix: str) -> set[str]:
    return {key.split("/")[2] for key in s3.keys(f"{prefix}/versions/")}


def test_the_deploy_step_gives_kserve_the_champions_current_version(in_pod, models, tmp_path, monkeypatch, capsys):
    """KServe's storage initializer downloads every object under the prefix it is given (kserve v0.20.0
    python/storage/kserve_storage/kserve_storage.py, _download_s3: bucket.objects.filter(Prefix=...)), which
    for a champion is its pointer and every version, with no kfts-model.json at /mnt/models: the deploy step
    names the version. Its model input is a champion as KFP's launcher hands one over: downloaded whole, at
    minio://."""
    from kube_standin import KServe, KubeStandIn

    s3 = in_pod
    version = promote(str(models / "new"), f"s3://{BUCKET}/served").rsplit("/", 2)[-2:]
    local = tmp_path / "artifact"
    for key in s3.keys("served/"):
        (local / key).parent.mkdir(parents=True, exist_ok=True)
        (local / key).write_bytes(s3.client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    model = Model(uri=f"minio://{BUCKET}/served")
    model._set_custom_path(str(local / "served"))  # where KFP's launcher put the download
    with KubeStandIn(kserve=KServe("Standard")) as cluster:
        cluster.kubeconfig(tmp_path / "kubeconfig")
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
        assert deploy.python_func(model=model, name="it", runtime="kfts") == "http://it.default.example"
    [created] = cluster.sent("POST")
    assert created["spec"]["predictor"]["model"]["storageUri"] == f"s3://{BUCKET}/served/{'/'.join(version)}"


def _promote_in_subprocess(model, uri, env) -> subprocess.Popen:
    """The promote-challenger step as KFP runs it: its function in a process of its own."""
    code = textwrap.dedent(f"""
        from kfp.dsl import Model
        from kfts.kubeflow.components import promote_model
        promote_model.python_func(model=Model(uri={str(model)!r}), uri={uri!r})
    """)
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_a_promotion_killed_mid_copy_leaves_the_champion(in_pod, models, tmp_path):
    """kfts-champion.json is switched only once the new version is whole: killing the step after its first object
    leaves the old champion serving predictions and the next run's fetch working, and the next promotion
    succeeds (the old version stays, as the one before)."""
    s3 = in_pod
    champion = f"s3://{BUCKET}/killed"
    first = _promote_in_subprocess(models / "old", champion, s3.env())
    assert first.wait(120) == 0, first.communicate()
    before = [key for key in s3.keys("killed/") if "/versions/" in key]
    old_predictions = _predicted(models / "old", models / "series.csv", tmp_path)

    hold = s3.hold("killed/")
    step = _promote_in_subprocess(models / "new", champion, s3.env())
    try:
        assert hold.reached.wait(120), step.communicate(timeout=60)
        step.send_signal(signal.SIGKILL)
        step.wait(60)
    finally:
        hold.released.set()
    assert [key for key in s3.keys("killed/") if "/versions/" in key] != before  # the kill was mid-copy

    fetched = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        from kfp.dsl import Model
        from kfts.kubeflow.components import fetch_model
        fetch_model.python_func(uri={champion!r}, model=Model(uri={str(tmp_path / "fetched")!r}))
    """),
        ],
        env=s3.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert fetched.returncode == 0, fetched.stderr  # the next scheduled run's "fetch champion"
    assert artifact.read_manifest(tmp_path / "fetched") == artifact.read_manifest(models / "old")
    assert _predicted(champion, models / "series.csv", tmp_path, s3.env()) == old_predictions

    step = _promote_in_subprocess(models / "new", champion, s3.env())
    assert step.wait(120) == 0, step.communicate()
    assert _predicted(champion, models / "series.csv", tmp_path, s3.env()) == _predicted(
        models / "new", models / "series.csv", tmp_path
    )
    new_version = storage.resolve_model(champion).rsplit("/", 1)[1]
    assert s3.keys("killed/") == sorted(
        ["killed/kfts-champion.json", *before, *(f"killed/versions/{new_version}/{name}" for name in artifact.FILES)]
    )


def test_two_promotions_at_once_leave_a_whole_champion(in_pod, models, tmp_path):
    """A person promotes a model while a scheduled run promotes its own: the promotion that switches first must
    not delete the other's upload in progress, and the one that switches last names a whole version that
    predicts; the other stays as the previous one."""
    s3 = in_pod
    champion = f"s3://{BUCKET}/concurrent"
    promote(str(models / "old"), champion)
    hold = s3.hold("concurrent/", apply=True)  # the slow one: its weights are written, its manifest held
    slow = _promote_in_subprocess(models / "new", champion, s3.env())
    try:
        assert hold.reached.wait(120), slow.communicate(timeout=60)
        quick = promote(str(models / "third"), champion)  # start to end meanwhile
    finally:
        hold.released.set()
    assert slow.wait(120) == 0, slow.communicate()
    assert _predicted(champion, models / "series.csv", tmp_path, s3.env()) == _predicted(
        models / "new", models / "series.csv", tmp_path
    )
    assert _predicted(quick, models / "series.csv", tmp_path, s3.env()) == _predicted(
        models / "third", models / "series.csv", tmp_path
    )


def test_a_pointer_naming_a_path_outside_the_prefix_is_refused(s3, tmp_path):
    s3.put("crafted/kfts-champion.json", json.dumps({"version": "../champion"}).encode())
    result = run_cli(
        "predict",
        "--model-dir",
        f"s3://{BUCKET}/crafted",
        "--input",
        tmp_path / "x.csv",
        "--output",
        tmp_path / "p.csv",
        env=s3.env(),
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: s3://{BUCKET}/crafted: kfts-champion.json names no version")


def test_minio_uris_go_to_kfps_store_unless_an_endpoint_is_given(monkeypatch):
    """kubeflow/pipelines 2.17.0 backend/src/v2/config/env.go getDefaultMinioSessionInfo: minio:// is
    objectstore.DefaultEndpointInMultiUserMode, seaweedfs.kubeflow:9000, without TLS."""
    from s3_server import S3_ENV

    for name in S3_ENV:
        monkeypatch.delenv(name, raising=False)
    assert storage.s3_options("minio") == {"endpoint_override": "seaweedfs.kubeflow:9000", "scheme": "http"}
    assert storage.s3_options("s3") == {}  # AWS itself, the default credential chain
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://minio.example:9443")
    assert storage.s3_options("minio") == {"endpoint_override": "minio.example:9443", "scheme": "https"}


def test_a_google_cloud_store_out_of_reach_is_one_clear_line_not_a_hang(tmp_path, monkeypatch):
    """pyarrow's Google Cloud Storage client retries for many minutes by default, inside one C call that a
    SIGTERM cannot interrupt: a pod stuck there until it is killed. This machine reaches no Google server and
    has no Google credentials (elsewhere the bucket does not exist): every way, an InputError once retries end."""
    monkeypatch.setattr(storage, "GCS_RETRIES", timedelta(seconds=1))
    outcome: list[BaseException] = []

    def fetch():
        try:
            storage.copy("gs://kfts-tests-no-such-bucket/series.csv", str(tmp_path / "series.csv"))
        except BaseException as e:
            outcome.append(e)

    fetching = threading.Thread(target=fetch, daemon=True)
    fetching.start()
    fetching.join(timeout=120)
    assert not fetching.is_alive(), "the copy still waits on the store"
    [error] = outcome
    assert isinstance(error, InputError) and "gs://kfts-tests-no-such-bucket/series.csv" in str(error)
    assert not (tmp_path / "series.csv").exists()
