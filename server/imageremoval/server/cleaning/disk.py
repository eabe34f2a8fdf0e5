"""How full the filesystem holding containerd's root is, measured with statvfs (never estimated)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class DiskUsage:
    """As `df` counts it: used = blocks - free; size = used + available to unprivileged users."""

    used_bytes: int
    size_bytes: int

    @property
    def percent(self) -> float:
        return 100.0 * self.used_bytes / self.size_bytes if self.size_bytes else 0.0

    def over(self, percent: float) -> int:
        """Bytes to free to be below `percent` (0 when already below)."""
        allowed = int(self.size_bytes * percent / 100.0)
        return max(0, self.used_bytes - allowed + (1 if self.used_bytes >= allowed else 0))


def disk_usage(path: Path) -> DiskUsage | None:
    """statvfs of the filesystem holding path; None when it cannot be read."""
    try:
        stat = os.statvfs(path)
    except OSError:
        return None
    used = (stat.f_blocks - stat.f_bfree) * stat.f_frsize
    return DiskUsage(used_bytes=used, size_bytes=used + stat.f_bavail * stat.f_frsize)
