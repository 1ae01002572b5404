"""deploy: render the model's KServe InferenceService (kfts.kubeflow.deploy, as `kfts deploy render` does), create or
replace it in the cluster, and wait until the new model serves (or put the previous one back)."""

from kfp import dsl
from kfp.dsl import Input, Model

from kfts.kubeflow.components.settings import IMAGE, fail


@dsl.component(base_image=IMAGE, install_kfp_package=False, additional_funcs=[fail])
def deploy(
    model: Input[Model],
    name: str,
    predictor_image: str = "",
    image_base: str = "",
    namespace: str = "",
    gpu: bool = False,
    gpus: int = 1,
    node_selector: dict = {},
    tolerations: list = [],
    min_replicas: int = 1,
    max_replicas: int = 1,
    cpu: str = "1",
    memory: str = "2Gi",
    service_account: str = "",
    storage_secret: str = "",
    runtime: str = "",
    deployment_mode: str = "",
    kserve_version: str = "",
    canary_traffic_percent: int = 0,
    timeout_minutes: float = 30.0,
) -> str:
    """Serve `model` as the InferenceService `name` (in `namespace`, default this pod's own) and return its
    URL once KServe reports the new model serving. The storage URI is the model artifact's URI in the
    pipeline root (minio:// is KFP's name for the S3 API of its MinIO, which KServe reads as s3://), which
    KServe's storage initializer reads with the Secret `storage_secret` (annotated with the endpoint:
    deploy/SERVING.md; the step refuses one whose annotations do not name the endpoint of its own
    AWS_ENDPOINT_URL) or the secrets of `service_account`, the predictor's account. With a `runtime` (a kfts
    ServingRuntime installed in the cluster, `kfts deploy render --kind ClusterServingRuntime`) the short
    InferenceService for it; without, the predictor image as a custom container: `predictor_image`, or when
    empty `image_base`'s predictor image, its CUDA build when `gpu`. `node_selector` and `tolerations` (the
    GPU node pool's) apply only when `gpu`: a CPU predictor is never pinned to GPU nodes. An empty
    `deployment_mode` is the cluster's (else Standard or Knative), written as KServe `kserve_version` names it
    (empty: 0.16 or later). `canary_traffic_percent` 1-99 (Knative) gives the new model that share of the
    traffic; 0 all of it. When the new model is not serving within `timeout_minutes`, or KServe reports it
    failed, the previous InferenceService is put back and the step fails saying so."""
    import json
    import os

    from kfts.core import storage
    from kfts.core.errors import InputError
    from kfts.kubeflow import kube
    from kfts.kubeflow.deploy import apply_inference_service, check_storage_secret, render_inference_service
    from kfts.kubeflow.images import predictor_image as default_predictor_image

    namespace = namespace or kube.own_namespace()
    try:
        uri = storage.serving_uri(model.uri, model.path)  # a champion: the version its pointer names
        image = None if runtime else predictor_image or default_predictor_image(gpu, image_base or None)
        manifest = render_inference_service(
            name=name,
            model_uri=uri,
            image=image,
            runtime=runtime or None,
            gpu=gpu,
            gpus=gpus,
            node_selector=(node_selector if gpu else None) or None,
            tolerations=(tolerations if gpu else None) or None,
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            namespace=namespace,
            cpu=cpu,
            memory=memory,
            service_account=service_account or None,
            storage_secret=storage_secret or None,
            deployment_mode=deployment_mode or None,
            kserve_version=kserve_version or None,
            canary_traffic_percent=canary_traffic_percent or None,
        )
        api = kube.custom_objects()
        if storage_secret:
            check_storage_secret(api, storage_secret, namespace, uri, os.environ.get("AWS_ENDPOINT_URL", ""))
    except InputError as e:
        fail(e)
    print(json.dumps(manifest, indent=2))
    try:
        return apply_inference_service(manifest, api=api, timeout_s=timeout_minutes * 60)
    except kube.Failed as e:  # the cluster's answer, not the user's input: exit 1
        print(f"error: {e}", flush=True)
        raise SystemExit(1) from None
