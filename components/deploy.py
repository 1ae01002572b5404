"""deploy: render the model's KServe InferenceService (kfts.deploy, as `kfts deploy render` does) and create or
replace it in the cluster."""

from kfp import dsl
from kfp.dsl import Input, Model

from kfts.components.settings import IMAGE, fail


@dsl.component(base_image=IMAGE, install_kfp_package=False, additional_funcs=[fail])
def deploy(model: Input[Model], name: str, predictor_image: str = "", image_base: str = "", namespace: str = "",
           gpu: bool = False,
           gpus: int = 1, node_selector: dict = {}, tolerations: list = [], min_replicas: int = 1,
           max_replicas: int = 1, cpu: str = "1", memory: str = "2Gi", service_account: str = "",
           runtime: str = "", deployment_mode: str = "") -> str:
    """Serve `model` as the InferenceService `name` (in `namespace`, default this pod's own) and return its
    URL once KServe reports it. The storage URI is the model artifact's URI in the pipeline root (minio://
    is KFP's name for the S3 API of its MinIO, which KServe reads as s3://). With a `runtime` (a kfts
    ServingRuntime installed in the cluster, `kfts deploy render --kind ClusterServingRuntime`) the short
    InferenceService for it; without, the predictor image as a custom container: `predictor_image`, or when
    empty `image_base`'s predictor image, its CUDA build when `gpu`. `node_selector` and `tolerations` (the
    GPU node pool's) apply only when `gpu`: a CPU predictor is never pinned to GPU nodes. An empty
    `deployment_mode` is the cluster's (else Standard or Knative, kfts.deploy)."""
    import json

    from kfts import kube, storage
    from kfts.deploy import apply_inference_service, render_inference_service
    from kfts.errors import InputError
    from kfts.images import predictor_image as default_predictor_image

    namespace = namespace or kube.own_namespace()
    try:
        uri = storage.serving_uri(model.uri, model.path)  # a champion: the version its pointer names
        image = None if runtime else predictor_image or default_predictor_image(gpu, image_base or None)
        manifest = render_inference_service(
            name=name, model_uri=uri, image=image, runtime=runtime or None, gpu=gpu, gpus=gpus,
            node_selector=(node_selector if gpu else None) or None, tolerations=(tolerations if gpu else None) or None,
            min_replicas=min_replicas, max_replicas=max_replicas, namespace=namespace, cpu=cpu, memory=memory,
            service_account=service_account or None, deployment_mode=deployment_mode or None)
    except InputError as e:
        fail(e)
    print(json.dumps(manifest, indent=2))
    return apply_inference_service(manifest)
