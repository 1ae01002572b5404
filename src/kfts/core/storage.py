"""Local paths and object stores: the one place where kfts turns a location into a pyarrow filesystem, and
where models are promoted.

A location is a path or a URI pyarrow reads (s3://, gs://, hdfs://, file://), or minio://, KFP's name for the
S3 API of its in-cluster store. An S3 store's identity comes from the environment, as a Kubernetes Secret given
to a pod as env vars (kfp-kubernetes use_secret_as_env, `envFrom: secretRef`) sets it:

    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY   the key (else MINIO_ACCESS_KEY, MINIO_SECRET_KEY, the names KFP
                                               gives its artifact Secret's accesskey/secretkey in its pods);
                                               neither: pyarrow's default chain (IRSA, instance profile)
    AWS_SESSION_TOKEN                          with a temporary key
    AWS_REGION (or AWS_DEFAULT_REGION)
    AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL    an S3-API server other than AWS (http://minio-service.kubeflow:9000);
                                               minio:// without one: KFP 2.17's default, http://seaweedfs.kubeflow:9000

A store that refuses or cannot be reached is an InputError naming the location (one line, exit code 2).

A model directory at an object-store prefix (a champion) is written beside the previous one and switched to by
a pointer, so that there is a complete model at the prefix at every moment, whatever fails or is killed, and
whatever other promotion runs at the same time (the previous version is kept until the next promotion):

    PREFIX/kfts-champion.json     {"version": "versions/<content hash>", ...}: the current model, written last
    PREFIX/versions/<hash>/       a model directory (docs/ARTIFACT.md)

Readers follow the pointer (resolve_model); a prefix holding a model directly (written by an older kfts, or by
`kfts copy`) reads as before. On a local filesystem the directory is replaced in one rename instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from kfts.core.errors import InputError

POINTER = "kfts-champion.json"
VERSIONS = "versions"
# kubeflow/pipelines 2.17.0 backend/src/v2/objectstore/config.go DefaultEndpointInMultiUserMode (no TLS)
KFP_STORE = "http://seaweedfs.kubeflow:9000"
_VERSION = re.compile(rf"{VERSIONS}/[0-9a-f]{{16}}")  # what a pointer may name: nothing outside the prefix
# A version written to this recently when a promotion switches may be another promotion's upload in progress
# (a person's beside a scheduled run's): it is kept, for a later promotion to delete. Far longer than an upload.
IN_FLIGHT = timedelta(hours=1)
# how long a Google Cloud Storage request is retried before it is reported (credentials or the store not reached)
GCS_RETRIES = timedelta(seconds=30)
# pyarrow's names for the AWS errors that mean the key, not the request, is wrong
_REFUSED = ("ACCESS_DENIED", "SIGNATURE_DOES_NOT_MATCH", "INVALID_ACCESS_KEY_ID", "EXPIRED_TOKEN", "INVALID_TOKEN")


def filesystem(location: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path in it) for a path or a URI; s3:// and minio:// configured from the
    environment (see the module docstring)."""
    import pyarrow.fs

    if not is_uri(location):
        return pyarrow.fs.LocalFileSystem(), os.path.abspath(location)
    scheme, rest = location.split("://", 1)
    if scheme in ("s3", "minio"):
        return pyarrow.fs.S3FileSystem(**s3_options(scheme)), rest.rstrip("/")
    if scheme in ("gs", "gcs"):  # pyarrow's default retries an unreachable store for many minutes, deaf to SIGTERM
        return pyarrow.fs.GcsFileSystem(retry_time_limit=GCS_RETRIES), rest.rstrip("/")
    with _reported(location):
        return pyarrow.fs.FileSystem.from_uri(location)


def s3_options(scheme: str = "s3") -> dict:
    """pyarrow.fs.S3FileSystem's arguments from the environment, every one passed explicitly (pyarrow's own
    reading of the environment varies with its version and knows no MINIO_* names)."""
    env = os.environ
    access = env.get("AWS_ACCESS_KEY_ID") or env.get("MINIO_ACCESS_KEY")
    secret = env.get("AWS_SECRET_ACCESS_KEY") or env.get("MINIO_SECRET_KEY")
    options: dict[str, str | None] = {}
    if access or secret:
        if not (access and secret):
            raise InputError("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY come together: only one of them is set")
        options.update(access_key=access, secret_key=secret, session_token=env.get("AWS_SESSION_TOKEN") or None)
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        options["region"] = region
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or (KFP_STORE if scheme == "minio" else "")
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InputError(f"AWS_ENDPOINT_URL {endpoint!r} is not an http:// or https:// address")
        options.update(endpoint_override=parts.netloc, scheme=parts.scheme)
    return options


def is_uri(location) -> bool:
    return "://" in os.fspath(location)


def check_apart(output, output_flag: str, inputs: dict) -> None:
    """Refuse an output that is one of the command's inputs (flag: location) or lies inside one: predictions
    written over a model's weights, a folder copied into itself. Paths by where they lead, URIs as written."""
    written = _canonical(output)
    for flag, location in inputs.items():
        if location and written and is_uri(location) == is_uri(output):
            read = _canonical(location)
            if written == read or written.startswith(read + "/"):
                where = "is" if written == read else "lies inside"
                raise InputError(f"{output_flag} {output} {where} {flag} {location}: give an output elsewhere")


def _canonical(location) -> str:
    location = os.fspath(location or "")
    if not location or is_uri(location):
        return location.rstrip("/")
    return os.path.realpath(location)


@contextlib.contextmanager
def _reported(location: str) -> Iterator[None]:
    """pyarrow's refusals (no such file, no access, no such scheme) as one InputError naming `location`."""
    try:
        yield
    except FileNotFoundError:
        raise InputError("does not exist", path=location) from None
    except (OSError, ValueError) as e:
        raise InputError(_reason(e), path=location) from None


def _reason(error: Exception) -> str:
    text = str(error)
    code = re.search(r"AWS Error (\w+)", text)
    if code and code.group(1) in _REFUSED:
        given = "AWS_ACCESS_KEY_ID" in os.environ or "MINIO_ACCESS_KEY" in os.environ
        return f"the object store refused the credentials ({code.group(1)}): " + (
            "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (the storage Secret) and their access to this bucket"
            if given
            else "no AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY is set"
        )
    if code and code.group(1) == "NETWORK_CONNECTION":
        endpoint = s3_options().get("endpoint_override", "AWS")
        return f"cannot reach the object store at {endpoint} (AWS_ENDPOINT_URL)"
    if "OAuth2 access token" in text:  # Google Cloud's client found no credentials
        return (
            "no Google Cloud credentials: set GOOGLE_APPLICATION_CREDENTIALS, or run where the metadata server "
            "gives them (GKE Workload Identity)"
        )
    if (code and code.group(1) in ("NO_SUCH_BUCKET", "RESOURCE_NOT_FOUND")) or "not found" in text.lower():
        return "does not exist"
    return f"cannot be read or written ({text.splitlines()[0] if text else type(error).__name__})"


# -- copying ----------------------------------------------------------------------------------------------------


def copy(source: str, destination: str) -> None:
    """A file, or a folder with everything under it, from `source` to `destination` (paths or URIs). A
    champion's prefix copies as its current model."""
    import pyarrow.fs

    if not (source and destination):
        raise InputError("copying needs a source and a destination: one of them is an empty path")
    check_apart(destination, "the destination", {"the source": source})
    source = resolve_model(source)
    source_fs, source_path = filesystem(source)
    target_fs, target_path = filesystem(destination)
    with _reported(source):
        kind = source_fs.get_file_info(source_path).type
    if kind == pyarrow.fs.FileType.NotFound:
        raise InputError("does not exist", path=source)
    with _reported(destination):
        # the folder that will hold the copy must exist (object stores have none to make)
        target_fs.create_dir(os.path.dirname(target_path) if kind == pyarrow.fs.FileType.File else target_path)
    with _reported(f"{source} -> {destination}"):
        pyarrow.fs.copy_files(source_path, target_path, source_filesystem=source_fs, destination_filesystem=target_fs)


@contextlib.contextmanager
def local_copy(location: str) -> Iterator[str]:
    """A local path holding what `location` holds: the path itself, or a temporary copy of a URI's file or
    folder (removed afterwards)."""
    if not is_uri(location):
        yield location
        return
    scratch = tempfile.mkdtemp(prefix="kfts-")
    try:
        local = os.path.join(scratch, _basename(location))
        copy(location, local)
        yield local
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _basename(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1] or "data"


@contextlib.contextmanager
def staged(args, inputs: tuple[str, ...] = (), outputs: tuple[str, ...] = ()) -> Iterator[None]:
    """Run a command whose file arguments may be URIs on local copies: `args`' attributes named in `inputs` are
    fetched first, those in `outputs` are written locally and uploaded when the command succeeds (a model
    directory as promote() writes it). Errors name the URIs; `args` is given back its URIs at the end."""
    remote = {
        name: getattr(args, name) for name in (*inputs, *outputs) if getattr(args, name) and is_uri(getattr(args, name))
    }
    if not remote:
        yield
        return
    scratch = tempfile.mkdtemp(prefix="kfts-")
    local = {name: os.path.join(scratch, name, _basename(uri)) for name, uri in remote.items()}
    try:
        for name in remote:
            os.makedirs(os.path.dirname(local[name]))
            if name in inputs:
                copy(remote[name], local[name])
            setattr(args, name, local[name])
        try:
            yield
        except InputError as e:
            for name, uri in remote.items():
                e.path = e.path and e.path.replace(local[name], uri)
                e.message = e.message.replace(local[name], uri)
            raise
        for name in outputs:
            if name in remote and os.path.exists(local[name]):  # under torchrun only rank 0 writes
                _upload(local[name], remote[name])
    finally:
        for name, uri in remote.items():
            setattr(args, name, uri)
        shutil.rmtree(scratch, ignore_errors=True)


def _upload(path: str, uri: str) -> None:
    from kfts.core.artifact import MANIFEST

    if os.path.isfile(os.path.join(path, MANIFEST)):
        promote(path, uri)  # a model kfts has just written whole (artifact.atomic_directory)
    else:
        copy(path, uri)


# -- champions: a pointer to the current version --------------------------------------------------------------


def resolve_model(location: str) -> str:
    """Where the model directory at `location` is: the version its pointer names, else `location` itself."""
    version = _current_version(*filesystem(location), location)
    return _join(location, version) if version else location


def serving_uri(uri: str, local_copy: str | None = None) -> str:
    """The URI KServe's storage initializer downloads for the model at `uri`: a champion's current version (the
    storage initializer copies a prefix whole, pointer and every version), minio:// as the s3:// KServe reads.
    local_copy: a copy of it already here (a KFP input artifact's path), read instead of the store."""
    import pyarrow.fs

    where = (pyarrow.fs.LocalFileSystem(), local_copy) if local_copy else filesystem(uri)
    version = _current_version(*where, uri)
    uri = uri.replace("minio://", "s3://", 1)
    return _join(uri, version) if version else uri


def _current_version(fs, path: str, shown: str) -> str | None:
    import pyarrow.fs

    pointer = f"{path}/{POINTER}"
    with _reported(shown):
        if fs.get_file_info(pointer).type != pyarrow.fs.FileType.File:
            return None
        with fs.open_input_stream(pointer) as f:
            text = f.read(1 << 16)
    try:
        version = json.loads(text)["version"]
    except (ValueError, TypeError, KeyError):
        version = None
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise InputError(
            f'{POINTER} names no version this kfts reads (expected {{"version": "{VERSIONS}/<16 hex digits>"}})',
            path=shown,
        )
    return version


def _join(location: str, relative: str) -> str:
    return f"{location.rstrip('/')}/{relative}"


def promote(model: str, destination: str, verify: Callable[[str], object] | None = None) -> str:
    """Make the model directory `model` (a path or URI) the champion at `destination`; returns where the new
    model is. At an object-store prefix the model becomes a new version, then the pointer names it, and only
    then are the versions before the previous one deleted (also what a killed promotion left), unless written
    to within IN_FLIGHT: at every moment the prefix holds a complete model, the previous one stays for a
    rollback and for an InferenceService still naming it, and a promotion running at the same time keeps its
    upload. A local directory is replaced in one rename. verify(local copy) runs before anything is written
    (kfts.jobs.promote.promote passes the model loader: a complete model that loads)."""
    import pyarrow.fs

    from kfts.core import artifact

    with local_copy(model) as source:
        if verify is not None:
            verify(source)
        fs, path = filesystem(destination)
        if isinstance(fs, pyarrow.fs.LocalFileSystem):
            with artifact.atomic_directory(path, artifact.FILES) as tmp:
                for name in artifact.FILES:
                    shutil.copyfile(os.path.join(source, name), tmp / name)
            return destination
        _current_version(fs, path, destination)  # a pointer this kfts cannot read is refused before any write
        version = f"{VERSIONS}/{_content_hash(source, artifact.FILES)}"
        with _reported(destination):
            for name in (artifact.WEIGHTS, artifact.MANIFEST):  # the manifest last: the version is whole with it
                _put(fs, f"{path}/{version}/{name}", os.path.join(source, name))
            previous = _current_version(fs, path, destination)  # read at the switch: another may have switched
            pointer = {"version": version, "promoted_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            with fs.open_output_stream(f"{path}/{POINTER}") as f:  # the switch: one object, one PUT
                f.write((json.dumps(pointer) + "\n").encode())
            _delete_all_but(fs, path, {version, previous}, artifact.FILES)
    return _join(destination, version)


def _content_hash(directory: str, files) -> str:
    """Versions are named by content: promoting the same model again rewrites its version, never a second one."""
    digest = hashlib.sha256()
    for name in files:
        with open(os.path.join(directory, name), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _put(fs, path: str, local: str) -> None:
    with open(local, "rb") as source, fs.open_output_stream(path) as target:
        shutil.copyfileobj(source, target, 1 << 20)


def _delete_all_but(fs, path: str, versions: set, files) -> None:
    """After the switch: the versions not in `versions` that no promotion has written to for IN_FLIGHT, and a
    model an older kfts wrote at the prefix itself."""
    import pyarrow.fs

    keep = {f"{path}/{version}" for version in versions if version}
    switched = fs.get_file_info(f"{path}/{POINTER}").mtime  # the store's clock, which dates its objects too
    root = f"{path}/{VERSIONS}/"
    last_written: dict[str, datetime] = {}  # each version (or stray object) under versions/ -> its newest write
    strays = set()
    for info in fs.get_file_info(pyarrow.fs.FileSelector(root, recursive=True)):
        if info.type == pyarrow.fs.FileType.File:
            entry = root + info.path.removeprefix(root).split("/")[0]
            last_written[entry] = max(last_written.get(entry, info.mtime), info.mtime)
            if entry == info.path:
                strays.add(entry)
    for entry, written in last_written.items():
        if entry not in keep and switched - written >= IN_FLIGHT:
            fs.delete_file(entry) if entry in strays else fs.delete_dir(entry)
    for name in files:
        if fs.get_file_info(f"{path}/{name}").type == pyarrow.fs.FileType.File:
            fs.delete_file(f"{path}/{name}")
