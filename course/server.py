"""Run an ASGI app under a real uvicorn server on 127.0.0.1, and always stop it.

Two flavours:

* :func:`serve_in_thread` runs an app object (defined in a notebook or imported) in a
  background thread of the current process. Ready in a few milliseconds; good for demos
  that need to look inside the app afterwards (its engine, its pool).
* :func:`serve_subprocess` runs ``module:app`` in a separate ``python -m uvicorn`` process,
  optionally with ``--workers N``. Use it for multi-process demos, memory measurements, and
  anything that might hang or leak.

Both bind a free port chosen by the OS, wait until the server answers, and stop it when the
``with`` block ends, including when the block raises.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import httpx

__all__ = ["ThreadServer", "ProcessServer", "serve_in_thread", "serve_subprocess", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (prefer passing a bound socket)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _app_line(exc: BaseException) -> str | None:
    """The last line of the app's own code (not a library's, not the course's) in the traceback
    of ``exc`` or of the exceptions it wraps: where a learner should look."""
    import traceback

    libraries = tuple({os.path.dirname(os.__file__), sys.prefix, sys.base_prefix, os.path.dirname(__file__)})
    found = None
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for frame in traceback.extract_tb(exc.__traceback__):
            if not frame.filename.startswith(libraries) and not frame.filename.startswith("<"):
                found = f"{Path(frame.filename).name} line {frame.lineno}" + (f": {frame.line.strip()}" if frame.line else "")
        exc = exc.__cause__ or exc.__context__
    return found


class _ExceptionCollector(logging.Handler):
    """Collects the exceptions uvicorn logs (``Exception in ASGI application``)."""

    def __init__(self, thread_name: str) -> None:
        super().__init__(level=logging.ERROR)
        self.thread_name = thread_name  # only this server's thread: two servers may run at once
        self.texts: collections.Counter[str] = collections.Counter()
        self.where: dict[str, str] = {}  # error text -> "app.py line 42: the line" (the app's own code)

    def emit(self, record: logging.LogRecord) -> None:
        if record.threadName != self.thread_name:
            return
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            # The innermost cause is the one a learner should read.
            while exc.__cause__ is not None or exc.__context__ is not None:
                nxt = exc.__cause__ or exc.__context__
                if nxt is None or nxt is exc:
                    break
                exc = nxt
            key = f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"
            self.texts[key] += 1
            where = _app_line(record.exc_info[1])
            if where:
                self.where.setdefault(key, where)
        else:
            self.texts[record.getMessage()] += 1


@dataclass
class ThreadServer:
    """A running in-thread server. ``url`` is its base URL."""

    url: str
    port: int
    server: Any
    thread: threading.Thread
    errors: collections.Counter = field(default_factory=collections.Counter)
    """Exceptions the app raised while serving, as ``"module.Type: message" -> count``. uvicorn logs
    an exception just after it sent the 500, so read them once the ``with`` block has ended (or wait
    a moment): inside the block the last one may not be counted yet."""
    error_lines: dict = field(default_factory=dict)
    """For each of ``errors``: the app's own line where it was raised (``"app.py line 42: ..."``)."""

    def describe_errors(self, since: collections.Counter | None = None) -> str:
        """The server's exceptions (those after ``since``), each with the app's line: for a Got line."""
        new = self.errors - (since or collections.Counter())
        return "; ".join(f"{text}" + (f" ({self.error_lines[text]})" if text in self.error_lines else "")
                         + (f" x{n}" if n > 1 else "") for text, n in new.items())


@contextlib.contextmanager
def serve_in_thread(
    app: Any,
    *,
    log_level: str = "warning",
    ready_timeout: float = 10.0,
    stop_timeout: float = 10.0,
    quiet_errors: bool = True,
    **config: Any,
) -> Iterator[ThreadServer]:
    """Serve ``app`` with uvicorn in a background thread on 127.0.0.1 and a free port.

    The app's lifespan runs (startup before the block, shutdown after it). Exceptions the
    app raises are collected in ``server.errors``; with ``quiet_errors`` their tracebacks are
    not printed (the notebook shows the collected texts instead).
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # log_config=None: uvicorn must not reconfigure logging (its dictConfig would drop our collector
    # and, in a notebook, the kernel's own handlers).
    config.setdefault("log_config", None)
    cfg = uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level, lifespan="on", **config)
    server = uvicorn.Server(cfg)
    # uvicorn (re)configures logging in Config(); attach the collector afterwards.
    thread_name = f"uvicorn-{port}"
    collector = _ExceptionCollector(thread_name)
    err_logger = logging.getLogger("uvicorn.error")
    # Other servers' collectors stay attached (each only counts its own thread's records).
    saved_propagate = err_logger.propagate
    saved_handlers = [h for h in err_logger.handlers if not isinstance(h, _ExceptionCollector)]
    if quiet_errors:
        err_logger.propagate = False
        for h in saved_handlers:
            err_logger.removeHandler(h)
    err_logger.addHandler(collector)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # noqa: BLE001 - reported to the caller below
            failure.append(exc)

    thread = threading.Thread(target=run, name=thread_name, daemon=True)
    thread.start()
    ok = False
    try:
        deadline = time.monotonic() + ready_timeout
        while not server.started:
            if failure or not thread.is_alive():
                logged = "; ".join(collector.texts)
                raise RuntimeError(
                    f"uvicorn did not start: {failure[0]!r}" if failure else "uvicorn stopped during startup: "
                    + (logged or "did the app's lifespan raise? see the log above")
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"the app did not finish its startup within {ready_timeout:g} s "
                                   "(the lifespan never reached its yield)")
            time.sleep(0.005)
        yield ThreadServer(url=f"http://127.0.0.1:{port}", port=port, server=server, thread=thread,
                           errors=collector.texts, error_lines=collector.where)
        ok = True
    finally:
        server.should_exit = True
        thread.join(stop_timeout)
        if thread.is_alive():  # requests still in flight: stop waiting for them
            server.force_exit = True
            thread.join(stop_timeout)
        sock.close()
        err_logger.removeHandler(collector)
        err_logger.propagate = saved_propagate
        for h in saved_handlers:
            if h not in err_logger.handlers:
                err_logger.addHandler(h)
        # Only when nothing else went wrong: a startup that hung must be reported as that, not as this.
        if thread.is_alive() and ok:
            raise RuntimeError(f"the app did not finish its shutdown within {2 * stop_timeout:g} s "
                               f"(uvicorn on port {port} is still running)")


@dataclass
class ProcessServer:
    """A running uvicorn subprocess."""

    url: str
    port: int
    proc: subprocess.Popen
    log_path: Path
    _final_log: str | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        """Everything the server has logged so far (kept after the server stops)."""
        if self._final_log is not None:
            return self._final_log
        return self.log_path.read_text(errors="replace")


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float, log_path: Path, health: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"uvicorn exited with code {proc.returncode} during startup. Its log:\n{log_path.read_text()[-3000:]}"
            )
        try:
            httpx.get(url + health, timeout=1.0)
            return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"uvicorn did not answer on {url} within {timeout} s. Log:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.05)


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    """SIGTERM, wait, then SIGKILL the process and any children still alive. Returns the exit code."""
    import psutil

    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    _, alive = psutil.wait_procs(children, timeout=timeout)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    return proc.returncode


@contextlib.contextmanager
def serve_subprocess(
    app_path: str,
    *,
    app_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    env: dict[str, str] | None = None,
    health: str = "/openapi.json",
    ready_timeout: float = 20.0,
    stop_timeout: float = 10.0,
    extra_args: list[str] | None = None,
) -> Iterator[ProcessServer]:
    """Run ``python -m uvicorn app_path`` on 127.0.0.1 and a free port until the block ends.

    Logs go to a temporary file (``server.log()``), not to a pipe nobody reads. The server is
    stopped with SIGTERM, then SIGKILL if it does not stop in ``stop_timeout`` seconds.
    """
    port = free_port()
    log_fd, log_name = tempfile.mkstemp(prefix="uvicorn-", suffix=".log")
    log_path = Path(log_name)
    cmd = [sys.executable, "-m", "uvicorn", app_path, "--host", "127.0.0.1", "--port", str(port)]
    if app_dir is not None:
        cmd += ["--app-dir", str(app_dir)]
    if workers:
        cmd += ["--workers", str(workers)]
    cmd += extra_args or []
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.Popen(cmd, stdout=log_fd, stderr=subprocess.STDOUT, env=full_env, stdin=subprocess.DEVNULL)
    os.close(log_fd)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, proc, ready_timeout, log_path, health)
        if workers and workers > 1:  # the first answer can come before every worker is up
            deadline = time.monotonic() + ready_timeout
            while log_path.read_text(errors="replace").count("Application startup complete") < workers:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise TimeoutError(f"not all {workers} workers started. Log:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.05)
        server = ProcessServer(url=url, port=port, proc=proc, log_path=log_path)
        yield server
    finally:
        stop_process(proc, stop_timeout)
        with contextlib.suppress(NameError):
            server._final_log = log_path.read_text(errors="replace")
        log_path.unlink(missing_ok=True)
