"""Driver 02's app stage: the learner's app.py imported, then served under the serving stage
(course.grading.serving) with a fake upstream price service, while counters installed before the
import record every ``BaseSettings`` and ``httpx.AsyncClient`` the learner's code builds (with its
line and the driver's stage at the time) and the database pool's checkouts and checkins.
"""

import asyncio
import collections
import gc
import os
import traceback
from pathlib import Path
from typing import Any

from course.grading.checking import Driver, DriverError

MAX_QUANTITY = 50  # SHOP_MAX_QUANTITY while the app runs
FRESH_QUANTITY = 7  # SHOP_MAX_QUANTITY for get_settings.cache_clear()
PRICES, PRICE_CONCURRENCY, ORDERS = 24, 8, 8
CLIENT_TIMEOUT = 5  # seconds a request may take
NAMES = ("app", "Settings", "get_settings", "get_client", "get_session")  # the README's names
SERVING = ("startup", "requests", "shutdown")  # the stages of the serving stage


class Counters:
    """Settings objects and httpx clients the learner's code builds (those built with a line of the
    learner's files on the stack; the course's own clients have none), each with the driver's stage
    and that line, and the database pool's checkouts and checkins, counted from outside."""

    def __init__(self, d: Driver) -> None:
        self.d = d
        self.settings: list[dict] = []  # {"stage", "where"}
        self.clients: list[tuple[str | None, str, Any]] = []  # (stage, where, client)
        # Every key there from the start: the server's thread only changes values, so copying is safe.
        self.pool = collections.Counter(checkout=0, checkin=0)

    def _where(self) -> str:
        base = str(self.d.target) + os.sep
        for f in reversed(traceback.extract_stack()[:-2]):
            if not f.filename.startswith("<") and os.path.abspath(f.filename).startswith(base):
                return f"{Path(f.filename).name} line {f.lineno}" + (f": {f.line.strip()}" if f.line else "")
        return ""

    def install(self) -> None:
        import httpx
        import pydantic_settings
        from sqlalchemy import event
        from sqlalchemy.pool import Pool

        settings_init, client_init = pydantic_settings.BaseSettings.__init__, httpx.AsyncClient.__init__
        counters = self

        def counting_settings_init(self, *args, **kwargs):
            counters.settings.append({"stage": counters.d.current_stage, "where": counters._where()})
            settings_init(self, *args, **kwargs)

        def counting_client_init(self, *args, **kwargs):
            client_init(self, *args, **kwargs)
            where = counters._where()
            if where:
                counters.clients.append((counters.d.current_stage, where, self))

        pydantic_settings.BaseSettings.__init__ = counting_settings_init
        httpx.AsyncClient.__init__ = counting_client_init
        for name in ("checkout", "checkin"):
            event.listen(Pool, name, lambda *_, name=name: self.pool.update([name]))

    def settings_in(self, *stages: str) -> list[dict]:
        return [s for s in self.settings if s["stage"] in stages]

    def clients_in(self, stage: str) -> int:
        return sum(1 for s, _, _ in self.clients if s == stage)

    @property
    def held(self) -> int:
        return self.pool["checkout"] - self.pool["checkin"]


def make_upstream() -> tuple[Any, set]:
    """A price service: every symbol costs 12.5, DOWN answers 503, NOPE 404. Also returns the set
    of client addresses it saw (one per TCP connection)."""
    from fastapi import FastAPI, HTTPException, Request

    peers: set = set()
    upstream = FastAPI()

    @upstream.get("/prices/{symbol}")
    async def price(symbol: str, request: Request) -> dict:
        peers.add(tuple(request.scope["client"]))
        await asyncio.sleep(0.002)
        if symbol == "DOWN":
            raise HTTPException(503, "price service down")
        if symbol == "NOPE":
            raise HTTPException(404, "unknown symbol")
        return {"symbol": symbol, "price": 12.5}

    return upstream, peers


def import_app(d: Driver, counters: Counters) -> Any:
    """The import stage; what the import built is recorded before the names are checked."""
    from fastapi import FastAPI

    mod = d.import_stage("app.py", needs=())
    d.report["import"] = {"settings": len(counters.settings_in("import")), "clients": counters.clients_in("import")}
    for name in NAMES:
        if not hasattr(mod, name):
            raise DriverError(f"app.py defines no `{name}`",
                              hint=f"keep the name `{name}` from the exercise: the checks look for it by name.")
    if not isinstance(mod.app, FastAPI):
        raise DriverError(f"app.py's `app` is a {type(mod.app).__name__}, not a FastAPI application",
                          hint="keep `app = FastAPI(lifespan=lifespan)` at module level.")
    return mod


def settings_stage(d: Driver, mod: Any) -> Any:
    """get_settings.cache_clear() with a changed environment, and the small settings the override
    part uses, built here so that no Settings of the driver's own is counted while serving."""
    from course.tracebacks import exception_line

    with d.stage("settings", limit=5, doing="calling get_settings.cache_clear() and get_settings()"):
        try:
            clear = mod.get_settings.cache_clear
            os.environ["SHOP_MAX_QUANTITY"] = str(FRESH_QUANTITY)
            try:
                clear()
                fresh = mod.get_settings().max_quantity
            finally:
                os.environ["SHOP_MAX_QUANTITY"] = str(MAX_QUANTITY)
                clear()
            d.report["cache_clear"] = {"fresh": fresh, "set": FRESH_QUANTITY}
        except Exception as exc:  # noqa: BLE001 - this part's result
            d.report["cache_clear"] = {"error": exception_line(exc, d.target)}
        try:
            return mod.Settings(max_quantity=1)
        except Exception as exc:  # noqa: BLE001 - the learner's Settings: the override part's result
            d.report["override"] = {"error": exception_line(exc, d.target)}
            return None


async def serve_app(d: Driver, mod: Any, counters: Counters, small: Any, upstream_peers: set) -> None:
    from course.load import fire

    app = mod.app

    async def stored(svc) -> int | None:
        """The orders stored, from GET /orders."""
        listing = await svc.send("GET", "/orders")
        return listing["json"].get("count") if listing["status"] == 200 and isinstance(listing["json"], dict) else None

    order = {"symbol": "ACME", "quantity": 2}
    d.report["max_quantity"] = MAX_QUANTITY
    with d.serve(app) as svc:
        with d.stage("requests", limit=30, doing="answering the checks' requests",
                     hint="start the app with uvicorn and send the README's requests by hand; read the server's log."):
            # 1. ordinary requests: a burst of prices (the same symbol, several at once), orders one by one
            checkouts, mark = counters.pool["checkout"], svc.mark()
            upstream_peers.clear()
            prices = await fire(svc.url + "/prices/ACME", n=PRICES, concurrency=PRICE_CONCURRENCY,
                                timeout=CLIENT_TIMEOUT, progress=False)
            orders = [await svc.send("POST", "/orders", json=order) for _ in range(ORDERS)]
            listing = await svc.send("GET", "/orders")
            d.report["requests"] = {
                "prices": prices.as_dict(), "orders": orders, "listing": listing,
                "server_errors": dict(collections.Counter(svc.errors.since(mark))),
                "clients": counters.clients_in("requests"), "upstream_connections": len(upstream_peers),
                "checkouts": counters.pool["checkout"] - checkouts, "held": counters.held,
            }

            # 2. an order whose pricing fails after its row was written, then a valid one
            held_before = counters.held
            stored_before = await stored(svc)
            failed = await svc.send("POST", "/orders", json={"symbol": "DOWN", "quantity": 1})
            leaked = max(0, counters.held - held_before)  # the answer comes once the app is done with the request
            after = await svc.send("POST", "/orders", json={"symbol": "ACME", "quantity": 1})
            d.report["error_path"] = {"failed": failed, "held": leaked, "next": after,
                                      "stored_before": stored_before, "stored_after": await stored(svc)}
            gc.collect()  # end whatever leaked there, so the next parts start clean

            # 3. two orders at once; a refused order, then the same order within the limit
            before = await stored(svc)
            together = await svc.together(*(svc.send("POST", "/orders", json=order) for _ in range(2)))
            d.report["together"] = {"answers": together, "stored_before": before, "stored_after": await stored(svc)}
            d.report["after_refusal"] = [
                await svc.send("POST", "/orders", json={"symbol": "ACME", "quantity": MAX_QUANTITY + 1}),
                await svc.send("POST", "/orders", json={"symbol": "ACME", "quantity": MAX_QUANTITY})]

            # 4. a test-style override of get_settings, through Depends
            if small is not None:
                app.dependency_overrides[mod.get_settings] = lambda: small
                try:
                    overridden = await svc.send("POST", "/orders", json=order)
                finally:
                    app.dependency_overrides.pop(mod.get_settings, None)
                normal = await svc.send("POST", "/orders", json=order)
                d.report["override"] = {"overridden": overridden, "normal": normal}

            # 5. bad input (the unknown symbol last: it writes before it fails)
            bad = [("POST", "/orders", {"json": {"symbol": "ACME", "quantity": q}})
                   for q in (0, MAX_QUANTITY + 1, "many")]
            bad += [("POST", "/orders", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
                    ("POST", "/orders", {"json": {"symbol": "NOPE", "quantity": 1}}), ("GET", "/prices/NOPE", {})]
            d.report["bad_input"] = [await svc.send(method, path, **kwargs) for method, path, kwargs in bad]


def shutdown_report(d: Driver, counters: Counters, upstream_port: int) -> None:
    """After the app stopped: its clients, its connections to the upstream, what it raised while stopping."""
    from course.probes import tcp_connections

    d.report["shutdown"] = {
        "clients": [{"stage": s, "where": where, "closed": c.is_closed} for s, where, c in counters.clients],
        "established_to_upstream": tcp_connections(os.getpid(), remote_port=upstream_port),
        "server_errors": d.report["stops"][-1]["errors"],  # raised while stopping
    }
