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

from course.processes import stop_tree

__all__ = ["ThreadServer", "ProcessServer", "ServerErrors", "REQUEST_HEADER", "serve_in_thread", "serve_subprocess",
           "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (prefer passing a bound socket)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


REQUEST_HEADER = "x-course-request"
"""A request carrying this header has its server errors filed under the header's value
(:meth:`ServerErrors.for_request`): exact even when requests run at once."""


class ServerErrors:
    """What the app raised while it served, readable before, during and after the server's block.

    Exceptions are caught where they leave the app (an ASGI wrapper around it, so the app's own
    line is known and no log line is parsed) and filed under the request that caused them; what
    uvicorn logs at ERROR without an exception ("Application startup failed", a graceful shutdown
    that timed out) is filed too. Every request's end is recorded, so a caller can *wait* until
    the app is done with a request instead of sleeping and hoping the 500's exception is in.

    ``counts`` is ``"module.Type: message" -> n`` (the innermost exception of each chain), the
    shape notebooks read as ``server.errors``; ``where`` gives each text's line in the app.
    ``folder``: whose lines are "the app's own" (default: any file outside the standard library,
    installed packages and the course).
    """

    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        self.folder = folder
        self.counts: collections.Counter[str] = collections.Counter()
        self.where: dict[str, str] = {}
        self.entries: list[tuple[str | None, str]] = []  # (request id, "Type: message (app.py line N: code)")
        self._done: set[str] = set()
        self._callbacks: dict[str, list[Any]] = {}
        self._cond = threading.Condition()
        self.loop: Any = None  # the server's event loop, once the app has been called

    # filing ---------------------------------------------------------------------------------------
    def add_exception(self, exc: BaseException, request_id: str | None = None) -> None:
        from course.tracebacks import exception_line, innermost, where

        inner = innermost(exc)
        key = f"{type(inner).__module__}.{type(inner).__qualname__}: {inner}"
        line = exception_line(exc, self.folder)
        place = where(exc, self.folder)
        with self._cond:
            self.counts[key] += 1
            if place:
                self.where.setdefault(key, place)
            self.entries.append((request_id, line))
            self._cond.notify_all()

    def add_message(self, text: str, request_id: str | None = None) -> None:
        with self._cond:
            self.counts[text] += 1
            self.entries.append((request_id, text))
            self._cond.notify_all()

    def request_done(self, request_id: str) -> None:
        with self._cond:
            self._done.add(request_id)
            callbacks = self._callbacks.pop(request_id, [])
            self._cond.notify_all()
        for callback in callbacks:
            callback()

    def when_done(self, request_id: str, callback: Any) -> None:
        """Call ``callback()`` (from the server's thread) once the app is done with the request."""
        with self._cond:
            if request_id not in self._done:
                self._callbacks.setdefault(request_id, []).append(callback)
                return
        callback()

    # reading --------------------------------------------------------------------------------------
    def mark(self) -> int:
        """A point in time: pass it to :meth:`since`."""
        with self._cond:
            return len(self.entries)

    def since(self, mark: int = 0) -> list[str]:
        """Everything filed after ``mark``, in order (with the app's line)."""
        with self._cond:
            return [text for _, text in self.entries[mark:]]

    def for_request(self, request_id: str) -> list[str]:
        with self._cond:
            return [text for rid, text in self.entries if rid == request_id]

    def wait_done(self, request_id: str, timeout: float = 2.0) -> bool:
        """Wait until the app has finished the request (its exception, if any, is filed by then):
        after a 500 the client can have its answer before the exception has left the app."""
        with self._cond:
            return self._cond.wait_for(lambda: request_id in self._done, timeout)

    def describe(self, since: collections.Counter | None = None) -> str:
        """The exceptions (those after ``since``, a copy of ``counts``), each with the app's line."""
        with self._cond:
            new = self.counts - (since or collections.Counter())
            return "; ".join(f"{text}" + (f" ({self.where[text]})" if text in self.where else "")
                             + (f" x{n}" if n > 1 else "") for text, n in new.items())


class _Recording:
    """The ASGI wrapper that files what leaves the app in a :class:`ServerErrors`."""

    def __init__(self, app: Any, errors: ServerErrors) -> None:
        self.app, self.errors = app, errors

    def __getattr__(self, name: str) -> Any:  # app.state, app.routes, ... of the wrapped app
        return getattr(self.app, name)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        import asyncio

        self.errors.loop = asyncio.get_running_loop()
        request_id = None
        if scope.get("type") == "http":
            header = REQUEST_HEADER.encode()
            request_id = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == header), None)
        try:
            await self.app(scope, receive, send)
        except BaseException as exc:
            self.errors.add_exception(exc, request_id)
            raise
        finally:
            if request_id is not None:
                self.errors.request_done(request_id)


class _LoggedErrors(logging.Handler):
    """uvicorn's ERROR lines that carry no exception of the app's (those arrive through the wrapper)."""

    def __init__(self, thread_name: str, errors: ServerErrors) -> None:
        super().__init__(level=logging.ERROR)
        self.thread_name, self.errors = thread_name, errors  # only this server's thread: two may run at once

    def emit(self, record: logging.LogRecord) -> None:
        if record.threadName != self.thread_name or record.exc_info:
            return
        text = record.getMessage()
        if "Traceback (most recent call last)" in text:  # a failed lifespan, already filed as an exception
            return
        self.errors.add_message(text)


@dataclass
class ThreadServer:
    """A running in-thread server. ``url`` is its base URL."""

    url: str
    port: int
    server: Any
    thread: threading.Thread
    errors: collections.Counter = field(default_factory=collections.Counter)
    """Exceptions the app raised while serving, as ``"module.Type: message" -> count``, counted
    when they leave the app (the server's :class:`ServerErrors` can wait for a request's)."""
    error_lines: dict = field(default_factory=dict)
    """For each of ``errors``: the app's own line where it was raised (``"app.py line 42: ..."``)."""
    recorded: ServerErrors | None = None
    """Everything filed, by request (see :class:`ServerErrors`)."""

    def describe_errors(self, since: collections.Counter | None = None) -> str:
        """The server's exceptions (those after ``since``), each with the app's line: for a Got line."""
        return self.recorded.describe(since) if self.recorded else ""


@contextlib.contextmanager
def serve_in_thread(
    app: Any,
    *,
    log_level: str = "warning",
    ready_timeout: float = 10.0,
    stop_timeout: float = 10.0,
    quiet_errors: bool = True,
    errors: ServerErrors | None = None,
    **config: Any,
) -> Iterator[ThreadServer]:
    """Serve ``app`` with uvicorn in a background thread on 127.0.0.1 and a free port.

    The app's lifespan runs (startup before the block, shutdown after it). Exceptions the
    app raises are collected in ``server.errors``; with ``quiet_errors`` their tracebacks are
    not printed (the notebook shows the collected texts instead). Pass your own ``errors`` to
    read them also when startup fails (the block is never entered then) or after the block.
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # log_config=None: uvicorn must not reconfigure logging (its dictConfig would drop our collector
    # and, in a notebook, the kernel's own handlers).
    config.setdefault("log_config", None)
    recorded = errors if errors is not None else ServerErrors()
    cfg = uvicorn.Config(_Recording(app, recorded), host="127.0.0.1", port=port, log_level=log_level,
                         lifespan="on", **config)
    server = uvicorn.Server(cfg)
    # uvicorn (re)configures logging in Config(); attach the collector afterwards.
    thread_name = f"uvicorn-{port}"
    collector = _LoggedErrors(thread_name, recorded)
    err_logger = logging.getLogger("uvicorn.error")
    # Other servers' collectors stay attached (each only counts its own thread's records).
    saved_propagate = err_logger.propagate
    saved_handlers = [h for h in err_logger.handlers if not isinstance(h, _LoggedErrors)]
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
                logged = "; ".join(recorded.since())
                raise RuntimeError(
                    f"uvicorn did not start: {failure[0]!r}" if failure else "uvicorn stopped during startup: "
                    + (logged or "did the app's lifespan raise? see the log above")
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"the app did not finish its startup within {ready_timeout:g} s "
                                   "(the lifespan never reached its yield)")
            time.sleep(0.005)
        yield ThreadServer(url=f"http://127.0.0.1:{port}", port=port, server=server, thread=thread,
                           errors=recorded.counts, error_lines=recorded.where, recorded=recorded)
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
        stop_tree(proc, timeout=stop_timeout)
        with contextlib.suppress(NameError):
            server._final_log = log_path.read_text(errors="replace")
        log_path.unlink(missing_ok=True)
