"""CPU seconds spent by the local pipeline's processes while a benchmark runs.

On a machine shared with other work, photos per second of wall-clock time move with the load
(two runs of the same design differed by 1.7x here); the CPU seconds each process spent per
photo do not. The meter samples this process and its descendants (the emulator, the model
server) with psutil and reports, per role, the CPU time used after :meth:`CpuMeter.start`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import psutil

ROLES = (("moto", "emulator"), ("serving_server", "model server"), ("torchserve", "model server"))


def role_of(process: psutil.Process, own_pid: int) -> str:
    if process.pid == own_pid:
        return "pipeline"  # the handlers, the executor, the uploads and the polling
    try:
        command = " ".join(process.cmdline())
    except psutil.Error:
        return "other"
    return next((role for marker, role in ROLES if marker in command), "other")


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


@dataclass
class CpuMeter:
    interval_s: float = 0.5
    _started: dict[int, float] = field(default_factory=dict)
    _last: dict[int, tuple[str, float]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        """Count from now (processes started later count from zero) until :meth:`stop`."""
        self._started = {pid: seconds for pid, (_, seconds) in self._sample().items()}
        self._last = {}
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="cpu-meter", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, float]:
        """CPU seconds per role since :meth:`start`."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        totals: dict[str, float] = {}
        for pid, (role, seconds) in self._last.items():
            totals[role] = totals.get(role, 0.0) + seconds - self._started.get(pid, 0.0)
        return {role: round(seconds, 1) for role, seconds in sorted(totals.items())}

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            for pid, (role, seconds) in self._sample().items():
                known = self._last.get(pid)  # a process keeps the role it was first seen with
                self._last[pid] = (known[0] if known else role, seconds)

    def _sample(self) -> dict[int, tuple[str, float]]:
        own = psutil.Process()
        found: dict[int, tuple[str, float]] = {}
        for process in [own, *own.children(recursive=True)]:
            try:
                if process.status() == psutil.STATUS_ZOMBIE:
                    continue
                found[process.pid] = (role_of(process, own.pid), cpu_seconds(process))
            except psutil.Error:  # ended between listing and reading
                continue
        return found
