"""Counters a demo needs: a pool's connections, a process's open files and sockets, memory."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

__all__ = [
    "processes_with_env",
    "pool_status", "ConnectionCounter", "open_files", "open_file_count", "tcp_connections",
    "peak_rss_mib", "rss_mib", "reset_peak_rss", "MemorySampler",
]


def _sync_engine(engine: Any) -> Any:
    return getattr(engine, "sync_engine", engine)


def pool_status(engine: Any) -> dict[str, Any]:
    """A pool's numbers as a dict: ``checked_out`` (in use), ``checked_in`` (idle, open).

    Works for sync and async engines. Pools without these counters (``NullPool``,
    ``StaticPool``) report what they have.
    """
    pool = _sync_engine(engine).pool
    status: dict[str, Any] = {"pool": type(pool).__name__, "status": pool.status()}
    for name, attr in (("size", "size"), ("checked_in", "checkedin"), ("checked_out", "checkedout"),
                       ("overflow", "overflow")):
        fn = getattr(pool, attr, None)
        if callable(fn):
            status[name] = fn()
    return status


class ConnectionCounter:
    """Counts the DBAPI connections an engine's pool opens and closes (pool events).

    ``open`` is how many are open right now, ``peak`` the most open at once, ``opened`` the
    total ever opened. Attach it before the engine connects.
    """

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.engine = _sync_engine(engine)
        self.opened = 0
        self.closed = 0
        self.peak = 0
        self._lock = threading.Lock()
        self._ids: set[int] = set()
        event.listen(self.engine, "connect", self._on_connect)
        event.listen(self.engine, "close", self._on_close)
        event.listen(self.engine, "close_detached", self._on_close)

    @property
    def open(self) -> int:
        return self.opened - self.closed

    def _on_connect(self, dbapi_conn: Any, record: Any) -> None:
        with self._lock:
            self.opened += 1
            self._ids.add(id(dbapi_conn))
            self.peak = max(self.peak, self.open)

    def _on_close(self, dbapi_conn: Any, *_: Any) -> None:
        with self._lock:
            if id(dbapi_conn) in self._ids:
                self._ids.discard(id(dbapi_conn))
                self.closed += 1

    def __repr__(self) -> str:
        return f"ConnectionCounter(open={self.open}, peak={self.peak}, opened={self.opened})"


def open_files(pid: int | None = None, matching: str | os.PathLike | None = None) -> list[str]:
    """Paths of the files a process holds open (``/proc/<pid>/fd``), optionally only those
    whose path starts with ``matching`` (a SQLite file and its ``-wal``/``-journal``)."""
    pid = pid or os.getpid()
    fd_dir = Path(f"/proc/{pid}/fd")
    paths = []
    for fd in fd_dir.iterdir() if fd_dir.exists() else []:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if matching is None or target.startswith(str(Path(matching).resolve())):
            paths.append(target)
    return paths


def open_file_count(path: str | os.PathLike, pid: int | None = None) -> int:
    """How many descriptors the process holds on ``path`` (one per SQLite connection)."""
    target = str(Path(path).resolve())
    return sum(1 for p in open_files(pid, path) if p == target)


def tcp_connections(pid: int | None = None, *, remote_port: int | None = None, status: str | None = "ESTABLISHED") -> int:
    """How many TCP connections a process (and its children) holds, e.g. to port 5432."""
    proc = psutil.Process(pid or os.getpid())
    procs = [proc, *proc.children(recursive=True)]
    count = 0
    for p in procs:
        try:
            conns = p.net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for c in conns:
            if remote_port is not None and (not c.raddr or c.raddr.port != remote_port):
                continue
            if status is not None and c.status != status:
                continue
            count += 1
    return count


def _status_mib(pid: int | None, key: str) -> float:
    """A memory line of ``/proc/<pid>/status`` (``VmHWM``, ``VmRSS``), in MiB."""
    pid = pid or os.getpid()
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} for pid {pid}")


def peak_rss_mib(pid: int | None = None) -> float:
    """Peak resident memory of a *running* process (VmHWM), in MiB (default: this process).

    Use this, not ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``: a forked child inherits
    its parent's high-water mark.
    """
    return _status_mib(pid, "VmHWM")


def rss_mib(pid: int | None = None) -> float:
    """Current resident memory (VmRSS) of a process, in MiB (default: this process)."""
    return _status_mib(pid, "VmRSS")


def reset_peak_rss(pid: int | None = None) -> None:
    """Reset a process's peak (VmHWM) to its current RSS: ``echo 5 > /proc/<pid>/clear_refs`` (Linux 4.0+)."""
    Path(f"/proc/{pid or os.getpid()}/clear_refs").write_text("5")


@dataclass
class _Sample:
    t: float
    rss_mib: float


class MemorySampler:
    """Polls a process's RSS in a background thread: ``with MemorySampler(pid) as m: ...``;
    afterwards ``m.samples`` (time, MiB) and ``m.peak``."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.samples: list[_Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.perf_counter()
        while not self._stop.is_set():
            try:
                rss = self.proc.memory_info().rss / 2**20
            except psutil.NoSuchProcess:
                break
            self.samples.append(_Sample(time.perf_counter() - start, rss))
            self._stop.wait(self.interval)

    @property
    def peak(self) -> float:
        return max((s.rss_mib for s in self.samples), default=float("nan"))

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)


def processes_with_env(name: str, value: str) -> list[psutil.Process]:
    """Live processes whose environment has ``name=value``: everything started under a marker (a
    notebook's kernel, a driver, a workshop learner) inherits it, detached or not."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(name) == value and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found
