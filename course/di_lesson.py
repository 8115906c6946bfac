"""Harness code for notebook 02 (dependency injection), kept out of the lesson's cells.

    from course.di_lesson import patched_env, arun_script_report, edited_copy, order_story

* :func:`patched_env` sets environment variables for a ``with`` block and puts back what was there.
* :func:`run_script_report` / :func:`arun_script_report` run one of the notebook's demo scripts in
  its own Python process (a lowered file limit, or several event loops one after the other, must
  not touch the kernel) and return the JSON report the script prints on its last line. (Not
  ``course.subprocesses.run_script``, which returns how a script ended: exit code, output, time.)
* :func:`edited_copy` writes a copy of a file with one exact edit, for a "what if" test run.
* :func:`order_story` drives the orders demo app: a good order, a failing order, the next order.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

import httpx
from course.harness import patched_env  # one implementation, re-exported for notebook 02

__all__ = ["patched_env", "run_script_report", "arun_script_report", "edited_copy", "order_story"]


def run_script_report(script: str | os.PathLike, *args: str, timeout: float = 60.0) -> dict[str, Any]:
    """Run ``python script *args`` in the script's folder and return the JSON object it prints
    on its last line of output. Raises ``RuntimeError`` with the script's output if it fails or
    does not finish within ``timeout`` seconds (it is killed then)."""
    script = Path(script).resolve()
    from course.pytest_runner import clean_env  # the kernel's colour settings etc. removed

    try:
        done = subprocess.run([sys.executable, script.name, *args], cwd=script.parent, env=clean_env(),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:  # subprocess.run has killed it; its output comes as bytes
        output = b"".join(part or b"" for part in (exc.stdout, exc.stderr)).decode(errors="replace")
        raise RuntimeError(f"{script.name} did not finish within {timeout:g} s:\n{output[-3000:]}") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{script.name} {' '.join(args)} exited with {done.returncode}:\n"
                           f"{done.stdout[-2000:]}{done.stderr[-3000:]}")
    return json.loads(lines[-1])


async def arun_script_report(script: str | os.PathLike, *args: str, timeout: float = 60.0) -> dict[str, Any]:
    """:func:`run_script_report` from a notebook cell (``await``); several at once with ``asyncio.gather``."""
    return await asyncio.to_thread(run_script_report, script, *args, timeout=timeout)


def edited_copy(path: str | os.PathLike, old: str, new: str, folder: str | os.PathLike) -> Path:
    """Write ``folder/<name of path>``: the file with ``old`` (present exactly once) replaced by ``new``."""
    path = Path(path)
    text = path.read_text()
    if text.count(old) != 1:
        raise ValueError(f"{old!r} occurs {text.count(old)} times in {path.name}, not once")
    copy = Path(folder) / path.name
    copy.write_text(text.replace(old, new))
    return copy


def order_story(orders_app: ModuleType, session_dep: Callable[..., Any], folder: str | os.PathLike) -> dict[str, Any]:
    """Serve ``orders_app.create_app`` with ``session_dep`` on a SQLite file in ``folder`` and
    send: a good order, a failing order (the endpoint raises 502 after its INSERT), then the next
    order. Returns their statuses, the connections still checked out after the failing one
    (``held``), how long the next order took, the orders stored, the pool's events, the server's
    errors, and how many sessions the garbage collector had to clean up (``gc_cleanups``).

    The garbage collector is paused while the server runs, so what a leaked session does between
    two collections happens every time; it runs once at the end.
    """
    from course.probes import pool_status
    from course.server import serve_in_thread

    name = getattr(session_dep, "__name__", "session_dep")
    app = orders_app.create_app(f"sqlite+aiosqlite:///{Path(folder) / name}.db", session_dep)
    acme, down = {"symbol": "ACME", "quantity": 1}, {"symbol": "DOWN", "quantity": 1}
    # No keep-alive: after an unhandled error uvicorn closes the connection, and reusing it would race.
    limits = httpx.Limits(max_keepalive_connections=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.disable()
        try:
            with serve_in_thread(app) as server, httpx.Client(base_url=server.url, timeout=10, limits=limits) as client:
                first = client.post("/orders", json=acme).status_code
                failed = client.post("/orders", json=down).status_code  # the endpoint raises after its INSERT
                time.sleep(0.05)
                held = pool_status(app.state.engine)["checked_out"]
                start = time.perf_counter()
                after = client.post("/orders", json=acme).status_code  # the next write
                after_s = time.perf_counter() - start
                stored = client.get("/orders/count").json()["orders"]
        finally:
            gc.enable()
            gc.collect()  # leaked sessions still hold a connection and its worker thread: end them
    cleanups = sum("non-checked-in connection" in str(w.message) for w in caught)
    return dict(first=first, failed=failed, held=held, after=after, after_s=round(after_s, 2), stored=stored,
                pool=dict(app.state.pool_events), errors=dict(server.errors), gc_cleanups=cleanups)
