"""Runs a learner's module-02 code for real and reports what happened, as JSON.

    python driver.py FOLDER        (a folder with app.py and conftest.py)

Two stages that share nothing but the report:

* the fixture run (fixture_stage.py), started first, in the background: the learner's conftest.py
  under a real pytest with the course's tests (fixture_tests.py), in two orders, and a plugin
  that records every httpx client built during the run and whether it is closed at its end;
* the app (app_stage.py): a fake upstream price service (uvicorn in a thread, 127.0.0.1); app.py
  imported with counters installed; ``get_settings.cache_clear()`` with a changed environment;
  the app served by the serving stage (course.grading.serving) with a burst of prices, orders,
  an order whose pricing fails, two orders at once, a refused order then a valid one, a
  test-style override of ``get_settings`` and bad input; then stopped with SIGTERM.

It never judges: the checks read the report. The garbage collector is paused while the app runs,
so a session or client the code forgets to close stays visible until it is counted. A request's
result is the serving stage's answer record (course.grading.serving.Answer: "request", "status",
"body", "json", "seconds", "server_error").

Report keys (each check names the ones it needs with ``require``):

    import          {"settings", "clients"}: Settings and httpx.AsyncClient objects built while
                    app.py was imported
    cache_clear     {"fresh", "set"}: max_quantity after SHOP_MAX_QUANTITY=<set> and
                    get_settings.cache_clear(), or {"error"}
    max_quantity    SHOP_MAX_QUANTITY while the app runs
    requests        the ordinary requests: "prices" (course.load.LoadResult.as_dict() of PRICES x
                    GET /prices/ACME, PRICE_CONCURRENCY at a time), "orders" (ORDERS answers to POST
                    /orders, one at a time), "listing" (GET /orders), "server_errors" ({text: count}
                    raised meanwhile), "clients" (built meanwhile), "upstream_connections" (TCP
                    connections the upstream accepted), "checkouts" (pool checkouts) and "held"
                    (connections still checked out afterwards)
    error_path      an order whose pricing fails after its row was written: "failed", "next" (the
                    next order), "held" (connections still checked out after the failed one),
                    "stored_before" and "stored_after" (GET /orders counts around both)
    together        {"answers", "stored_before", "stored_after"}: two orders sent at once
    after_refusal   [an order over the limit, the same order at the limit], one after the other
    override        dependency_overrides[get_settings] -> Settings(max_quantity=1): "overridden"
                    and "normal" (an order of 2 with and after the override), or "error"
                    (Settings(max_quantity=1) raised)
    bad_input       [answers]: invalid orders, an unknown symbol, GET /prices/NOPE
    settings_built  [{"stage", "where"}]: every Settings built while the app started, served and
                    stopped, with the line that built it
    shutdown        after the app stopped: "clients" ([{"stage", "where", "closed"}] for every
                    httpx.AsyncClient the code built), "established_to_upstream" (TCP connections
                    still open to it), "server_errors" (raised while stopping)
    stops           the serving stage's stop (SIGTERM): see course.grading.serving
    fixture_runs    one per order of the course's tests: {"order", "tests" ({name: {"outcome",
                    "message"}}), and of the one pytest run: "collect_errors", "timed_out", "timeout"
                    (its limit in seconds), "tail"}
    fixture_clients [{"kind", "where", "closed"}]: every httpx client the learner's code built
                    during that pytest run, closed or not when the session ended (None: it never ended)
"""

import asyncio
import gc
import os
from typing import Any

import app_stage  # the two stages, beside this file (python puts the script's folder first on sys.path)
import fixture_stage

from course.grading.checking import Driver


class Driver02(Driver):
    """The skeleton, plus what this driver needs whenever the report is printed, also when the
    app hung and a stage overran its limit: the fixture run (it does not depend on the app, and
    finished long before) goes into the report."""

    fixture_run: Any = None

    def record_fixture_run(self) -> None:
        if self.fixture_run is not None and "fixture_runs" not in self.report:
            found = fixture_stage.collect(*self.fixture_run)
            self.report.update(fixture_runs=found["orders"], fixture_clients=found["clients"])

    def emit(self) -> None:
        if self.fixture_run is not None and self.fixture_run[0].poll() is not None:
            try:
                self.record_fixture_run()
            except Exception:  # noqa: BLE001 - the report must still be printed
                pass
        super().emit()


def main(d: Driver02) -> None:
    # The database in the driver's scratch folder, in memory (/dev/shm) where there is one: a commit
    # on a busy disk can take 50 ms.
    (d.scratch / "db").mkdir()
    d.fixture_run = fixture_stage.start(d.target, d.scratch)  # first: it takes longest, and needs nothing from here

    from course.server import serve_in_thread

    counters = app_stage.Counters(d)
    counters.install()
    try:
        upstream, peers = app_stage.make_upstream()
        with serve_in_thread(upstream, ready_timeout=8) as up:
            os.environ.update({"SHOP_UPSTREAM_URL": up.url, "SHOP_MAX_QUANTITY": str(app_stage.MAX_QUANTITY),
                               "SHOP_DATABASE_URL": f"sqlite+aiosqlite:///{d.scratch}/db/shop.db?timeout=1"})
            mod = app_stage.import_app(d, counters)
            small = app_stage.settings_stage(d, mod)  # before the app runs: it needs only get_settings
            gc.disable()
            try:
                asyncio.run(app_stage.serve_app(d, mod, counters, small, peers))
            finally:
                d.report["settings_built"] = counters.settings_in(*app_stage.SERVING)
                gc.enable()
                gc.collect()
            app_stage.shutdown_report(d, counters, up.port)
    finally:
        with d.stage("fixture tests", limit=40, doing="running the course's tests with your conftest.py"):
            d.record_fixture_run()


if __name__ == "__main__":
    Driver02.main(main)
