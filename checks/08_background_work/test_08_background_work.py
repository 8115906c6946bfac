"""Checks for exercise 08: background work with Celery.

The learner's app and a real Celery worker run once, in a subprocess (driver.py): three orders are
checked out, the worker's pool process running order A is SIGKILLed mid-task, a fourth order is
checked out with a bad body and then twice at once, and each test below reads one part of what
happened and names one expectation.
"""

from __future__ import annotations

from course.grading.checking import answer, expect, nothing_left_running, require

MODULE = "08_background_work"
WHAT = "starting a Celery worker and your app, and checking out orders"
DRIVER_TIMEOUT = 50


def final_state(report: dict, name: str) -> str:
    """The task's final state in the result backend, and what it raised."""
    state, error = report.get("backend_states", {}).get(name), report.get("backend_errors", {}).get(name)
    return f"{state} ({error})" if error else str(state)


def test_checkout_accepted(report: dict) -> None:
    """POST /orders/{order_id}/checkout answers 202 with a task_id"""
    posts = require(report, "posts")
    bad = {name: answer(p) for name, p in posts.items() if p["status"] != 202 or not p["task_id"]}
    expect(not bad, called=f"{posts['A']['request']} (and order-B, order-C with other cards)",
           expected='202 Accepted with a JSON body holding "task_id", for every order (even a declined card: '
                    "the outcome comes later)",
           got="; ".join(f"order-{n}: {t}" for n, t in bad.items()),
           hint="the endpoint only sends the task (.delay(...)) and returns its id; status_code=202.", todo=4)


def test_fast_response(report: dict) -> None:
    """The client gets its answer without waiting for the work"""
    posts, invoice = require(report, "posts", "invoice_seconds")
    a = posts["A"]
    limit = 0.8 * invoice  # the work itself takes longer than the invoice; a busy machine gets the rest
    expect(a["status"] is not None and a["seconds"] < limit,
           called="POST /orders/order-A/checkout with a good card, timed",
           expected=f"an answer before the {invoice} s the invoice alone takes (below {limit:.2f} s)",
           got=f"{a['seconds']:.2f} s, then {answer(a)[:120]}",
           hint="the request should only hand the work over; the charge and the invoice happen elsewhere.", todo=4)


def test_work_runs_in_worker(report: dict) -> None:
    """The charge is made by the Celery worker, not by the web server's process"""
    kill = require(report, "kill")
    if not kill["charged"]:
        got = f"order-A was never charged within {kill['within']:g} s of its POST (no task reached the worker?)"
    elif kill["charge_pid"] == kill["driver_pid"]:
        got = f"order-A was charged by process {kill['charge_pid']}: the web server itself"
    else:
        got = f"order-A was charged by process {kill['charge_pid']}, not one of the worker's {kill['pool_pids']}"
    expect(kill["charged"] and kill["charge_pid"] in kill["pool_pids"],
           called="POST /orders/order-A/checkout, then watching who charges the card",
           expected=f"a pool process of the Celery worker (worker pid {kill['worker_pid']}) makes the charge",
           got=got,
           hint="work started with BackgroundTasks runs in the server's own process, after the response: a crash "
                "or a deploy of the server loses it. Send it to the broker instead.", todo=4)


def test_status_endpoint(report: dict) -> None:
    """GET /tasks/{task_id} reports the task's state until its outcome"""
    states, posts = require(report, "states", "posts")
    a = states.get("A") or []
    outcome = report.get("backend_states", {}).get("A")
    expect(posts["A"]["task_id"], called="POST /orders/order-A/checkout", expected="a task_id to poll",
           got=answer(posts["A"]), hint="see the first expectation.", todo=4)
    expect(a and a[-1] in ("SUCCESS", "FAILURE") and a[-1] == outcome
           and all(not s.startswith(("HTTP", "no answer")) for s in a),
           called=f"GET /tasks/{posts['A']['task_id']} each time order-A's task changed state, until its outcome",
           expected='200 with JSON {"task_id": ..., "state": ...}: Celery\'s states, ending in the outcome the '
                    f"result backend records ({outcome})",
           got=f"states seen: {a or 'none'}" + (f"; the server raised {report['server_errors']}" if report.get("server_errors") else ""),
           hint="AsyncResult(task_id, app=celery_app).state reads the result backend.", todo=5)


def test_survives_worker_kill(report: dict) -> None:
    """A task whose worker process is killed mid-task is run again and completes"""
    kill, db = require(report, "kill", "db")
    expect(kill["killed"], called="waiting for order-A's charge in a worker process, to kill that process",
           expected="order-A charged by a worker process (then SIGKILLed during its invoice)",
           got="no worker process charged order-A, so there was nothing to kill (see the expectation above)",
           hint="the task must run in the worker.", todo=4)
    expect(db["A"]["invoices"] >= 1,
           called=f"SIGKILL of the pool process {kill['charge_pid']} while it sent order-A's invoice, "
                  f"then waiting up to {report['outcome_wait']:g} s",
           expected="the task delivered again to the worker and completed: order-A's invoice sent",
           got=f"no invoice for order-A; the task's state: {final_state(report, 'A')}",
           hint="by default Celery acknowledges a message when the task starts, so a task whose process dies is "
                "gone. Acknowledge late, and reject (requeue) when the worker is lost.", todo=1)


def test_charged_once(report: dict) -> None:
    """A task that runs twice charges the card once"""
    kill, db = require(report, "kill", "db")
    a, c = db["A"], db["C"]
    expect(a["charges"] == 1 and c["charges"] <= 1,
           called="order-A's task, killed after the charge and run again",
           expected="exactly 1 charge for order-A in the provider's records, however often the task ran",
           got=f"{a['charges']} charge(s) for order-A ({a['calls']} calls to the provider); "
               f"{c['charges']} for order-C",
           hint="a redelivered task starts again from the top. Tell the payment provider which charge this is, "
                "so it can recognise the second attempt.", todo=2)


def test_failure_reported(report: dict) -> None:
    """A declined card ends in FAILURE, and the client can see it"""
    states, posts = require(report, "states", "posts")
    b = states.get("B") or []
    expect(b and b[-1] == "FAILURE",
           called=f"POST /orders/order-B/checkout with the declined card, then GET /tasks/{posts['B']['task_id']}",
           expected='the state "FAILURE" (the task raised CardDeclined)',
           got=f"states seen: {b or 'none'}; in the result backend: {final_state(report, 'B')}",
           hint="a task that catches its exception and returns normally is recorded as SUCCESS: let it raise.",
           todo=3)


def test_declined_not_retried(report: dict) -> None:
    """A declined card is not retried"""
    db = require(report, "db")
    calls = db["B"]["calls"]
    expect(calls == 1, called="POST /orders/order-B/checkout with the declined card",
           expected="1 call to the payment provider: a decline is permanent",
           got=f"{calls} calls for order-B",
           hint="retry only what can succeed later (GatewayTimeout), not every exception.", todo=3)


def test_transient_error_retried(report: dict) -> None:
    """A payment provider timeout is retried until it succeeds"""
    db = require(report, "db")
    c = db["C"]
    expect(c["calls"] >= 2 and c["charges"] == 1 and c["invoices"] >= 1,
           called="POST /orders/order-C/checkout with the card whose provider times out on the first call",
           expected="a second call to the provider, then 1 charge and the invoice (state SUCCESS)",
           got=f"{c['calls']} call(s), {c['charges']} charge(s), {c['invoices']} invoice(s); "
               f"the task's state: {final_state(report, 'C')}",
           hint="Celery can retry a task for you on the exceptions you name, waiting longer each time.", todo=3)


def test_concurrent_checkouts(report: dict) -> None:
    """One order checked out twice at once is charged once; a valid checkout after a refused one succeeds"""
    together = require(report, "together")
    refused, answers, db, states = together["refused"], together["answers"], together["db"], together["states"]
    expect(refused["status"] == 422, called=refused["request"], expected="422: the amount must be positive",
           got=answer(refused), hint="keep the body's model (Checkout): FastAPI refuses a bad body before your "
                                     "code runs.", todo=4)
    expect(all(a["status"] == 202 and a["task_id"] for a in answers) and db["charges"] == 1
           and all(s == "SUCCESS" for s in states),
           called=" and ".join(a["request"] for a in answers) + ", sent at the same moment after the refused one",
           expected="202 with a task_id for both, both tasks ending in SUCCESS, and 1 charge for the order",
           got=" / ".join(answer(a) for a in answers)
               + f"\nthe tasks' states: {states}; {db['charges']} charge(s) ({db['calls']} calls to the provider)",
           hint="the same order may be checked out twice (a client that retries, a double click): the charge's "
                "idempotency key must name the order's charge, not one run of one task.", todo=2)


def test_nothing_left_running(report: dict) -> None:
    """The app stops by itself on SIGTERM, and nothing your code started is left running"""
    nothing_left_running(report)
