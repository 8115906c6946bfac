"""Runs a learner's module-08 app and Celery worker for real, kills the worker mid-task, and
reports what happened, as JSON.

    python driver.py APP_DIR

It starts ``celery -A tasks worker -c 2`` on Celery's SQLite transport (no server) in the scratch
folder (polled every 0.1 s instead of kombu's 1 s, to wait less), at the same time imports app.py and serves it with uvicorn on 127.0.0.1, then checks out
three orders: A (a good card), B (a declined card) and C (a card whose payment provider times out
once). As soon as A's card is charged, it SIGKILLs the pool process running A, mid-task (during
the invoice). Then it polls the learner's status endpoint until each order's task has an outcome,
and counts in the shop's database what really happened. It never judges: the checks read the report.

Report keys (each check names the ones it needs with ``require``):

    invoice_seconds   how long send_invoice() takes in this run
    posts             {"A"|"B"|"C": {"status", "body", "seconds", "task_id"}}: POST /orders/{id}/checkout
    kill              {"charged": bool, "charge_pid", "driver_pid", "worker_pid", "pool_pids", "killed",
                       "waited"}: A's first charge, the process that made it, and whether it was killed
    states            {"A"|"B"|"C": [state, ...]}: the distinct states GET /tasks/{task_id} answered, in
                      order ("HTTP 404: ..." when it did not answer 200 with a "state")
    backend_states    {"A"|"B"|"C": state}: the task's final state in the result backend, read by the driver
    db                {"A"|"B"|"C": {"calls", "charges", "invoices"}}: gateway calls, charges and
                      invoices recorded for each order
    worker_lost       True if the worker logged WorkerLostError (it noticed the killed process)
    worker_log        the end of the worker's log (its last ERROR line goes into a Got line)
    server_errors     the exceptions the app raised, with the app's line
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import uuid

from course.grading.checking import Driver, DriverError

INVOICE = 0.6        # seconds send_invoice() takes: the slow part of the work
POLL = 0.1           # seconds between the worker's polls of the SQLite broker (kombu's default: 1 s)
CARDS = {"A": "4242424242424242", "B": "4000000000000002", "C": "4000000000000119"}
FINAL = ("SUCCESS", "FAILURE")
OUTCOME_WAIT = 12.0  # seconds after the kill for every order to reach an outcome
NO_PROGRESS = 5.0    # ...but stop sooner when no task has even left PENDING by then: no worker is
                     # running them (the reference answer's tasks start within about 0.2 s)


def shop_rows(db_path: str, sql: str, *args) -> list:
    if not os.path.exists(db_path):
        return []
    db = sqlite3.connect(db_path, timeout=10)
    try:
        return db.execute(sql, args).fetchall()
    except sqlite3.OperationalError:  # no such table yet
        return []
    finally:
        db.close()


class WorkerDriver(Driver):
    """A Driver that stops the Celery worker it started before it reports, also when a stage overran
    its limit (the watchdog reports, then ends the process at once): the worker is the checks' own
    process, never a leftover of the learner's code."""

    worker = None

    def emit(self) -> None:
        if self.worker is not None:
            with contextlib.suppress(Exception):
                self.report["worker_lost"] = "WorkerLostError" in self.worker.log()
            with contextlib.suppress(Exception):
                self.worker.stop(0)  # idle by now, or stuck: no warm shutdown to wait for
            with contextlib.suppress(Exception):
                self.report["worker_log"] = self.worker.log()[-4000:]
        super().emit()


def main(d: WorkerDriver) -> None:

    from course.queues import declare_sqlite_queue, start_worker

    run = uuid.uuid4().hex[:8]
    shop_db = str(d.scratch / "shop.db")
    env = {"BROKER_URL": f"sqla+sqlite:///{d.scratch / 'broker.db'}",
           "RESULT_BACKEND": f"db+sqlite:///{d.scratch / 'results.db'}",
           "TASK_QUEUE": f"checks-{run}", "SHOP_DB": shop_db, "INVOICE_SECONDS": str(INVOICE)}
    os.environ.update(env)
    d.report["invoice_seconds"] = INVOICE
    if not (d.target / "tasks.py").is_file():
        raise DriverError(f"there is no tasks.py in {d.target}", hint="the Celery app and the task live in tasks.py.")
    # The broker's tables and queue exist before the worker starts, and this process has the transport's
    # engine cached, so the first POST is timed like every later one, not with the broker's one-off set-up.
    declare_sqlite_queue(env["BROKER_URL"], env["TASK_QUEUE"])
    # The worker starts while this process imports the app: both take about a second.
    worker = d.worker = start_worker("tasks", app_dir=d.target, env=env, concurrency=2, sqlite_poll_interval=POLL)
    with d.stage("import", limit=15, doing="importing tasks.py and app.py",
                 hint="run `python -c 'import app'` in your exercise folder and read the first error."):
        tasks = d.import_learner("tasks.py", needs=("celery_app",))
        module = d.import_learner("app.py", needs="app")
    exercise(d, module, tasks, worker, shop_db)


def exercise(d: Driver, module, tasks, worker, shop_db: str) -> None:
    import httpx
    import psutil
    from celery.result import AsyncResult

    from course.server import serve_in_thread

    with d.stage("startup", limit=10, doing="starting the app"):
        server_cm = serve_in_thread(module.app, timeout_graceful_shutdown=2, ready_timeout=8)
        server = server_cm.__enter__()
    try:
        with d.stage("worker", limit=20, doing="starting the Celery worker (celery -A tasks worker)",
                     hint="run `celery -A tasks worker -l info` in your exercise folder and read its first error."):
            try:
                worker.wait_ready(18)
            except (RuntimeError, TimeoutError) as exc:
                raise DriverError(str(exc).splitlines()[0] + " " + worker.log()[-400:].replace("\n", " / "),
                                  hint="run `celery -A tasks worker -l info` in your exercise folder and read its first error.")
        with d.stage("requests", limit=10, doing="POST /orders/{order_id}/checkout for three orders"):
            posts = {}
            with httpx.Client(base_url=server.url, timeout=8, limits=httpx.Limits(max_keepalive_connections=0)) as client:
                for name, card in CARDS.items():
                    start = time.perf_counter()
                    try:
                        r = client.post(f"/orders/order-{name}/checkout", json={"amount_cents": 1250, "card": card})
                        try:
                            body = r.json()
                        except ValueError:
                            body = None
                        result = {"status": r.status_code, "body": r.text[:300],
                                  "task_id": body.get("task_id") if isinstance(body, dict) else None}
                    except httpx.HTTPError as exc:
                        result = {"status": None, "body": f"no answer: {type(exc).__name__}: {exc}"[:300], "task_id": None}
                    result["seconds"] = round(time.perf_counter() - start, 3)
                    posts[name] = result
            d.report["posts"] = posts
        with d.stage("kill", limit=10, doing="waiting for order A's charge, then killing the process running it"):
            kill = {"driver_pid": os.getpid(), "worker_pid": worker.pid, "charged": False, "killed": False}
            start = time.monotonic()
            while time.monotonic() - start < 6:
                rows = shop_rows(shop_db, "SELECT pid FROM charges WHERE order_id = 'order-A' ORDER BY id")
                if rows:
                    kill.update(charged=True, charge_pid=rows[0][0])
                    break
                time.sleep(0.02)
            kill["waited"] = round(time.monotonic() - start, 2)
            kill["pool_pids"] = [p.pid for p in worker.pool_children()]
            if kill["charged"] and kill["charge_pid"] in kill["pool_pids"]:
                with contextlib.suppress(psutil.NoSuchProcess, RuntimeError):
                    worker.kill_pool_child(kill["charge_pid"])
                    kill["killed"] = True
            d.report["kill"] = kill
        with d.stage("outcomes", limit=OUTCOME_WAIT + 5, doing="polling GET /tasks/{task_id} for each order"):
            states: dict[str, list[str]] = {name: [] for name in CARDS}
            backend: dict[str, str | None] = {name: None for name in CARDS}
            deadline = time.monotonic() + OUTCOME_WAIT
            with httpx.Client(base_url=server.url, timeout=5, limits=httpx.Limits(max_keepalive_connections=0)) as client:

                def poll_api(name: str, task_id: str) -> None:
                    try:
                        r = client.get(f"/tasks/{task_id}")
                        body = r.json() if r.status_code == 200 else None
                        state = (str(body["state"]) if isinstance(body, dict) and "state" in body
                                 else f"HTTP {r.status_code}: {r.text[:120]}")
                    except (httpx.HTTPError, ValueError) as exc:
                        state = f"no answer: {type(exc).__name__}"
                    if not states[name] or states[name][-1] != state:
                        states[name].append(state)

                ids = {name: posts[name]["task_id"] for name in CARDS if posts[name]["task_id"]}
                while True:
                    for name, task_id in ids.items():
                        with contextlib.suppress(Exception):
                            backend[name] = AsyncResult(task_id, app=tasks.celery_app).state
                        poll_api(name, task_id)  # after the backend: the API has seen at least as much
                    invoiced_a = shop_rows(shop_db, "SELECT 1 FROM invoices WHERE order_id = 'order-A'")
                    done = all(backend[n] in FINAL for n in ids)
                    if (done and (invoiced_a or backend.get("A") == "FAILURE")) or time.monotonic() > deadline:
                        break
                    stuck = all(backend[n] in (None, "PENDING") for n in ids)
                    if stuck and time.monotonic() > deadline - OUTCOME_WAIT + NO_PROGRESS:
                        break
                    time.sleep(0.1)
            d.report["states"] = states
            d.report["backend_states"] = backend
        d.report["db"] = {name: {table_key: len(shop_rows(shop_db, f"SELECT 1 FROM {table} WHERE order_id = ?", f"order-{name}"))
                                 for table_key, table in (("calls", "gateway_calls"), ("charges", "charges"),
                                                          ("invoices", "invoices"))}
                          for name in CARDS}
        d.report["server_errors"] = server.describe_errors()
    finally:
        with d.stage("shutdown", limit=10, doing="stopping the app"):
            server_cm.__exit__(None, None, None)


if __name__ == "__main__":
    WorkerDriver.main(main)
