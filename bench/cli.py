"""`python -m bench`: start a private containerd and our server, run the scenarios, print and save results."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from imageremoval.server.containerd.daemon import PrivateContainerd

from .content import ImageFactory
from .env import REPO, SERVER_BIN, BenchError, ServerProcess, machine_facts, require_tools
from .phases import from_log
from .phases import table as phases_table
from .plan import FULL, SMOKE
from .report import document, markdown, table, write_json
from .scenarios import SCENARIOS, Context, run_scenarios

DEFAULT_OUTPUT = REPO / "bench" / "results"
DEFAULT_WORK = REPO / ".run" / "bench"


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of imageremoval side by side with containerd itself (issue 6).",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny counts: proves the harness works in seconds")
    parser.add_argument(
        "--scenario",
        type=int,
        action="append",
        choices=sorted(SCENARIOS),
        metavar="N",
        help="run only scenario N (repeatable; default: all)",
    )
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT, help="where <date>.json goes")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK, help="containerd root and logs (removed)")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="also write the table as Markdown to FILE")
    parser.add_argument("--keep-work-dir", action="store_true", help="keep containerd's root and the logs")
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for imageremoval-server, e.g. --server-arg=--log-level=WARNING (repeatable)",
    )
    parser.add_argument(
        "--server-bin", type=Path, default=SERVER_BIN, help="the server executable (to compare another build)"
    )
    parser.add_argument(
        "--phases",
        action="store_true",
        help="have the server export its spans to its log and print where a removal's time goes "
        "(exporting costs time: use it to explain figures, not as figures)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="record the server with py-spy into FILE (.svg flame graph, .json speedscope, .txt collapsed)",
    )
    return parser


def _logger(started: float) -> Callable[[str], None]:
    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {message}", file=sys.stderr, flush=True)

    return log


def _results_name(smoke: bool, scenarios: Sequence[int], day: str) -> str:
    if smoke:
        return f"{day}-smoke.json"
    if sorted(scenarios) == sorted(SCENARIOS):
        return f"{day}.json"
    return f"{day}-s{'-'.join(str(n) for n in scenarios)}.json"


class _Profiler:
    """py-spy attached to the server process for the whole run (investigation only)."""

    def __init__(self, output: Path, pid: int) -> None:
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(py_spy).exists():
            raise BenchError("--profile needs py-spy: .venv/bin/pip install py-spy")
        formats = {".svg": "flamegraph", ".json": "speedscope", ".txt": "raw"}
        output.parent.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(pid),
                "--rate",
                "250",
                "--idle",
                "--format",
                formats.get(output.suffix, "flamegraph"),
                "--output",
                str(output),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._output = output
        time.sleep(0.5)  # attach before the first removal

    def stop(self) -> bool:
        """Stop sampling; whether py-spy wrote its output."""
        self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(60)
        except subprocess.TimeoutExpired:
            self._process.kill()
        return self._output.exists()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 when every scenario ran (whether or not its targets are met), 1 on a failure."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    plan = SMOKE if args.smoke else FULL
    numbers = sorted(set(args.scenario or SCENARIOS))
    clock = time.perf_counter()
    log = _logger(clock)
    started_at = datetime.datetime.now(datetime.UTC)
    run_id = f"{started_at:%H%M%S}-{os.getpid()}"
    work_dir = (args.work_dir / run_id).resolve()
    command = shlex.join(["python", "-m", "bench", *(argv if argv is not None else sys.argv[1:])])
    try:
        require_tools()
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    work_dir.mkdir(parents=True, exist_ok=True)
    machine = machine_facts(work_dir)
    containerd = PrivateContainerd(work_dir / "containerd")
    server: ServerProcess | None = None
    factory: ImageFactory | None = None
    profiler: _Profiler | None = None
    first_start = 0.0
    try:
        address = containerd.start()
        containerd_pid = _pid_of(work_dir / "containerd" / "config.toml")
        server = ServerProcess(
            address,
            work_dir / "server.log",
            # Usage tracking off for the removal scenarios (their figures stay comparable with earlier runs);
            # scenario 8 measures what it costs with servers of its own.
            extra_args=("--usage-tracking", "false", *args.server_arg),
            binary=args.server_bin,
            env={"OTEL_TRACES_EXPORTER": "console"} if args.phases else None,
        )
        first_start = server.start()
        log(f"containerd at {address}; server on {server.target} (SERVING after {first_start:.2f}s)")
        if args.profile is not None:
            profiler = _Profiler(args.profile.resolve(), server.pid)
        factory = ImageFactory(address, plan.create_workers)
        ctx = Context(
            address=address,
            containerd_pid=containerd_pid,
            server=server,
            factory=factory,
            plan=plan,
            work_dir=work_dir,
            run_id=run_id,
            log=log,
        )
        results = run_scenarios(ctx, numbers)
    except (BenchError, OSError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        if profiler is not None:
            written = profiler.stop()
            log(f"profile written to {args.profile}" if written else "py-spy wrote no profile (could it attach?)")
        if factory is not None:
            factory.close()
        if server is not None:
            server.stop()
        containerd.stop()
        found = from_log(work_dir / "server.log") if args.phases else []
        if not args.keep_work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    seconds = time.perf_counter() - clock
    rows = [row for result in results for row in result.rows]
    data = document(
        mode=plan.name,
        command=command,
        started_at=started_at.isoformat(timespec="seconds"),
        seconds=seconds,
        plan=dataclasses.asdict(plan),
        machine=machine,
        scenarios=results,
        extra={
            "server_first_start_s": round(first_start, 3),
            "load_average_at_end": list(os.getloadavg()),
            "server_args": list(args.server_arg),
            "phases": [phase.as_dict() for phase in found],
        },
    )
    path = args.output_dir / _results_name(args.smoke, numbers, f"{started_at:%Y-%m-%d}")
    write_json(path, data)
    if args.markdown is not None:
        args.markdown.write_text(markdown(rows) + "\n")
    print(table(rows))
    if found:
        print("\nwhere a removal's time goes (the server's own spans; exporting them slows it down):")
        print(phases_table(found))
    checked = [row for row in rows if row.met is not None]
    print(
        f"\n{sum(1 for r in checked if r.met)}/{len(checked)} targets met; {seconds:.0f}s; "
        f"plan {plan.name}; results in {path}"
    )
    for line in plan.scaled:
        print(f"scaled: {line}")
    return 0


def _pid_of(config: Path) -> int:
    """The containerd started with this config file (for its RSS), found in /proc."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(config).encode() in argv and Path(argv[0].decode(errors="replace")).name == "containerd":
            return int(entry.name)
    raise BenchError(f"no containerd process runs with {config}")
