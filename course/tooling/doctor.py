"""``course doctor``: is this machine ready for the course? One line per item, OK or what to do.

A learner runs it before a workshop, an instructor on the hub (as a test learner), a maintainer
before ``make test``. Every check runs at once (threads) and each has a short timeout, so the
whole takes well under 5 s; ``--full`` also starts JupyterLab for real (5 to 10 s on a busy
2-core machine).

    OK    the item is fine
    FIX   the course cannot work like this: the line says what to do (exit code 1)
    NOTE  optional: the line says what is skipped without it and how to get it

The services (PostgreSQL, Redis, RabbitMQ) are optional for a learner: without them the lesson
sections that need them print why and skip; the line names those sections (read from the
notebooks). Under ``COURSE_REQUIRE_SERVICES=1`` (CI) they are required. Each service's address can
be pointed elsewhere, to see what the doctor says when one is stopped without stopping it:
``COURSE_DOCTOR_POSTGRES=127.0.0.1:1 course doctor`` (also ``COURSE_DOCTOR_REDIS``,
``COURSE_DOCTOR_RABBITMQ``).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from course.manifest import ROOT

__all__ = ["Line", "run_checks", "main"]

SUPPORTED = ((3, 11), (3, 12), (3, 13))
MIN_FREE_GIB = 2.0  # the venv is ~0.5 GB; notebook 07 writes files of 100 MiB; pip's downloads
MIN_FILES = 1024  # bursts of 100 concurrent requests: a socket at each end, plus the pools' files
LAB_PORT = 8888
SERVICES = {  # name: (default address, env override, how to start it)
    "PostgreSQL": ("127.0.0.1:5432", "COURSE_DOCTOR_POSTGRES",
                   "start it (Debian/Ubuntu: sudo pg_ctlcluster <version> main start; user postgres, trust "
                   "authentication from 127.0.0.1)"),
    "Redis": ("127.0.0.1:6379", "COURSE_DOCTOR_REDIS", "start it (redis-server --daemonize yes --bind 127.0.0.1)"),
    "RabbitMQ": ("127.0.0.1:5672", "COURSE_DOCTOR_RABBITMQ",
                 "start it (sudo rabbitmq-server -detached; user guest/guest)"),
}
TIMEOUT = 1.5  # seconds for one service to answer


@dataclass
class Line:
    status: str  # OK, FIX, NOTE
    item: str
    text: str

    def __str__(self) -> str:
        return f"{self.status:<5} {self.item:<12} {self.text}"


def _address(name: str) -> tuple[str, int]:
    default, env, _ = SERVICES[name]
    host, _, port = os.environ.get(env, default).rpartition(":")
    return host or "127.0.0.1", int(port)


def check_python() -> Line:
    v = sys.version_info[:2]
    where = sys.executable
    if v in SUPPORTED:
        return Line("OK", "Python", f"{sys.version.split()[0]} ({where})")
    return Line("FIX", "Python", f"{sys.version.split()[0]} is not supported (3.11 to 3.13): install one and "
                                 f"run `make clean-venv && make lab PYTHON=/path/to/python3.13`")


def _pins() -> dict[str, str]:
    pins = {}
    for name in ("requirements.txt", "requirements-lock.txt"):
        path = ROOT / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            m = re.match(r"\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*==\s*([^\s;#]+)", line)
            if m:
                pins[m[1].lower().replace("_", "-")] = m[3]
    return pins


def check_venv() -> Line:
    from importlib.metadata import PackageNotFoundError, version

    pins = _pins()
    if not pins:
        return Line("FIX", "packages", "requirements.txt not found: run the doctor from the course's checkout")
    wrong = []
    for name, pinned in sorted(pins.items()):
        try:
            have = version(name)
        except PackageNotFoundError:
            wrong.append(f"{name} missing ({pinned} pinned)")
            continue
        if have != pinned:
            wrong.append(f"{name} {have} ({pinned} pinned)")
    try:
        import course

        own = Path(course.__file__).resolve().parents[1]
    except ImportError:  # pragma: no cover: the doctor itself is part of the course
        own = None
    if wrong:
        shown = ", ".join(wrong[:4]) + (f" and {len(wrong) - 4} more" if len(wrong) > 4 else "")
        return Line("FIX", "packages", f"{len(wrong)} of {len(pins)} differ from the lock: {shown}: run `make venv` "
                                       "(or `make clean-venv && make lab` to rebuild from the pins)")
    return Line("OK", "packages", f"all {len(pins)} pinned packages at their pinned versions; course from {own}")


def check_disk() -> Line:
    places = {str(ROOT): ROOT, "temporary folder": Path(tempfile.gettempdir())}
    low = []
    free = {}
    for label, path in places.items():
        gib = shutil.disk_usage(path).free / 2**30
        free[label] = gib
        if gib < MIN_FREE_GIB:
            low.append(f"{label} {path}: {gib:.1f} GiB free")
    if low:
        return Line("FIX", "disk", f"{'; '.join(low)}: the course needs {MIN_FREE_GIB:g} GiB (the venv, notebook 07's "
                                   "100 MiB files): free some space (pip cache: `pip cache purge`)")
    return Line("OK", "disk", ", ".join(f"{gib:.0f} GiB free in {label}" for label, gib in free.items()))


def check_lab(full: bool) -> Line:
    """JupyterLab is installed with its pages built and the kernel runs this Python; ``full``: start it."""
    # Importing jupyterlab takes seconds (it loads the whole server): read its metadata and files.
    import json
    from importlib.metadata import PackageNotFoundError, version

    try:
        lab_version = version("jupyterlab")
        version("jupyter_server")
        from jupyter_core.paths import jupyter_path
    except (PackageNotFoundError, ImportError) as exc:
        return Line("FIX", "JupyterLab", f"not installed ({exc}): run `make venv`")
    static = Path(sys.prefix) / "share" / "jupyter" / "lab" / "static" / "index.html"
    if not static.exists():
        return Line("FIX", "JupyterLab", f"its pages are missing ({static}): run `make clean-venv && make lab`")
    spec = next((Path(d) / "python3" / "kernel.json" for d in jupyter_path("kernels")
                 if (Path(d) / "python3" / "kernel.json").exists()), None)
    if spec is None:
        return Line("FIX", "JupyterLab", "no python3 kernel: run `make clean-venv && make lab`")
    argv0 = json.loads(spec.read_text())["argv"][0]
    # "python" means the Python that runs Jupyter (jupyter_client puts sys.executable in its place)
    kernel_python = sys.executable if re.fullmatch(r"python(\d(\.\d+)?)?", argv0) else argv0
    if Path(kernel_python).resolve() != Path(sys.executable).resolve():
        return Line("FIX", "JupyterLab", f"the python3 kernel ({spec}) runs {kernel_python}, not the course's "
                                         f"{sys.executable}: run `make clean-venv && make lab`")
    if not full:
        return Line("OK", "JupyterLab", f"{lab_version}, pages built, kernel python3 runs the course's "
                                        "Python (`course doctor --full` starts it)")
    return _start_lab(lab_version)


def _start_lab(version: str) -> Line:
    import secrets

    from course.processes import stop_tree
    from course.server import free_port
    from course.tooling import lab

    port, token = free_port(), secrets.token_hex(8)
    with tempfile.TemporaryDirectory(prefix="course-doctor-") as tmp:
        log_path = Path(tmp) / "lab.log"
        with log_path.open("w") as log:
            proc = lab.start(port=port, token=token, open_browser=False, log=log)
        start = time.perf_counter()
        try:
            lab.wait_ready(proc, f"http://127.0.0.1:{port}", token, log_path, timeout=60)
        except AssertionError as exc:
            return Line("FIX", "JupyterLab", f"did not start: {str(exc).splitlines()[0]} (full log: make lab)")
        finally:
            stop_tree(proc, timeout=10)
        return Line("OK", "JupyterLab", f"{version} started and answered in {time.perf_counter() - start:.1f} s")


def check_port() -> Line:
    """JupyterLab's default port, and an ephemeral port on 127.0.0.1 (every lesson server takes one)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", 0))
        except OSError as exc:
            return Line("FIX", "ports", f"cannot open a port on 127.0.0.1 ({exc}): the lessons' servers need "
                                        "the loopback interface")
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", LAB_PORT))
        except OSError:
            return Line("OK", "ports", f"{LAB_PORT} is taken (another JupyterLab? `ss -ltnp | grep {LAB_PORT}` says "
                                       "which): Lab takes the next free one, or `make lab LAB_ARGS=\"--port 8899\"`")
    return Line("OK", "ports", f"{LAB_PORT} free for JupyterLab; lesson servers can open ports on 127.0.0.1")


_sections_lock = threading.Lock()


@functools.cache
def _sections_needing() -> dict[str, list[str]]:
    from course.manifest import modules
    from course.pages.lessons import lesson

    where: dict[str, list[str]] = {name: [] for name in SERVICES}
    for m in modules():
        try:
            sections = lesson(m.notebook).sections
        except (OSError, ValueError):  # not written yet, or mid-edit: the others still count
            continue
        for s in sections:
            for name in s.services():
                where[name].append(f"{m.number} §{s.title.split(' · ')[0]}")
    return where


def _skipped_sections(name: str) -> str:
    """Which lesson sections need the service (read from the notebooks' code, once)."""
    try:
        with _sections_lock:
            return ", ".join(_sections_needing()[name]) or "none"
    except Exception as exc:  # the doctor must answer even with a notebook mid-edit
        return f"(could not read the notebooks: {exc})"


def _probe_postgres(host: str, port: int) -> str:
    import asyncio

    import asyncpg

    async def go() -> str:
        conn = await asyncpg.connect(host=host, port=port, user="postgres", database="postgres", timeout=TIMEOUT)
        try:
            return "PostgreSQL " + await conn.fetchval("SHOW server_version") + " (user postgres, trust)"
        finally:
            await conn.close()

    return asyncio.run(asyncio.wait_for(go(), TIMEOUT + 0.5))


def _probe_redis(host: str, port: int) -> str:
    with socket.create_connection((host, port), timeout=TIMEOUT) as s:
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        reply = s.recv(64)
    if not reply.startswith(b"+PONG"):
        raise OSError(f"answered {reply[:40]!r} to PING")
    return "Redis answers PING"


def _probe_rabbitmq(host: str, port: int) -> str:
    """The AMQP 0-9-1 handshake's first step: the server answers the protocol header with
    Connection.Start (a method frame, class 10, method 10)."""
    with socket.create_connection((host, port), timeout=TIMEOUT) as s:
        s.sendall(b"AMQP\x00\x00\x09\x01")
        frame = s.recv(4096)
    if len(frame) < 11 or frame[0] != 1 or frame[7:11] != b"\x00\x0a\x00\x0a":
        raise OSError(f"did not answer as AMQP 0-9-1 ({frame[:12]!r})")
    version = re.search(rb"version\x53\x00\x00\x00.([\w.]+)", frame)
    return "RabbitMQ" + (f" {version[1].decode()}" if version else "") + " (AMQP 0-9-1)"


PROBES = {"PostgreSQL": _probe_postgres, "Redis": _probe_redis, "RabbitMQ": _probe_rabbitmq}


def check_service(name: str) -> Line:
    from course.services import services_required

    host, port = _address(name)
    try:
        return Line("OK", name, f"{PROBES[name](host, port)} at {host}:{port}")
    except Exception as exc:  # refused, timed out, refused the login: all mean "not usable here"
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        how = SERVICES[name][2]
        sections = _skipped_sections(name)
        if services_required():
            return Line("FIX", name, f"not reachable at {host}:{port} ({why}) and COURSE_REQUIRE_SERVICES=1: {how}")
        return Line("NOTE", name, f"not reachable at {host}:{port} ({why}): skipped without it: {sections}. "
                                  f"Optional; to see them, {how}")


def check_chromium() -> Line:
    chromium = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    playwright = list((ROOT / ".venv-test" / "lib").glob("python*/site-packages/playwright"))
    missing = [what for what, ok in (("Chromium (`apt-get install -y --no-install-recommends chromium`)", chromium),
                                     ("Playwright (`make test-tools`)", playwright)) if not ok]
    if missing:
        return Line("NOTE", "browser test", f"maintainers only (tests/test_browser.py, the site test): "
                                            f"{' and '.join(missing)} missing; learners need neither")
    return Line("OK", "browser test", f"Chromium {chromium} and Playwright (.venv-test) for the maintainers' tests")


def check_files() -> Line:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < MIN_FILES:
        return Line("FIX", "open files", f"limit {soft} (hard {hard}): the lessons' bursts need {MIN_FILES}: "
                                         f"`ulimit -n {min(4096, hard) if hard > 0 else 4096}` before `make lab`")
    return Line("OK", "open files", f"limit {soft} (the lessons need {MIN_FILES})")


def run_checks(full: bool = False) -> list[Line]:
    checks = [check_python, check_venv, check_disk, lambda: check_lab(full), check_port,
              *(lambda n=n: check_service(n) for n in SERVICES), check_chromium, check_files]
    with ThreadPoolExecutor(len(checks)) as pool:
        futures = [pool.submit(c) for c in checks]
        lines = []
        for check, f in zip(checks, futures):
            try:
                lines.append(f.result())
            except Exception as exc:  # a broken check is a line, not a traceback
                lines.append(Line("FIX", getattr(check, "__name__", "check"), f"the check itself failed: {exc!r}"))
    return lines


def main(full: bool = False) -> int:
    start = time.perf_counter()
    lines = run_checks(full)
    for line in lines:
        print(line)
    fixes = sum(line.status == "FIX" for line in lines)
    notes = sum(line.status == "NOTE" for line in lines)
    verdict = "ready" if not fixes else f"{fixes} to fix"
    print(f"\ncourse doctor: {verdict}" + (f", {notes} optional" if notes else "")
          + f" ({time.perf_counter() - start:.1f} s)")
    return 1 if fixes else 0
