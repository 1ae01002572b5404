"""`kfts copy` and `kfts promote`."""

from __future__ import annotations

from kfts.core import storage


def register(commands) -> None:
    parser = commands.add_parser("copy", help="copy a file or folder between paths and object-store URIs")
    parser.add_argument("source")
    parser.add_argument("destination")
    parser.set_defaults(func=cmd_copy)
    parser = commands.add_parser(
        "promote",
        help="make a model the champion at a path or object-store prefix, "
        "replacing the previous one without a moment without either",
    )
    parser.add_argument("model_dir")
    parser.add_argument("champion")
    parser.set_defaults(func=cmd_promote)


def cmd_copy(args) -> None:
    storage.copy(args.source, args.destination)
    print(f"copied {args.source} to {args.destination}")


def cmd_promote(args) -> None:
    from kfts.jobs.promote import promote  # loads the model: torch, which `kfts --help` does without

    print(f"promoted {args.model_dir} to {args.champion}: {promote(args.model_dir, args.champion)}")
