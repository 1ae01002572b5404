#!/usr/bin/env bash
# Build the kfts images from the wheels in dist/ (`make images` and `make images-cuda` call this):
#   images/build.sh cpu    $KFTS_IMAGE and $KFTS_IMAGE-predictor
#   images/build.sh cuda   $KFTS_IMAGE-cuda and $KFTS_IMAGE-predictor-cuda (PyPI's CUDA torch: several GB)
# With Docker where it answers, else with Podman, for machines with no registry (images/README.md): the base
# is then the Debian 12 image that images/base-image.sh builds from Debian's packages, builds use chroot
# isolation with the host's CA bundle mounted for pip, and a local CPU torch wheel in $PIP_FIND_LINKS is
# preferred. KFTS_BASE_IMAGE overrides the base.
set -euo pipefail
cd "$(dirname "$0")/.."
variant=${1:?usage: images/build.sh cpu|cuda}
image=${KFTS_IMAGE:-ghcr.io/kfts/kfts:0.1.0}
torch_version=$(grep -o '^torch==[0-9.]*' constraints.txt | cut -d= -f3)
wheel=$(ls dist/kfts-*.whl 2>/dev/null | head -1)
[ -n "$wheel" ] || { echo "images/build.sh: no wheel in dist/: run 'make wheel' first" >&2; exit 2; }
ls dist/kfts_cpu_kernels-*.whl >/dev/null 2>&1 || { echo "images/build.sh: no add-on wheel in dist/: run 'make wheel'" >&2; exit 2; }
# the wheel's dependencies with the extras the images need (serve: the predictor; kubeflow: the components),
# for a layer of their own: a change of kfts's code alone then rebuilds in seconds. pip installs them at the
# releases of constraints.txt.
python3 - "$wheel" > dist/requirements.txt <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    [metadata] = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    for line in wheel.read(metadata).decode().splitlines():
        if line.startswith("Requires-Dist: "):
            requirement, _, marker = line.split(": ", 1)[1].partition(";")
            if not marker or marker.strip() in ('extra == "serve"', 'extra == "kubeflow"'):
                print(requirement.strip())
PY
cp constraints.txt dist/constraints.txt

# KFTS_BUILD_FLAGS: more flags for the engine's build, e.g. --no-cache (benchmarks/images.py)
args=(${KFTS_BUILD_FLAGS:-} --build-arg "TORCH_VERSION=$torch_version")
if docker info >/dev/null 2>&1; then
    build=(docker build)
    base=${KFTS_BASE_IMAGE:-python:3.11-slim}
elif command -v podman >/dev/null; then
    build=(podman build --isolation chroot)
    base=${KFTS_BASE_IMAGE:-localhost/kfts-base:bookworm}
    [ -n "${KFTS_BASE_IMAGE:-}" ] || images/base-image.sh "$base"
    args+=(-v /etc/ssl/certs:/host-certs:ro --build-arg PIP_CERT=/host-certs/ca-certificates.crt)
else
    echo "images/build.sh: no container engine: 'docker info' fails and podman is not installed" >&2
    echo "  (Debian/Ubuntu: apt-get install podman buildah runc debootstrap)" >&2
    exit 2
fi
args+=(--build-arg "BASE_IMAGE=$base")

case $variant in
cpu)
    suffix=""
    args+=(--build-arg CPU_KERNELS=1)  # the add-on: bf16 training on CPUs; GPUs never run it
    if [ "${build[0]}" = podman ] && [ -d "${PIP_FIND_LINKS:-}" ] && ls "$PIP_FIND_LINKS"/torch-"$torch_version"+cpu-*.whl >/dev/null 2>&1; then
        # the CPU wheel on this machine; its +cpu local version wins over PyPI's CUDA build of the same release
        args+=(-v "$PIP_FIND_LINKS:/wheels:ro" --build-arg PIP_FIND_LINKS=/wheels
               --build-arg TORCH_INDEX=https://pypi.org/simple)
    fi ;;
cuda)
    suffix="-cuda"
    args+=(--build-arg TORCH_INDEX=https://pypi.org/simple) ;;
*)
    echo "images/build.sh: cpu or cuda, not '$variant'" >&2; exit 2 ;;
esac

start=$(date +%s)
"${build[@]}" "${args[@]}" -f images/Dockerfile -t "$image$suffix" .
"${build[@]}" ${KFTS_BUILD_FLAGS:-} -f images/predictor.Dockerfile --build-arg "BASE_IMAGE=$image$suffix" -t "$image-predictor$suffix" images
echo "built $image$suffix and $image-predictor$suffix in $(( $(date +%s) - start )) s"
