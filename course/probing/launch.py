"""The app's side of ``course probe``: import the app, watch it, serve it, say what it left behind.

    python -m course.probing.launch MODULE:APP --ready READY.json --report REPORT.json
                                    [--app-dir DIR] [--factory] [--read-only]

This process is the production server: uvicorn on 127.0.0.1 (a port the OS picks), stopped with
SIGTERM. Before the app is imported it installs the course's counters, each stage-aware (import,
startup, serving, a request, shutdown):

* engines: ``create_engine`` / ``create_async_engine`` wrapped, each engine counted with
  course.probes.ConnectionCounter (module 01's driver does the same);
* HTTP clients: ``httpx.Client`` / ``httpx.AsyncClient`` recorded when built and when closed;
* settings: every ``pydantic_settings.BaseSettings`` object built;
* threads, child processes, TCP connections and open files: before and after the import, and
  after the shutdown (psutil, /proc);
* the event loop's lag: course.blocking.LagProbe around the app;
* exceptions leaving the app, filed per request with the app's own line (course.server.ServerErrors),
  and whether the response had already been sent;
* asyncio tasks still running when the lifespan's shutdown is over.

The probe (course.probing.run) talks to it through ``/__course_probe__/...``, answered by the wrapper
before the app sees the request (the app's routes and schema are untouched):

    GET /__course_probe__/info                 {"files": the app's own .py files, "clock": now}
    GET /__course_probe__/mark                 {"clock": now, "errors": a mark for /window}
    GET /__course_probe__/window?since=&until=&errors=
                                               {"max_lag", "blocked", "samples", "errors": [text]}
    GET /__course_probe__/request?id=          {"errors": [text], "done": bool}: what the request
                                               with header x-course-request: ID raised

READY.json is written once the port is bound (``{"port", "pid"}``); REPORT.json when the server
has stopped (or could not start), then the process exits at once (``os._exit``: a thread the app
left running would otherwise keep it alive, which the report names).

With ``--read-only`` every method but GET, HEAD and OPTIONS is answered 405 before the app sees it:
nothing the probe (or schemathesis, which also tries methods the schema does not list) sends writes.

Report keys: ``error`` (None, or ``{"stage", "message"}``: the import or the startup failed),
``files``, ``import`` (engines, clients, settings, threads, processes and connections created while
the app was imported), ``serving`` (engines, clients and settings built later, each with its stage:
startup, serving, request), ``after_shutdown`` (connections still open per engine, unclosed clients,
non-daemon threads, child processes, TCP connections, files opened since the import, pending
tasks), ``lifespan_errors``, ``after_response`` (``[{"text", "background"}]``: exceptions raised after a
complete non-5xx answer; ``background``: in a BackgroundTasks task).
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import importlib
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
import weakref
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

CONTROL = "/__course_probe__/"
READ_ONLY = ("GET", "HEAD", "OPTIONS")
REQUEST_HEADER = b"x-course-request"

_IN_REQUEST: contextvars.ContextVar[bool] = contextvars.ContextVar("course_probe_in_request", default=False)


class Watch:
    """Everything the counters saw, and the stage the app is in."""

    def __init__(self, app_dir: Path) -> None:
        self.app_dir = str(app_dir.resolve()) + os.sep
        self.stage = "import"
        self.engines: list[dict] = []
        self.clients: dict[int, dict] = {}
        self.settings: list[dict] = []
        self.threads: "weakref.WeakKeyDictionary[threading.Thread, dict]" = weakref.WeakKeyDictionary()
        self.pending_tasks: list[str] = []
        self.lifespan_errors: list[dict] = []
        self.after_response: list[str] = []
        self.startup_failed: str | None = None

    def now(self) -> str:
        return "request" if _IN_REQUEST.get() else self.stage

    def where(self) -> str | None:
        """The app's own line that is running now (the innermost frame under the app's folder)."""
        for frame in reversed(traceback.extract_stack()[:-2]):
            path = os.path.abspath(frame.filename)
            if path.startswith(self.app_dir) and not _installed(path):
                return f"{os.path.relpath(path, self.app_dir)} line {frame.lineno}: {(frame.line or '').strip()}"
        return None


_COURSE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _installed(path: str) -> bool:
    """A library's file or the course's own, never the app's (even when the app's folder holds them)."""
    return path.startswith(_COURSE) or any(part in ("site-packages", "dist-packages", ".venv", "venv")
                                           for part in Path(path).parts)


# --- the counters --------------------------------------------------------------------------------

def watch_engines(w: Watch) -> None:
    try:
        import sqlalchemy
        import sqlalchemy.engine
        import sqlalchemy.engine.create
        import sqlalchemy.ext.asyncio
        import sqlalchemy.ext.asyncio.engine
    except ImportError:
        return
    from course.probes import ConnectionCounter

    def wrap(original):
        def create(*args, **kwargs):
            engine = original(*args, **kwargs)
            url = getattr(engine, "url", None)
            pool = getattr(getattr(engine, "sync_engine", engine), "pool", None)
            w.engines.append({"stage": w.now(), "where": w.where(), "counter": ConnectionCounter(engine),
                              "url": url.render_as_string(hide_password=True) if url is not None else "?",
                              "pool": type(pool).__name__})
            return engine
        create.__wrapped__ = original
        return create

    sync_create = wrap(sqlalchemy.engine.create.create_engine)
    for module in (sqlalchemy, sqlalchemy.engine, sqlalchemy.engine.create):
        module.create_engine = sync_create
    async_create = wrap(sqlalchemy.ext.asyncio.engine.create_async_engine)
    for module in (sqlalchemy.ext.asyncio, sqlalchemy.ext.asyncio.engine):
        module.create_async_engine = async_create


def watch_clients(w: Watch) -> None:
    try:
        import httpx
    except ImportError:
        return
    for cls in (httpx.Client, httpx.AsyncClient):
        original_init = cls.__init__

        def __init__(self, *args, _original=original_init, _kind=cls.__name__, **kwargs):
            _original(self, *args, **kwargs)
            w.clients[id(self)] = {"kind": _kind, "stage": w.now(), "where": w.where(), "closed": False,
                                   "ref": weakref.ref(self)}

        cls.__init__ = __init__
        for name in ("close", "__exit__", "aclose", "__aexit__"):
            original = cls.__dict__.get(name)
            if original is None:
                continue
            if asyncio.iscoroutinefunction(original):
                async def closing(self, *args, _original=original, **kwargs):
                    _mark_closed(w, self)
                    return await _original(self, *args, **kwargs)
            else:
                def closing(self, *args, _original=original, **kwargs):
                    _mark_closed(w, self)
                    return _original(self, *args, **kwargs)
            setattr(cls, name, closing)


def _mark_closed(w: Watch, client: Any) -> None:
    record = w.clients.get(id(client))
    if record is not None and record["ref"]() is client:
        record["closed"] = True


def watch_settings(w: Watch) -> None:
    try:
        from pydantic_settings import BaseSettings
    except ImportError:
        return
    original = BaseSettings.__init__

    def __init__(self, *args, **kwargs):
        w.settings.append({"stage": w.now(), "where": w.where(), "class": type(self).__name__})
        original(self, *args, **kwargs)

    BaseSettings.__init__ = __init__


def watch_threads(w: Watch) -> None:
    original = threading.Thread.start

    def start(self, *args, **kwargs):
        w.threads[self] = {"stage": w.now(), "where": w.where()}
        return original(self, *args, **kwargs)

    threading.Thread.start = start


# --- snapshots -----------------------------------------------------------------------------------

def _process():
    import psutil

    return psutil.Process()


def connections() -> set[tuple]:
    """This process's TCP connections: (status, local, remote)."""
    found = set()
    for c in _process().net_connections(kind="tcp"):
        local = f"{c.laddr.ip}:{c.laddr.port}" if c.laddr else ""
        remote = f"{c.raddr.ip}:{c.raddr.port}" if c.raddr else ""
        found.add((c.status, local, remote))
    return found


# multiprocessing's resource tracker (started with the first "spawn" or "forkserver" pool) and its fork
# server serve the interpreter, not the app: they exit with this process, whatever the app does.
INTERPRETER_HELPERS = ("from multiprocessing.resource_tracker import main", "from multiprocessing.forkserver import main")


def children() -> dict[int, str]:
    found = {}
    for child in _process().children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())
            if child.status() != "zombie" and not any(helper in cmd for helper in INTERPRETER_HELPERS):
                found[child.pid] = cmd[:200] or child.name()
        except Exception:  # noqa: BLE001 - gone meanwhile
            continue
    return found


def open_files() -> set[str]:
    skip = (sys.prefix, sys.base_prefix, "/proc", "/dev", "/sys")
    return {f.path for f in _process().open_files() if not f.path.startswith(skip)}


def describe_thread(t: threading.Thread, w: Watch) -> dict:
    info = w.threads.get(t, {})
    target = getattr(t, "_target", None)
    runs = getattr(target, "__qualname__", None) or type(t).__qualname__
    module = getattr(target, "__module__", None) or type(t).__module__
    return {"name": t.name, "daemon": t.daemon, "runs": f"{module}.{runs}", "stage": info.get("stage", "?"),
            "where": info.get("where")}


def created(records: list[dict], stage: str) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("counter", "ref")} for r in records if r["stage"] == stage]


def app_files(app_dir: str) -> list[str]:
    """The app's own source files: every imported module that lives under the app's folder."""
    files = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and path.endswith(".py"):
            path = os.path.abspath(path)
            if path.startswith(app_dir) and not _installed(path):
                files.add(path)
    return sorted(files)


def _chain(exc: BaseException) -> list[BaseException]:
    chain, seen = [exc], {id(exc)}
    while (nxt := chain[-1].__cause__ or chain[-1].__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        chain.append(nxt)
    return chain


def raised(exc: BaseException, folder: str) -> str:
    """What the app raised, as course.tracebacks writes it, and when the exception that left the app
    was raised while handling another one (an exception handler that failed), both: the one that
    left first, the one it handled after."""
    from course.tracebacks import exception_line, innermost

    inner = innermost(exc)
    if inner is exc or exc.__cause__ is not None or exc.__suppress_context__:
        return exception_line(exc, folder)
    handled = " / ".join(line.strip() for line in str(inner).splitlines()[:2] if line.strip())[:200]
    return f"{exception_line(exc, folder, inner=False, limit=200)}, raised while handling " \
           f"{type(inner).__name__}: {handled}"


# --- the wrapper ---------------------------------------------------------------------------------

class ProbeApp:
    """Serves the control paths, tracks the lifespan's stages and files what leaves the app."""

    def __init__(self, app: Any, w: Watch, lag: Any, errors: Any, files: list[str], read_only: bool = False) -> None:
        self.app, self.w, self.lag, self.errors, self.files = app, w, lag, errors, files
        self.read_only = read_only
        self.tasks_before: set = set()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(scope, receive, send)
        elif scope["type"] == "http" and scope["path"].startswith(CONTROL):
            await self.control(scope, send)
        elif scope["type"] == "http" and self.read_only and scope["method"] not in READ_ONLY:
            # Without --allow-writes nothing that writes reaches the app (schemathesis' coverage
            # phase also tries methods the schema does not list).
            await self.respond(send, {"detail": "course probe is read-only (--allow-writes)"}, status=405)
        elif scope["type"] == "http":
            await self.http(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def http(self, scope: dict, receive: Any, send: Any) -> None:
        request_id = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == REQUEST_HEADER), None)
        sent = {"status": None, "complete": False}

        async def watched_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                sent["complete"] = True
            await send(message)

        token = _IN_REQUEST.set(True)
        try:
            await self.app(scope, receive, watched_send)
        except BaseException as exc:
            text = raised(exc, self.w.app_dir)
            self.errors.add_message(text, request_id)
            if sent["complete"] and (sent["status"] or 500) < 500:
                # a BackgroundTasks task, or the exit code of a dependency with scope="request"
                background = any(f.filename.endswith(os.path.join("starlette", "background.py"))
                                 for e in _chain(exc) for f in traceback.extract_tb(e.__traceback__))
                self.after_response({"text": f"{scope['method']} {scope['path']} answered {sent['status']}, "
                                             f"then raised {text}", "background": background})
            raise
        finally:
            _IN_REQUEST.reset(token)
            if request_id is not None:
                self.errors.request_done(request_id)

    def after_response(self, record: dict) -> None:
        if record not in self.w.after_response:
            self.w.after_response.append(record)

    async def lifespan(self, scope: dict, receive: Any, send: Any) -> None:
        from course.tracebacks import exception_line

        w = self.w

        async def watched_receive() -> dict:
            message = await receive()
            if message["type"] == "lifespan.startup":
                w.stage = "startup"
                self.tasks_before = set(asyncio.all_tasks())
            elif message["type"] == "lifespan.shutdown":
                w.stage = "shutdown"
            return message

        async def watched_send(message: dict) -> None:
            if message["type"] == "lifespan.startup.complete":
                w.stage = "serving"
            elif message["type"] == "lifespan.startup.failed":
                w.startup_failed = message.get("message") or "the lifespan's startup failed"
            elif message["type"] == "lifespan.shutdown.complete":
                self.record_pending_tasks()
            elif message["type"] == "lifespan.shutdown.failed":
                w.lifespan_errors.append({"stage": "shutdown", "message": message.get("message", "")[-2000:]})
            await send(message)

        try:
            await self.app(scope, watched_receive, watched_send)
        except BaseException as exc:
            w.lifespan_errors.append({"stage": w.stage, "message": exception_line(exc, w.app_dir)})
            raise

    def record_pending_tasks(self) -> None:
        current = asyncio.current_task()
        for task in asyncio.all_tasks():
            if task is current or task in self.tasks_before or task.done() or task.get_name() == "course-lag-probe":
                continue
            coro = task.get_coro()
            code = getattr(coro, "cr_code", None)
            frame = getattr(coro, "cr_frame", None)
            where = f"{code.co_qualname} ({os.path.basename(code.co_filename)} line " \
                    f"{frame.f_lineno if frame else code.co_firstlineno})" if code else repr(coro)
            self.w.pending_tasks.append(f"{task.get_name()}: {where}")

    async def control(self, scope: dict, send: Any) -> None:
        query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
        what = scope["path"][len(CONTROL):]
        if what == "info":
            body = {"files": self.files, "clock": time.perf_counter(), "pid": os.getpid()}
        elif what == "mark":
            body = {"clock": time.perf_counter(), "errors": self.errors.mark()}
        elif what == "window":
            since = float(query["since"]) if "since" in query else None
            until = float(query["until"]) if "until" in query else None
            samples = self.lag.window(since, until)
            body = {"max_lag": max((lag for _, lag in samples), default=0.0),
                    "blocked": sum(lag for _, lag in samples if lag > 0.05), "samples": len(samples),
                    "errors": self.errors.since(int(query.get("errors", 0)))}
        elif what == "request":
            rid = query.get("id", "")
            done = await asyncio.to_thread(self.errors.wait_done, rid, 3.0)
            body = {"errors": self.errors.for_request(rid), "done": done}
        else:
            body = {"error": f"unknown control path {what!r}"}
        await self.respond(send, body)

    @staticmethod
    async def respond(send: Any, body: dict, status: int = 200) -> None:
        data = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})


# --- main ----------------------------------------------------------------------------------------

def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, default=str))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m course.probing.launch")
    parser.add_argument("target")
    parser.add_argument("--ready", required=True, type=Path)
    parser.add_argument("--report", required=True, type=Path)
    parser.add_argument("--app-dir", default=".", type=Path)
    parser.add_argument("--factory", action="store_true")
    parser.add_argument("--graceful", type=float, default=5.0)
    parser.add_argument("--read-only", action="store_true",
                        help="answer 405 to every method but GET, HEAD and OPTIONS before the app sees it")
    args = parser.parse_args(argv)

    # uvicorn re-raises the SIGTERM it caught once it has shut down: it must not end us before the report.
    signal.signal(signal.SIGTERM, lambda *_: None)

    app_dir = args.app_dir.resolve()
    w = Watch(app_dir)
    report: dict[str, Any] = {"error": None}
    threads_before = set(threading.enumerate())
    conns_before = connections()
    children_before = children()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    write_json(args.ready, {"port": sock.getsockname()[1], "pid": os.getpid()})

    def finish(code: int) -> None:
        write_json(args.report, report)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    watch_engines(w)
    watch_clients(w)
    watch_settings(w)
    watch_threads(w)
    conns_before |= connections()  # what importing the libraries above opened is not the app's

    from course.blocking import LagProbe
    from course.server import ServerErrors
    from course.tracebacks import exception_line

    sys.path.insert(0, str(app_dir))
    module_name, _, attr = args.target.partition(":")
    step = f"importing {module_name}"
    try:
        app = importlib.import_module(module_name)
        step = f"finding {attr or 'app'} in {module_name}"
        for part in (attr or "app").split("."):
            app = getattr(app, part)
        if args.factory:
            step = f"calling {attr}()"
            app = app()
    except BaseException as exc:  # noqa: BLE001 - reported
        report["error"] = {"stage": "import", "message": f"{step}: " + exception_line(exc, app_dir)}
        finish(3)
        return

    files = app_files(w.app_dir)
    report["files"] = files
    report["import"] = {
        "engines": created(w.engines, "import"),
        "clients": created(list(w.clients.values()), "import"),
        "settings": created(w.settings, "import"),
        "threads": [describe_thread(t, w) for t in threading.enumerate() if t not in threads_before and t.is_alive()],
        "processes": [{"pid": pid, "cmd": cmd} for pid, cmd in children().items() if pid not in children_before],
        "connections": [list(c) for c in connections() - conns_before],
    }
    files_after_import = open_files()

    import uvicorn

    errors = ServerErrors(folder=app_dir)
    lag = LagProbe(app, interval=0.01)
    wrapped = ProbeApp(lag, w, lag, errors, files, read_only=args.read_only)
    config = uvicorn.Config(wrapped, host="127.0.0.1", log_level="warning", lifespan="on",
                            timeout_graceful_shutdown=args.graceful, access_log=False)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except SystemExit:
        pass  # uvicorn's way of saying the startup failed: reported below
    except BaseException as exc:  # noqa: BLE001 - reported
        report["error"] = {"stage": w.stage, "message": exception_line(exc, app_dir)}
    w.stage = "stopped"
    if w.startup_failed is not None or not server.started:
        startup = [e["message"] for e in w.lifespan_errors if e["stage"] == "startup"]
        report["error"] = report["error"] or {
            "stage": "startup",
            "message": startup[0] if startup else (w.startup_failed or "the server did not start")[-2000:]}

    # Threads that stop by themselves once the loop is closed (anyio's workers) get a moment to do so.
    deadline = time.monotonic() + 2.0
    for t in threading.enumerate():
        if t is not threading.main_thread() and not t.daemon and t not in threads_before:
            t.join(max(0.0, deadline - time.monotonic()))

    engines_open = [{"stage": e["stage"], "where": e["where"], "url": e["url"], "pool": e["pool"],
                     "open": e["counter"].open, "opened": e["counter"].opened, "peak": e["counter"].peak}
                    for e in w.engines]
    report["serving"] = {
        "engines": created(w.engines, "startup") + created(w.engines, "serving") + created(w.engines, "request"),
        "clients": [r for stage in ("startup", "serving", "request") for r in created(list(w.clients.values()), stage)],
        "settings": [r for stage in ("startup", "serving", "request") for r in created(w.settings, stage)],
    }
    report["after_shutdown"] = {
        "engines": engines_open,
        "clients": [{k: v for k, v in r.items() if k != "ref"} for r in w.clients.values() if not r["closed"]],
        "threads": [describe_thread(t, w) for t in threading.enumerate()
                    if t is not threading.main_thread() and t.is_alive() and not t.daemon
                    and t not in threads_before],
        "processes": [{"pid": pid, "cmd": cmd} for pid, cmd in children().items() if pid not in children_before],
        "connections": [list(c) for c in connections() - conns_before if c[0] != "LISTEN"],
        "files": sorted(open_files() - files_after_import - {str(args.report), str(args.ready)}),
        "tasks": w.pending_tasks,
    }
    report["lifespan_errors"] = w.lifespan_errors
    report["after_response"] = w.after_response
    # What the app left running: stop it with us (the probe also stops the process group).
    for pid in report["after_shutdown"]["processes"]:
        try:
            os.kill(pid["pid"], signal.SIGKILL)
        except OSError:
            pass
    finish(0)


if __name__ == "__main__":
    main()
