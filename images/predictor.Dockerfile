# The kfts predictor image: `kfts serve` (KServe model server) on top of the component image, CPU or CUDA:
#   docker build -f images/predictor.Dockerfile --build-arg BASE_IMAGE=$KFTS_IMAGE -t $KFTS_IMAGE-predictor images
#   docker build -f images/predictor.Dockerfile --build-arg BASE_IMAGE=$KFTS_IMAGE-cuda \
#       -t $KFTS_IMAGE-predictor-cuda images
# KServe's storage initializer puts the model artifact (the InferenceService's STORAGE_URI) at /mnt/models;
# `kfts deploy render` writes an InferenceService that runs this image.
ARG BASE_IMAGE=ghcr.io/kfts/kfts:0.1.0
FROM ${BASE_IMAGE}
# REST (V1, V2, CSV, /metrics) and gRPC (V2)
EXPOSE 8080 8081
USER 1000:1000
ENTRYPOINT ["kfts", "serve"]
CMD ["--model-dir", "/mnt/models", "--http-port", "8080", "--grpc-port", "8081"]
