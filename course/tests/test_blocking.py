"""course.blocking: the lag probe, the slow upstream, the call counter, against real uvicorn servers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
import types

import httpx
from fastapi import FastAPI

from course.blocking import LagProbe, counting_calls, default_executor_workers, lag_curve, slow_upstream
from course.server import serve_in_thread


def blocking_app() -> FastAPI:
    app = FastAPI()

    @app.get("/block")
    async def block(seconds: float = 0.3):
        time.sleep(seconds)
        return {}

    @app.get("/wait")
    async def wait(seconds: float = 0.3):
        await asyncio.sleep(seconds)
        return {}

    return app


def test_lag_probe_sees_a_blocked_loop_and_not_an_awaiting_one() -> None:
    probe = LagProbe(blocking_app())
    with serve_in_thread(probe) as server:
        time.sleep(0.05)
        since = probe.mark()
        assert httpx.get(server.url + "/wait").status_code == 200
        waited = probe.max_lag(since, probe.mark())
        since = probe.mark()
        assert httpx.get(server.url + "/block").status_code == 200
        until = probe.mark()
        time.sleep(0.05)  # the blocked loop reports its lag when the probe wakes
        blocked = probe.max_lag(since, until)
        assert probe.blocked_seconds(since, until, over=0.02) >= 0.25
    assert blocked >= 0.25, blocked
    assert waited < blocked / 3, (waited, blocked)  # same run: a busy machine lags both
    assert probe.state is probe.app.state  # the wrapped app's attributes pass through
    count = len(probe.samples)
    time.sleep(0.05)
    assert len(probe.samples) == count  # the probe task stopped with the server


def test_lag_curve_is_a_sawtooth() -> None:
    xs, ys = lag_curve([(1.0, 0.0), (2.0, 0.5)])
    assert xs == [1.0, 1.0, 1.0, 1.5, 2.0, 2.0] and ys == [0.0, 0.0, 0.0, 0.0, 0.5, 0.0]


def test_slow_upstream_counts_connections_peak_and_attempts() -> None:
    upstream = slow_upstream(delay=0.1)
    stats = upstream.state.stats
    with serve_in_thread(upstream) as up:
        async def burst() -> list[int]:
            async with httpx.AsyncClient(base_url=up.url) as client:
                replies = await asyncio.gather(*(client.get(f"/scores/k{i}") for i in range(5)))
                again = await client.get("/scores/k0")  # a kept-alive connection: no new one
            return [r.status_code for r in [*replies, again]]

        assert asyncio.run(burst()) == [200] * 6
        assert stats.peak == 5 and stats.connections == 5 and stats.calls == 6
        assert stats.opened_by({"k0", "k1"}) == 2

        stats.reset(flaky={"a"}, down={"b"}, instant={"c"})
        assert stats.calls == 0 and stats.connections == 0
        with httpx.Client(base_url=up.url) as client:
            assert [client.get("/scores/a").status_code for _ in range(2)] == [503, 200]
            assert [client.get("/scores/b").status_code for _ in range(2)] == [503, 503]
            start = time.perf_counter()
            assert client.get("/scores/d").status_code == 200
            delayed = time.perf_counter() - start
            start = time.perf_counter()
            assert client.get("/scores/c").status_code == 200
            instant = time.perf_counter() - start
            # Two calls back to back on one client: only the delay tells them apart, not the machine.
            assert instant < delayed - stats.delay / 2, (instant, delayed)  # instant: no delay
        assert stats.attempts == {"a": 2, "b": 2, "c": 1, "d": 1}


def test_slow_upstream_batch_holds_calls_that_arrive_together() -> None:
    upstream = slow_upstream(delay=0.1)
    stats = upstream.state.stats
    stats.reset(batch=True)
    with serve_in_thread(upstream) as up:
        async def staggered() -> None:
            async with httpx.AsyncClient(base_url=up.url) as client:
                async def late(i: int):
                    await asyncio.sleep(0.05 * i)  # spread over 0.2 s, more than the delay
                    return await client.get(f"/scores/{i}")

                await asyncio.gather(*(late(i) for i in range(5)))

        asyncio.run(staggered())
        assert stats.peak == 5  # held until no call had arrived for 0.1 s
        stats.reset()
        with httpx.Client(base_url=up.url) as client:
            for i in range(3):
                client.get(f"/scores/{i}")
        assert stats.peak == 1  # one after another: one at a time


def test_counting_calls_counts_concurrent_calls_and_restores() -> None:
    def work(x):
        time.sleep(0.05)
        return x

    module = types.SimpleNamespace(work=work)
    with counting_calls(module, "work") as counter:
        threads = [threading.Thread(target=module.work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert module.work(7) == 7
    assert counter.peak == 4 and counter.calls == 5 and counter.running == 0
    assert module.work is work


def test_default_executor_workers_matches_the_executor() -> None:
    with concurrent.futures.ThreadPoolExecutor() as pool:
        assert pool._max_workers == default_executor_workers()


def test_serve_lagged_reads_the_probe_of_a_server_process(tmp_path) -> None:
    """serve_lagged: the app in a uvicorn process of its own, its loop's lag read over HTTP."""
    from course.blocking import SAMPLES_PATH, serve_lagged

    (tmp_path / "blocky.py").write_text(
        "import time\nfrom fastapi import FastAPI\napp = FastAPI()\n\n\n"
        "@app.get('/block')\nasync def block():\n    time.sleep(0.3)\n    return {}\n")
    with serve_lagged("blocky:app", app_dir=tmp_path) as server:
        since = server.mark()
        assert httpx.get(server.url + "/block").status_code == 200
        until = server.mark()
        assert httpx.get(server.url + SAMPLES_PATH).json()["samples"]  # answered by the probe
        blocked = server.max_lag(since, until)
        assert server.blocked_seconds(since, until) >= 0.25
    assert blocked >= 0.25, blocked
