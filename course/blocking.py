"""Seeing a blocked event loop: a lag probe inside the server, and a slow upstream that counts.

    from course.blocking import LagProbe, slow_upstream

    upstream = slow_upstream(delay=0.2)          # a FastAPI app; upstream.state.stats counts
    probe = LagProbe(app)                         # wraps the app under test (any ASGI app)
    with course.serve_in_thread(upstream) as up, course.serve_in_thread(probe) as server:
        since = probe.mark()
        ...send requests...
        probe.max_lag(since)                      # the longest the loop was late, in seconds

**LagProbe** runs a task on the server's own event loop (started with the app's lifespan) that
asks to wake every ``interval`` seconds and records how late it woke: while an endpoint blocks
the loop (``time.sleep``, ``requests.get``, a sync database call), nothing else on that loop runs,
this task included, so its lateness is how long the loop was blocked.

**serve_lagged** runs an app in a uvicorn process of its own (``course.serve_subprocess``) with a
LagProbe on that process's loop, and reads its samples over HTTP: a process of its own gives the
app its own peak memory, and the probe its own loop:

    with serve_lagged("streaming:app", app_dir=DEMO) as server:   # course/lagged.py inside
        since = server.mark()
        ...send requests...
        server.max_lag(since, server.mark())

**slow_upstream** is a stand-in for another service: ``GET /scores/{key}`` answers after
``stats.delay`` seconds (keys in ``stats.instant``: at once). It counts what a client cannot
hide: the TCP connections it accepted (one client port each, and the key of the first request
on it), the calls it held at the same time (``peak``), and the attempts per key. With
``stats.batch`` it holds every call until no new call has arrived for ``delay`` seconds, so the
calls a client sends together are all held together (``peak``), even on a busy machine where
they arrive spread out, while calls sent one after another are still held one at a time.
With ``stats.flaky`` (True, or a set of keys) the first attempt for each key is answered with a
503 at once (a retry succeeds); with ``stats.down`` every attempt is.
"""

import asyncio
import collections
import contextlib
import functools
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

__all__ = ["LagProbe", "UpstreamStats", "slow_upstream", "CallCounter", "counting_calls", "lag_curve", "default_executor_workers",
           "serve_lagged", "LaggedServer", "SAMPLES_PATH"]

# Where a LagProbe made with ``route=SAMPLES_PATH`` answers with its samples (course/lagged.py).
SAMPLES_PATH = "/__course_lag__"


class _Windowed:
    """Reading a lag probe's samples over a window of time (LagProbe, LaggedServer)."""

    def _samples(self) -> list[tuple[float, float]]:
        raise NotImplementedError

    @staticmethod
    def mark() -> float:
        """Now, on the probe's clock: pass it as ``since`` / ``until``."""
        return time.perf_counter()

    def window(self, since: float | None = None, until: float | None = None) -> list[tuple[float, float]]:
        """The samples asked to wake between ``since`` and ``until`` (a loop blocked at ``until``
        reports its lag only when it wakes, later), as ``(t, lag)`` with ``t`` relative to ``since``."""
        samples = self._samples()
        start = since if since is not None else (samples[0][0] if samples else 0.0)
        return [(t - start, lag) for t, lag in samples
                if t >= start and (until is None or t - lag <= until)]

    def max_lag(self, since: float | None = None, until: float | None = None) -> float:
        """The longest the loop was late between ``since`` and ``until`` (seconds; 0.0 if no sample)."""
        return max((lag for _, lag in self.window(since, until)), default=0.0)

    def blocked_seconds(self, since: float | None = None, until: float | None = None, *, over: float = 0.05) -> float:
        """Total lateness of the wake-ups later than ``over`` seconds: time the loop spent blocked."""
        return sum(lag for _, lag in self.window(since, until) if lag > over)


class LagProbe(_Windowed):
    """An ASGI wrapper: serve ``LagProbe(app)`` instead of ``app``; read ``samples`` from any thread.

    ``samples`` is a list of ``(t, lag)``: ``t`` the ``time.perf_counter()`` at which the probe
    woke, ``lag`` how many seconds later than asked. With ``route="/path"``, ``GET /path`` is
    answered by the probe itself (before the app): ``{"samples": [[t, lag], ...]}``.
    """

    def __init__(self, app: Any, *, interval: float = 0.01, route: str | None = None) -> None:
        self.app = app
        self.interval = interval
        self.route = route
        self.samples: list[tuple[float, float]] = []
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:  # app.state, app.routes, ... of the wrapped app
        return getattr(self.app, name)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if self.route and scope["type"] == "http" and scope["path"] == self.route:
            await self._answer_samples(send)
            return
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        task = asyncio.get_running_loop().create_task(self._run(), name="course-lag-probe")
        try:
            await self.app(scope, receive, send)
        finally:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _answer_samples(self, send: Any) -> None:
        import json

        with self._lock:
            body = json.dumps({"samples": self.samples}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def _run(self) -> None:
        while True:
            asked = time.perf_counter() + self.interval
            await asyncio.sleep(self.interval)
            woke = time.perf_counter()
            with self._lock:
                self.samples.append((woke, max(0.0, woke - asked)))

    def _samples(self) -> list[tuple[float, float]]:
        with self._lock:
            return list(self.samples)


@dataclass
class UpstreamStats:
    """What the slow upstream saw. Change ``delay``, ``flaky`` and ``down`` at any time."""

    delay: float = 0.2
    flaky: Any = False    # True, or a set of keys: the first attempt per key gets a 503 at once
    down: Any = False     # True, or a set of keys: every attempt gets a 503 at once
    instant: Any = ()     # keys answered at once, without the delay
    batch: bool = False   # hold every call until no new call has arrived for `delay` seconds
    last_arrival: float = 0.0
    peers: dict = field(default_factory=dict)     # (host, port) of every connection seen -> first key on it
    in_flight: int = 0
    peak: int = 0                                  # most calls held at once
    calls: int = 0
    attempts: collections.Counter = field(default_factory=collections.Counter)  # key -> attempts
    started: list = field(default_factory=list)   # perf_counter() when each call arrived

    @property
    def connections(self) -> int:
        """TCP connections accepted so far (each arrives from its own client port)."""
        return len(self.peers)

    def opened_by(self, keys: Any) -> int:
        """Connections whose first request was for one of ``keys``: those calls needed a new one."""
        return sum(1 for key in self.peers.values() if key in keys)

    def busy(self, key: str) -> bool:
        """Is this attempt answered with a 503 (``down``, or ``flaky`` and the key's first attempt)?"""
        def applies(setting: Any) -> bool:
            return setting is True or (bool(setting) and setting is not True and key in setting)

        return applies(self.down) or (applies(self.flaky) and self.attempts[key] == 1)

    def reset(self, **settings: Any) -> "UpstreamStats":
        """Forget what was counted (and apply ``delay=``, ``flaky=``, ``down=``, ``instant=``, ``batch=``); returns self."""
        self.peers.clear()
        self.attempts.clear()
        self.started.clear()
        self.peak = self.in_flight
        self.calls = 0
        for name, value in settings.items():
            if name not in ("delay", "flaky", "down", "instant", "batch"):
                raise TypeError(f"unknown setting {name!r}")
            setattr(self, name, value)
        return self


def slow_upstream(delay: float = 0.2) -> Any:
    """A small FastAPI app standing in for another service (see the module's docstring)."""
    from fastapi import FastAPI, HTTPException, Request

    stats = UpstreamStats(delay=delay)
    app = FastAPI(title="slow upstream")
    app.state.stats = stats

    @app.get("/scores/{key}")
    async def score(key: str, request: Request) -> dict:
        stats.peers.setdefault(tuple(request.scope["client"]), key)
        stats.calls += 1
        stats.attempts[key] += 1
        stats.started.append(time.perf_counter())
        if stats.busy(key):
            raise HTTPException(503, "scoring service busy, try again")
        stats.in_flight += 1
        stats.peak = max(stats.peak, stats.in_flight)
        stats.last_arrival = time.perf_counter()
        try:
            if key not in stats.instant:
                await asyncio.sleep(stats.delay)
                # In batch mode, calls that arrive together are answered together: a client that
                # sends them concurrently gets them all in flight at once, however busy the machine.
                while stats.batch and (left := stats.last_arrival + stats.delay - time.perf_counter()) > 0:
                    await asyncio.sleep(left)
        finally:
            stats.in_flight -= 1
        return {"key": key, "score": sum(key.encode()) % 100}

    return app


class CallCounter:
    """How many calls of a function ran at the same time: ``peak`` (see :func:`counting_calls`)."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.calls = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            self.running += 1
            self.calls += 1
            self.peak = max(self.peak, self.running)

    def leave(self) -> None:
        with self._lock:
            self.running -= 1


@contextlib.contextmanager
def counting_calls(module: Any, name: str) -> Iterator[CallCounter]:
    """Replace the sync function ``module.<name>`` for the block with one that counts how many of
    its calls run at once (from any thread); put the original back afterwards."""
    original = getattr(module, name)
    counter = CallCounter()

    @functools.wraps(original)
    def counted(*args: Any, **kwargs: Any) -> Any:
        counter.enter()
        try:
            return original(*args, **kwargs)
        finally:
            counter.leave()

    setattr(module, name, counted)
    try:
        yield counter
    finally:
        setattr(module, name, original)


def lag_curve(samples: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """Points to plot how long the loop had been stuck at each moment: for each probe sample
    ``(t, lag)`` the loop was stuck from ``t - lag`` to ``t``, so the curve rises from 0 to ``lag``
    over that span and drops back to 0 when the probe wakes (a sawtooth)."""
    xs: list[float] = []
    ys: list[float] = []
    for t, lag in samples:
        xs += [t - lag, t, t]
        ys += [0.0, lag, 0.0]
    return xs, ys


def default_executor_workers() -> int:
    """Threads in the event loop's default executor (``run_in_executor(None, ...)``,
    ``asyncio.to_thread``): ``min(32, cpus + 4)`` (Python 3.13 counts the CPUs this process may use)."""
    import os

    cpus = getattr(os, "process_cpu_count", os.cpu_count)() or 1
    return min(32, cpus + 4)


class LaggedServer(_Windowed):
    """A uvicorn process serving an app under a LagProbe (see :func:`serve_lagged`): ``url``, ``pid``,
    and ``window`` / ``max_lag`` / ``blocked_seconds`` as a LagProbe's, its samples read over HTTP
    (``time.perf_counter()`` is the system's monotonic clock on Linux, so marks taken here compare
    with the server's samples)."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.url = server.url
        self.pid = server.pid

    def __getattr__(self, name: str) -> Any:  # log(), proc, ... of the ProcessServer
        return getattr(self.server, name)

    def _samples(self) -> list[tuple[float, float]]:
        import httpx

        response = httpx.get(self.url + SAMPLES_PATH, timeout=30)
        response.raise_for_status()
        return [(t, lag) for t, lag in response.json()["samples"]]


@contextlib.contextmanager
def serve_lagged(app_path: str, *, app_dir: Any = None, env: dict | None = None, **options: Any) -> Iterator[LaggedServer]:
    """``course.serve_subprocess`` for ``course.lagged:app``, which imports ``app_path``
    ("module:attribute", found in ``app_dir``) and serves it under a LagProbe whose samples are
    at :data:`SAMPLES_PATH`. Stopped (SIGTERM) when the block ends."""
    from course.server import serve_subprocess

    with serve_subprocess("course.lagged:app", app_dir=app_dir, env={**(env or {}), "COURSE_LAGGED_APP": app_path},
                          **options) as server:
        yield LaggedServer(server)
