#!/usr/bin/env bash
# Build the images' base from Debian's packages, for machines where no registry serves python:3.11-slim:
# a Debian 12 (bookworm) minbase root filesystem with Python 3.11, imported as a local image.
#   images/base-image.sh [TAG]        (default localhost/kfts-base:bookworm; needs root, debootstrap, podman)
# Where a registry answers, the Dockerfiles' default base (python:3.11-slim) needs none of this.
set -euo pipefail
TAG=${1:-localhost/kfts-base:bookworm}
ENGINE=${ENGINE:-podman}
if "$ENGINE" image exists "$TAG" 2>/dev/null; then
    echo "base image $TAG exists"; exit 0
fi
ROOTFS=$(mktemp -d /var/tmp/kfts-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$ROOTFS" >&2
# python:3.11-slim puts python on PATH as `python`; so does this base (Debian's is python3 only)
ln -sf python3 "$ROOTFS/usr/bin/python"
chroot "$ROOTFS" apt-get clean
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*
tar -C "$ROOTFS" -c . | "$ENGINE" import - "$TAG"
echo "base image $TAG built"
