"""course.server and course.load against real uvicorn servers."""

from __future__ import annotations

import asyncio
import socket
import textwrap

import httpx
import psutil
import pytest
from fastapi import FastAPI, HTTPException

from course.load import fire, percentile
from course.server import serve_in_thread, serve_subprocess


def make_app(events: list[str]) -> FastAPI:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        events.append("startup")
        yield
        events.append("shutdown")

    app = FastAPI(lifespan=lifespan)

    @app.get("/sleep")
    async def sleep(s: float = 0.1):
        await asyncio.sleep(s)
        return {"slept": s}

    @app.get("/boom")
    async def boom():
        raise ValueError("kaboom")

    @app.get("/missing")
    async def missing():
        raise HTTPException(404, "no such thing")

    return app


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.asyncio
async def test_thread_server_runs_lifespan_collects_errors_and_stops() -> None:
    events: list[str] = []
    with serve_in_thread(make_app(events)) as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert events == ["startup"]
        result = await fire(server.url + "/boom", n=3, progress=False)
        assert result.statuses == {500: 3}
        port = server.port
    # uvicorn logs an exception just after it sent the 500: the count is complete once the server stopped.
    assert server.errors == {"builtins.ValueError: kaboom": 3}
    assert events == ["startup", "shutdown"]
    assert not server.thread.is_alive()
    assert port_is_free(port)


@pytest.mark.asyncio
async def test_thread_server_stops_when_the_block_raises() -> None:
    events: list[str] = []
    with pytest.raises(ZeroDivisionError):
        with serve_in_thread(make_app(events)) as server:
            1 / 0
    assert events == ["startup", "shutdown"] and port_is_free(server.port)


@pytest.mark.paired  # same-run latency ratios: one neighbour at most
@pytest.mark.asyncio
async def test_fire_counts_statuses_errors_and_latency() -> None:
    with serve_in_thread(make_app([])) as server:
        ok = await fire(server.url + "/sleep?s=0.2", n=20, concurrency=20, progress=False)
        capped = await fire(server.url + "/sleep?s=0.2", n=4, concurrency=1, progress=False)
        missing = await fire(server.url + "/missing", n=2, progress=False)
    assert ok.statuses == {200: 20} and ok.ok == 20 and ok.failed == 0
    # Same-run ratios, no seconds: a busy machine slows both bursts alike. One at a time, the 20
    # requests would take 5 times as long as the 4 capped ones; overlapping, far less than half that.
    assert 0.2 <= ok.p50 <= ok.p95 <= ok.max <= ok.wall
    assert capped.wall >= 0.8, "concurrency=1 must serialise the requests"
    assert ok.wall < capped.wall * (20 / 4) / 2, "20 concurrent 0.2 s sleeps should overlap"
    assert missing.errors == {"404: no such thing": 2} and missing.failed == 2
    assert "p50" in str(ok)


@pytest.mark.asyncio
async def test_fire_counts_transport_errors_instead_of_raising() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = await fire(f"http://127.0.0.1:{port}/", n=2, progress=False)
    assert result.statuses == {"error": 2} and result.latencies == []


def test_percentile() -> None:
    assert percentile([1, 2, 3, 4, 5], 50) == 3
    assert percentile([0, 10], 95) == pytest.approx(9.5)


def test_subprocess_server_with_workers_starts_and_stops(tmp_path) -> None:
    (tmp_path / "tiny.py").write_text(textwrap.dedent("""
        import os
        from fastapi import FastAPI
        app = FastAPI()
        @app.get("/pid")
        async def pid():
            return {"pid": os.getpid()}
    """))
    with serve_subprocess("tiny:app", app_dir=tmp_path, workers=2) as server:
        assert httpx.get(server.url + "/pid").status_code == 200
        assert server.log().count("Application startup complete") == 2, "serve_subprocess waits for every worker"
        main_pid = server.pid
        pids = [c.pid for c in psutil.Process(main_pid).children(recursive=True)]
        assert len(pids) >= 2
    assert server.proc.poll() is not None
    assert not psutil.pid_exists(main_pid) or psutil.Process(main_pid).status() == psutil.STATUS_ZOMBIE
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert port_is_free(server.port)
    assert "Started" in server.log() or "Uvicorn running" in server.log()
    assert not server.log_path.exists(), "the log file is removed after the server stops"


def test_subprocess_server_reports_a_broken_app(tmp_path) -> None:
    (tmp_path / "broken.py").write_text("raise RuntimeError('cannot import me')\n")
    with pytest.raises(RuntimeError, match="cannot import me"):
        with serve_subprocess("broken:app", app_dir=tmp_path):
            pass


@pytest.mark.asyncio
async def test_two_servers_at_once_keep_their_own_errors() -> None:
    with serve_in_thread(make_app([])) as outer:
        with serve_in_thread(make_app([])) as inner:
            await fire(inner.url + "/boom", n=2, progress=False)
        await fire(outer.url + "/boom", n=3, progress=False)
    assert inner.errors == {"builtins.ValueError: kaboom": 2}
    assert outer.errors == {"builtins.ValueError: kaboom": 3}
