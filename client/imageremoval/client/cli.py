"""`imageremoval`: the command-line client, `imageremoval rm IMAGE...` printing what `docker rmi` prints."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import metadata

from ._client import DEFAULT_TARGET, DEFAULT_TIMEOUT, ImageRemovalClient
from ._errors import ImageRemovalError
from ._model import Platform, Tls

ENV_SERVER = "IMAGEREMOVAL_SERVER"
ENV_TLS_CA = "IMAGEREMOVAL_CLIENT_TLS_CA"
ENV_TLS_CERT = "IMAGEREMOVAL_CLIENT_TLS_CERT"
ENV_TLS_KEY = "IMAGEREMOVAL_CLIENT_TLS_KEY"
ENV_TLS_SERVER_NAME = "IMAGEREMOVAL_CLIENT_TLS_SERVER_NAME"


def _version() -> str:
    try:
        return metadata.version("imageremoval")
    except metadata.PackageNotFoundError:
        return "unknown"


def _platforms(text: str) -> list[Platform]:
    """One `--platform` value: `os/arch[/variant]`, or several separated by commas as Docker allows."""
    try:
        return [Platform.parse(part.strip()) for part in text.split(",")]
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid timeout {text!r}: expected seconds, e.g. 30") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"invalid timeout {text!r}: must be a positive number of seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; the default server comes from IMAGEREMOVAL_SERVER when set."""
    parser = argparse.ArgumentParser(
        prog="imageremoval", description="Remove container images from containerd, like docker rmi."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    rm = commands.add_parser(
        "rm",
        help="remove one or more images",
        description="Remove one or more images like `docker rmi`: untag names, delete images, prune parents.",
    )
    rm.add_argument("images", nargs="+", metavar="IMAGE", help="image name, name:tag, name@digest or ID")
    rm.add_argument("-f", "--force", action="store_true", help="remove even if a stopped container uses it")
    rm.add_argument("--no-prune", action="store_true", help="do not delete untagged parents")
    rm.add_argument("-n", "--namespace", default="", metavar="NS", help="containerd namespace (default: the server's)")
    rm.add_argument(
        "--platform",
        dest="platforms",
        action="extend",
        type=_platforms,
        default=[],
        metavar="OS/ARCH[/VARIANT]",
        help="remove only this platform of a multi-platform image (repeatable; requires --force)",
    )
    rm.add_argument("--allow-missing", action="store_true", help="treat a missing image as already removed")
    rm.add_argument("--async-gc", action="store_true", help="do not wait for containerd's garbage collection")
    rm.add_argument(
        "--server",
        default=os.environ.get(ENV_SERVER) or DEFAULT_TARGET,
        metavar="HOST:PORT",
        help=f"server address (env {ENV_SERVER}, default {DEFAULT_TARGET})",
    )
    for flag, env, what in (
        ("--tls-ca", ENV_TLS_CA, "CA bundle (PEM) that signed the server's certificate: enables TLS"),
        ("--tls-cert", ENV_TLS_CERT, "this client's certificate (PEM), for mutual TLS"),
        ("--tls-key", ENV_TLS_KEY, "this client's private key (PEM), for mutual TLS"),
        ("--tls-server-name", ENV_TLS_SERVER_NAME, "the name the server's certificate carries, if not the host"),
    ):
        rm.add_argument(flag, default=os.environ.get(env) or None, metavar="FILE", help=f"{what} (env {env})")
    rm.add_argument(
        "--timeout",
        type=_timeout,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"deadline for each removal (default {DEFAULT_TIMEOUT:g})",
    )
    return parser


def _tls(args: argparse.Namespace) -> Tls | None:
    """TLS when any TLS option is given; unreadable files end the command with a message."""
    if not (args.tls_ca or args.tls_cert or args.tls_key):
        return None
    try:
        return Tls.from_files(args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name)
    except (OSError, ValueError) as error:
        raise _UsageError(f"imageremoval: TLS: {error}") from None


class _UsageError(Exception):
    """A problem with the command line found after parsing (exit 2)."""


def _rm(args: argparse.Namespace) -> int:
    failed = False
    with ImageRemovalClient(args.server, timeout=args.timeout, tls=_tls(args)) as client:
        last = len(args.images) - 1
        for position, image in enumerate(args.images):
            # One garbage collection for the whole command: only the last removal waits for it (it frees
            # what the earlier ones released too), so N images cost one pass, not N.
            wait_for_gc = position == last and not args.async_gc
            try:
                items = client.remove(
                    image,
                    namespace=args.namespace,
                    force=args.force,
                    no_prune=args.no_prune,
                    platforms=args.platforms,
                    allow_missing=args.allow_missing,
                    async_gc=not wait_for_gc,
                )
            except ImageRemovalError as error:
                failed = True
                sys.stdout.flush()
                print(f"Error response from daemon: {error.message}", file=sys.stderr, flush=True)
                continue
            for item in items:
                print(item, flush=True)
            if getattr(items, "truncated", False):
                listed = sum(1 for i in items if i.kind == "untagged")
                print(
                    f"note: {getattr(items, 'untagged_count', listed) - listed} more names were untagged "
                    "(the server cut the list to fit its message limit)",
                    file=sys.stderr,
                    flush=True,
                )
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point: 0 when every image was removed, 1 if any failed, 2 on bad usage."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors: return the code instead of exiting
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    try:
        return _rm(args)
    except _UsageError as error:
        print(error, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
