"""The `imageremoval` CLI run as a user runs it, against a test's server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .server import Server

BIN = Path(sys.executable).parent


def run_cli(server: Server | None, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **env}
    environment.pop("IMAGEREMOVAL_NAMESPACE", None)
    if server is not None:
        environment.setdefault("IMAGEREMOVAL_SERVER", server.target)
    environment.update(env)
    return subprocess.run(
        [str(BIN / "imageremoval"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        input=stdin,
        check=False,
    )
