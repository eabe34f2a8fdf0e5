"""Real runc containers through containerd's own CLI (`ctr`), so "running" means a real task."""

from __future__ import annotations

import subprocess


class Ctr:
    """`ctr` bound to one containerd socket."""

    def __init__(self, address: str) -> None:
        self.address = address

    def __call__(self, namespace: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ctr", "--address", self.address, "--namespace", namespace, *args],
            check=check,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def run_detached(self, namespace: str, image: str, container: str, *command: str) -> None:
        """Start a task that keeps running (`sleep`)."""
        self(namespace, "run", "-d", image, container, *(command or ("/bin/sleep", "600")))

    def create(self, namespace: str, image: str, container: str) -> None:
        """A container with no task: stopped, in Docker's terms."""
        self(namespace, "containers", "create", image, container, "/bin/true")

    def stop_task(self, namespace: str, container: str) -> None:
        """Kill the task and leave it in the STOPPED state."""
        self(namespace, "tasks", "kill", "-s", "SIGKILL", container, check=False)
        for _ in range(100):
            out = self(namespace, "tasks", "ls", check=False).stdout
            if not any(line.split()[:1] == [container] and "RUNNING" in line for line in out.splitlines()):
                return
            subprocess.run(["sleep", "0.05"], check=False)

    def task_status(self, namespace: str, container: str) -> str:
        for line in self(namespace, "tasks", "ls").stdout.splitlines()[1:]:
            parts = line.split()
            if parts and parts[0] == container:
                return parts[-1]
        return ""

    def cleanup(self, namespace: str) -> None:
        """Remove every task and container of the namespace."""
        for line in self(namespace, "tasks", "ls", check=False).stdout.splitlines()[1:]:
            container = line.split()[0]
            self(namespace, "tasks", "kill", "-s", "SIGKILL", container, check=False)
            self(namespace, "tasks", "delete", "-f", container, check=False)
        for line in self(namespace, "containers", "ls", "-q", check=False).stdout.splitlines():
            if line.strip():
                self(namespace, "containers", "delete", line.strip(), check=False)
