"""`imageremoval`: the command-line client: `rm`, `ls` and `prune`, printing what the docker CLI prints."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import metadata

from ._cli_commands import run_ls, run_prune, run_rm
from ._cli_filters import FilterError
from ._client import DEFAULT_TARGET, DEFAULT_TIMEOUT, ImageRemovalClient
from ._completion import bash_script, zsh_script
from ._model import Platform, Tls

ENV_SERVER = "IMAGEREMOVAL_SERVER"
ENV_NAMESPACE = "IMAGEREMOVAL_NAMESPACE"
ENV_TLS_CA = "IMAGEREMOVAL_CLIENT_TLS_CA"
ENV_TLS_CERT = "IMAGEREMOVAL_CLIENT_TLS_CERT"
ENV_TLS_KEY = "IMAGEREMOVAL_CLIENT_TLS_KEY"
ENV_TLS_SERVER_NAME = "IMAGEREMOVAL_CLIENT_TLS_SERVER_NAME"


def _version() -> str:
    try:
        return metadata.version("imageremoval")
    except metadata.PackageNotFoundError:
        return "unknown"


def _positive(text: str) -> int:
    """A count of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1: {text!r}")
    return value


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


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: expected a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: must not be negative")
    return value


def _add_globals(parser: argparse.ArgumentParser, *, after_verb: bool) -> None:
    """The options every command takes, before or after the verb (after it, they override only when given)."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if after_verb else value

    parser.add_argument(
        "--server",
        default=default(os.environ.get(ENV_SERVER) or DEFAULT_TARGET),
        metavar="HOST:PORT",
        help=f"server address or unix:///path (env {ENV_SERVER}, default {DEFAULT_TARGET})",
    )
    parser.add_argument(
        "-n",
        "--namespace",
        default=default(os.environ.get(ENV_NAMESPACE, "")),
        metavar="NS",
        help=f"containerd namespace (env {ENV_NAMESPACE}; default: the server's)",
    )
    for flag, env, what in (
        ("--tls-ca", ENV_TLS_CA, "CA bundle (PEM) that signed the server's certificate: enables TLS"),
        ("--tls-cert", ENV_TLS_CERT, "this client's certificate (PEM), for mutual TLS"),
        ("--tls-key", ENV_TLS_KEY, "this client's private key (PEM), for mutual TLS"),
        ("--tls-server-name", ENV_TLS_SERVER_NAME, "the name the server's certificate carries, if not the host"),
    ):
        parser.add_argument(
            flag,
            default=default(os.environ.get(env) or None),
            metavar="NAME" if flag == "--tls-server-name" else "FILE",
            help=f"{what} (env {env})",
        )
    parser.add_argument(
        "--timeout",
        type=_timeout,
        default=default(DEFAULT_TIMEOUT),
        metavar="SECONDS",
        help=f"deadline for each call (default {DEFAULT_TIMEOUT:g})",
    )


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="FILTER",
        help=(
            "dangling=true|false, label=KEY[=VALUE], label!=KEY[=VALUE], reference=GLOB, until=DURATION|TIME, "
            "unused-for=DURATION"
        ),
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; defaults come from the IMAGEREMOVAL_* variables when set."""
    parser = argparse.ArgumentParser(
        prog="imageremoval", description="Remove container images from containerd, like the docker CLI."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    _add_globals(parser, after_verb=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    rm = commands.add_parser(
        "rm",
        help="remove one or more images",
        description="Remove one or more images like `docker rmi`: untag names, delete images, prune parents.",
    )
    _add_globals(rm, after_verb=True)
    rm.add_argument("images", nargs="+", metavar="IMAGE", help="image name, name:tag, name@digest or ID")
    rm.add_argument(
        "-f", "--force", action="store_true", help="remove even if a stopped container uses it; missing is fine"
    )
    rm.add_argument("--no-prune", action="store_true", help="do not delete untagged parents")
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
    rm.add_argument("--dry-run", action="store_true", help="check everything and show what would go; change nothing")
    rm.add_argument("--format", choices=("table", "json"), default="table", help="output format (default table)")
    rm.add_argument(
        "--parallel",
        type=_positive,
        default=1,
        metavar="N",
        help="remove up to N images at a time (default 1: one after another, as docker rmi); for independent "
        "images: two names of one image may then report its deletion under either name",
    )

    ls = commands.add_parser(
        "ls", help="list images", description="List images like `docker images`, with unique sizes and containers."
    )
    _add_globals(ls, after_verb=True)
    ls.add_argument("-a", "--all", action="store_true", help="show all images (every image is shown anyway)")
    _add_filters(ls)
    ls.add_argument("--format", choices=("table", "json"), default="table", help="output format (default table)")
    ls.add_argument("-q", "--quiet", action="store_true", help="only show image IDs")
    ls.add_argument("--no-trunc", action="store_true", help="do not truncate IDs")

    prune = commands.add_parser(
        "prune",
        help="remove unused images",
        description="Remove dangling images (with -a, every unused image) exactly as the plan shown says.",
    )
    _add_globals(prune, after_verb=True)
    prune.add_argument("-a", "--all", action="store_true", help="remove all unused images, not just dangling ones")
    _add_filters(prune)
    prune.add_argument("--keep", type=_count, default=0, metavar="N", help="keep each repository's N newest images")
    prune.add_argument("--dry-run", action="store_true", help="show the plan and what it would reclaim; stop")
    prune.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")

    completion = commands.add_parser(
        "completion", help="print a shell completion script", description="Print a bash or zsh completion script."
    )
    completion.add_argument("shell", choices=("bash", "zsh"), help="the shell")
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


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point: 0 on success, 1 if anything failed, 2 on bad usage."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors: return the code instead of exiting
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    if args.command == "completion":
        print(bash_script(parser) if args.shell == "bash" else zsh_script(parser), end="")
        return 0
    try:
        with ImageRemovalClient(args.server, timeout=args.timeout, tls=_tls(args)) as client:
            if args.command == "rm":
                return run_rm(client, args)
            if args.command == "ls":
                return run_ls(client, args)
            return run_prune(client, args)
    except (_UsageError, FilterError) as error:
        print(error if isinstance(error, _UsageError) else f"imageremoval: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
