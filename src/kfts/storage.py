"""`kfts copy SRC DST`: a file or a folder (a model artifact) between local paths and object stores, any URI
pyarrow reads and writes (s3://, gs://, hdfs://, file://). What a TrainJob's pods run to fetch their data
and to put the model where the pipeline step that launched them reads it."""

from __future__ import annotations

import os

from kfts.errors import InputError


def copy(source: str, destination: str) -> None:
    import pyarrow.fs
    try:
        source_fs, source_path = pyarrow.fs.FileSystem.from_uri(_uri(source))
        kind = source_fs.get_file_info(source_path).type
        if kind == pyarrow.fs.FileType.NotFound:
            raise InputError("does not exist", path=source)
        target_fs, target_path = pyarrow.fs.FileSystem.from_uri(_uri(destination))
        # the folder that will hold the copy must exist (object stores have none to make)
        target_fs.create_dir(os.path.dirname(target_path) if kind == pyarrow.fs.FileType.File else target_path)
        pyarrow.fs.copy_files(source_path, target_path, source_filesystem=source_fs,
                              destination_filesystem=target_fs)
    except (OSError, ValueError) as e:  # pyarrow: unknown scheme, no access, no such bucket
        raise InputError(f"cannot copy {source} to {destination} ({e})") from None


def _uri(location: str) -> str:
    return location if "://" in location else os.path.abspath(location)


def register(commands) -> None:
    parser = commands.add_parser("copy", help="copy a file or folder between paths and object-store URIs")
    parser.add_argument("source")
    parser.add_argument("destination")
    parser.set_defaults(func=cmd_copy)


def cmd_copy(args) -> None:
    copy(args.source, args.destination)
    print(f"copied {args.source} to {args.destination}")
