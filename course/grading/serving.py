"""The serving stage every driver shares: the learner's app under a real uvicorn, requests
recorded as one typed answer record, and a stop the way production stops a server.

    with d.serve(module.app) as svc:                      # startup is a stage, shutdown is a stage
        with d.stage("requests", limit=30, doing="answering the checks' requests"):
            d.report["get"] = await svc.send("GET", "/users/1")
            d.report["together"] = await svc.together(svc.send(...), svc.send(...))

The app runs in a thread of the driver (so the driver's counters see inside it). Each request
carries a header naming it; the server files what the app raised under that name, and the record
waits until the app is done with the request, so the server's error belongs to its request even
when requests run at once, and nothing sleeps in the hope that a log line has arrived.

Stopping: the stage sends SIGTERM (or SIGINT) to the server the way the signal handler does, and
records whether it exits by itself within a few seconds, and which threads of the learner's code
would still keep the process alive afterwards. ``nothing_left_running`` turns that into the
expectation every suite ends with.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json as jsonlib
import signal as signals
import sys
import threading
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Iterator

if TYPE_CHECKING:
    from course.grading.checking import Driver
    from course.server import ServerErrors, ThreadServer

__all__ = ["Answer", "Service", "serve", "STOP_WITHIN"]

STOP_WITHIN = 5.0   # seconds a server may take to stop after SIGTERM (uvicorn itself needs about 0.2 s)
CLIENT_TIMEOUT = 10.0
BODY_CHARS = 400
_NOTHING = object()


@dataclass
class Answer:
    """One request and what came back: the one record every check reads."""

    request: str            # as the learner reads it: 'PATCH /users/1 {"city": "Lyon"}'
    status: int | None      # None: no answer (see body)
    body: str               # the start of the body, or why there was no answer
    json: Any = None        # the parsed body (None when it is not JSON)
    seconds: float = 0.0
    server_error: str = ""  # what the app raised while it handled this request, with the app's line
    headers: dict[str, str] = field(default_factory=dict)  # the response's headers, names in lower case

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _shown(method: str, path: str, params: Any, body: Any, content: Any, files: Any) -> str:
    text = f"{method} {path}"
    if params:
        text += "?" + "&".join(f"{k}={v}" for k, v in dict(params).items())
    if body is not _NOTHING:
        text += " " + jsonlib.dumps(body)
    elif content is not None:
        raw = content if isinstance(content, str) else bytes(content).decode("utf-8", "replace")
        text += " " + (raw if len(raw) <= 120 else raw[:117] + "...")
    elif files:
        text += " (a file upload)"
    return text


_SSL: Any = None


def _ssl_context() -> Any:
    """One TLS context for every client the recorder builds: httpx loads the CA bundle for each new
    client (15-130 ms of CPU on a busy machine), and the app is plain http on 127.0.0.1 anyway."""
    global _SSL
    if _SSL is None:
        import ssl

        _SSL = ssl.create_default_context()
    return _SSL


class Service:
    """The app being served: its ``url``, the recorder (:meth:`send`) and the server's errors."""

    def __init__(self, server: "ThreadServer", errors: "ServerErrors") -> None:
        self.server, self.errors, self.url = server, errors, server.url
        self._client: Any = None

    # requests ---------------------------------------------------------------------------------------
    def _prepare(self, method: str, path: str, json: Any, content: Any, headers: Any, params: Any, files: Any,
                 data: Any, show: str | None) -> tuple[str, str, dict]:
        from course.server import REQUEST_HEADER

        rid = uuid.uuid4().hex[:12]
        kwargs: dict[str, Any] = {"headers": {**(headers or {}), REQUEST_HEADER: rid}}
        if json is not _NOTHING:
            # json.dumps, not httpx's json=: NaN and Infinity are sent as JavaScript writes them.
            kwargs["content"] = jsonlib.dumps(json)
            kwargs["headers"].setdefault("content-type", "application/json")
        elif content is not None:
            kwargs["content"] = content
        for key, value in (("params", params), ("files", files), ("data", data)):
            if value is not None:
                kwargs[key] = value
        return rid, show or _shown(method, path, params, json, content, files), kwargs

    def _finish(self, rid: str, shown: str, seconds: float, response: Any, exc: BaseException | None) -> dict:
        seconds = round(seconds, 3)
        if exc is not None:
            answer = Answer(shown, None, f"no answer: {type(exc).__name__}: {exc}"[:BODY_CHARS], seconds=seconds)
        else:
            try:
                parsed = response.json()
            except ValueError:
                parsed = None
            answer = Answer(shown, response.status_code, response.text[:BODY_CHARS], parsed, seconds,
                            headers={k.lower(): v for k, v in response.headers.items()})
        answer.server_error = "; ".join(self.errors.for_request(rid))
        return answer.as_dict()

    async def send(self, method: str, path: str, *, json: Any = _NOTHING, content: Any = None,
                   headers: dict | None = None, params: Any = None, files: Any = None, data: Any = None,
                   show: str | None = None, timeout: float = CLIENT_TIMEOUT) -> dict:
        """Send one request on a fresh connection and return its :class:`Answer` as a dict. A
        failure is the request's answer, never raised, so one broken request hides no other."""
        import httpx

        rid, shown, kwargs = self._prepare(method, path, json, content, headers, params, files, data, show)
        loop, done = asyncio.get_running_loop(), asyncio.Event()
        self.errors.when_done(rid, lambda: loop.call_soon_threadsafe(done.set))
        start, response, error = time.perf_counter(), None, None
        try:
            # A fresh connection per request: after a 500 uvicorn closes the connection, and a kept-alive
            # one would turn the next request's answer into a ReadError.
            async with httpx.AsyncClient(base_url=self.url, timeout=timeout, verify=_ssl_context(),
                                         limits=httpx.Limits(max_keepalive_connections=0)) as client:
                response = await client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            error = exc
        # The client's time to its answer, not to the end of the app's work for it (a BackgroundTasks job
        # runs after the response, inside the app's call: waited for below, not timed).
        seconds = time.perf_counter() - start
        # The app may still be running after the client has its answer (uvicorn sends a 500 before the
        # exception leaves the app): wait until it is done with this request.
        with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
            await asyncio.wait_for(done.wait(), 2.0 if error is None else 0.5)
        return self._finish(rid, shown, seconds, response, error)

    def send_sync(self, method: str, path: str, *, json: Any = _NOTHING, content: Any = None,
                  headers: dict | None = None, params: Any = None, files: Any = None, data: Any = None,
                  show: str | None = None, timeout: float = CLIENT_TIMEOUT) -> dict:
        """:meth:`send` for a driver without an event loop of its own."""
        import httpx

        rid, shown, kwargs = self._prepare(method, path, json, content, headers, params, files, data, show)
        start, response, error = time.perf_counter(), None, None
        try:
            with httpx.Client(base_url=self.url, timeout=timeout, verify=_ssl_context(),
                              limits=httpx.Limits(max_keepalive_connections=0)) as client:
                response = client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            error = exc
        seconds = time.perf_counter() - start
        self.errors.wait_done(rid, 2.0 if error is None else 0.5)
        return self._finish(rid, shown, seconds, response, error)

    @staticmethod
    async def together(*requests: Awaitable[dict]) -> list[dict]:
        """Requests sent at the same moment (each a :meth:`send` not yet awaited), answers in order."""
        return list(await asyncio.gather(*requests))

    # the server's errors outside recorded requests (bursts) -------------------------------------------
    def mark(self) -> int:
        return self.errors.mark()

    def errors_since(self, mark: int) -> str:
        """What the app raised since ``mark``, each text once with its count: ``"... (app.py line 9) x3"``."""
        counts = collections.Counter(self.errors.since(mark))
        return "; ".join(text + (f" x{n}" if n > 1 else "") for text, n in counts.items())


# --- starting and stopping -------------------------------------------------------------------------------

def _learner_threads(d: "Driver", deadline: float) -> list[dict]:
    """Threads that would keep the process alive after the server stopped: alive, not daemon, and
    not there before the learner's code was imported (the driver's own are named or daemon)."""
    candidates = [t for t in threading.enumerate()
                  if t is not threading.main_thread() and not t.daemon and t.ident not in d.threads_before
                  and not t.name.startswith("asyncio_")]  # the driver's own loop's executor
    for t in candidates:
        t.join(max(0.0, deadline - time.monotonic()))
    return [{"name": t.name, "started_at": d.thread_starts.get(t.ident, "")} for t in candidates if t.is_alive()]


def _stuck_at(loop: Any, target: Path) -> str:
    """Where the server's loop is waiting in the learner's code (a task's innermost learner frame)."""
    if loop is None:
        return ""
    base = str(target) + "/"
    places = []
    with contextlib.suppress(Exception):
        for task in list(asyncio.all_tasks(loop)):
            frames = [f for f in task.get_stack() if f.f_code.co_filename.startswith(base)]
            if frames:
                f = frames[-1]
                line = traceback.extract_stack(f, limit=1)[-1]
                places.append(f"{Path(line.filename).name} line {line.lineno}: {(line.line or '').strip()}")
    return "; ".join(dict.fromkeys(places))


@contextlib.contextmanager
def serve(d: "Driver", app: Any, *, label: str = "the app", startup_limit: float = 10, signal: str = "SIGTERM",
          within: float = STOP_WITHIN, hint: str | None = None, **server_kwargs: Any) -> Iterator[Service]:
    """Startup (a stage, with ``hint`` when it fails), the block, then a stop by ``signal`` (a stage).
    Recorded in ``d.report["stops"]``: ``{"label", "signal", "exited", "seconds", "within", "threads",
    "stuck_at", "errors"}``."""
    from course.grading.checking import DriverError
    from course.server import ServerErrors, serve_in_thread

    errors = ServerErrors(d.target)
    stack = contextlib.ExitStack()
    server_kwargs.setdefault("timeout_graceful_shutdown", 2)
    server_kwargs.setdefault("ready_timeout", max(1.0, startup_limit - 2))
    hint = hint or "run `uvicorn app:app` in your folder: the lifespan must reach its yield without an error."
    with d.stage("startup", limit=startup_limit, doing=f"starting {label} (the lifespan, up to its yield)", hint=hint):
        try:
            server = stack.enter_context(serve_in_thread(app, errors=errors, stop_timeout=1, **server_kwargs))
        except (RuntimeError, TimeoutError) as exc:
            logged = errors.since()
            if logged:  # the lifespan raised: say where, not how uvicorn reported it
                raise DriverError(logged[0], hint=hint) from None
            raise DriverError(str(exc).splitlines()[0][:300], hint=hint) from None
    try:
        yield Service(server, errors)
    finally:
        with d.stage("shutdown", limit=within + 8, doing=f"stopping {label} ({signal}: the lifespan after its yield)"):
            mark, start = errors.mark(), time.monotonic()
            server.server.handle_exit(getattr(signals, signal), None)  # what uvicorn's signal handler does
            server.thread.join(within)
            exited = not server.thread.is_alive()
            seconds = round(time.monotonic() - start, 2)
            stop = {"label": label, "signal": signal, "exited": exited, "seconds": seconds, "within": within,
                    "stuck_at": "" if exited else _stuck_at(errors.loop, d.target),
                    "threads": _learner_threads(d, start + within) if exited else []}
            if not exited:
                server.server.force_exit = True
            with contextlib.suppress(RuntimeError):
                stack.close()
            stop["errors"] = errors.since(mark)
            d.report.setdefault("stops", []).append(stop)


def record_thread_starts(d: "Driver") -> None:
    """Remember, for each thread started from now on, the learner's line that started it."""
    original = threading.Thread.start
    base = str(d.target) + "/"

    def start(self: threading.Thread) -> None:
        original(self)
        frames = [f for f in traceback.extract_stack(sys._getframe(1)) if f.filename.startswith(base)]
        if frames:
            f = frames[-1]
            d.thread_starts[self.ident] = f"{Path(f.filename).name} line {f.lineno}: {(f.line or '').strip()}"

    threading.Thread.start = start  # type: ignore[method-assign]
