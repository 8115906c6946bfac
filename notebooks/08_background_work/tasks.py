"""The notebook's Celery app: a checkout that charges a card, then sends the invoice.

Its settings come from the environment, as a real deployment's do: BROKER_URL, RESULT_BACKEND,
TASK_QUEUE and BROKER_OPTIONS (transport options, JSON) name the broker; DURABLE=1 turns on the
settings of section 4; SHOP_DB is the shop's SQLite database, where the "payment provider" records
every charge it makes (the effect a redelivered task must not repeat).

    python -m celery -A tasks worker -P prefork -c 1 -Q $TASK_QUEUE -l info
"""

import json
import os
import sqlite3
import time

from celery import Celery

app = Celery("tasks", broker=os.environ["BROKER_URL"], backend=os.environ["RESULT_BACKEND"])
app.conf.update(
    task_default_queue=os.environ.get("TASK_QUEUE", "celery"),
    broker_transport_options=json.loads(os.environ.get("BROKER_OPTIONS", "{}")),
    broker_connection_retry_on_startup=True,
    task_track_started=True,        # a STARTED state while the task runs (off by default)
    worker_prefetch_multiplier=1,   # reserve one task per pool process, not four
    worker_enable_remote_control=False,
    # How long the worker waits, after a pool process died, for a result it may have sent before it
    # died. Celery's default is 10 s; section 4 measures both.
    worker_lost_wait=float(os.environ.get("WORKER_LOST_WAIT", "1")),
)
if os.environ.get("DURABLE") == "1":
    app.conf.update(
        task_acks_late=True,              # acknowledge when the task has finished, not when it starts
        task_reject_on_worker_lost=True,  # a pool process killed mid-task: requeue the task, do not fail it
    )

INVOICE_SECONDS = float(os.environ.get("INVOICE_SECONDS", "1.0"))


class GatewayTimeout(Exception):
    """The payment provider did not answer in time: worth another try."""


def shop() -> sqlite3.Connection:
    db = sqlite3.connect(os.environ["SHOP_DB"], timeout=30, isolation_level=None)  # autocommit
    db.execute("CREATE TABLE IF NOT EXISTS attempts (order_id TEXT, pid INTEGER, at REAL)")
    db.execute("CREATE TABLE IF NOT EXISTS charges (order_id TEXT, amount_cents INTEGER, pid INTEGER,"
               " idempotency_key TEXT UNIQUE)")
    return db


def record_attempt(order_id: str) -> int:
    """Note that a run of the task started here (which process, when); returns the run's number."""
    with shop() as db:
        db.execute("INSERT INTO attempts VALUES (?, ?, ?)", (order_id, os.getpid(), time.time()))
        return db.execute("SELECT count(*) FROM attempts WHERE order_id = ?", (order_id,)).fetchone()[0]


def charge_card(order_id: str, amount_cents: int, idempotency_key: str | None = None) -> None:
    """The payment provider: one row per charge made. Like Stripe's Idempotency-Key, a key it has
    already seen makes no second charge."""
    with shop() as db:
        db.execute("INSERT INTO charges VALUES (?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING",
                   (order_id, amount_cents, os.getpid(), idempotency_key))


def send_invoice(order_id: str) -> None:
    time.sleep(INVOICE_SECONDS)  # render the PDF, send the e-mail


@app.task(name="checkout")  # an explicit name: the sender may import this module under another name
def checkout(order_id: str, amount_cents: int) -> dict:
    """Charge, then send the invoice. Run twice, it charges twice."""
    record_attempt(order_id)
    charge_card(order_id, amount_cents)
    send_invoice(order_id)
    return {"order_id": order_id, "charged_cents": amount_cents}


@app.task(name="checkout_idempotent")
def checkout_idempotent(order_id: str, amount_cents: int) -> dict:
    """The same work; the order id is the idempotency key, so a second run charges nothing."""
    record_attempt(order_id)
    charge_card(order_id, amount_cents, idempotency_key=f"charge-{order_id}")
    send_invoice(order_id)
    return {"order_id": order_id, "charged_cents": amount_cents}


@app.task(name="checkout_flaky_gateway", bind=True, autoretry_for=(GatewayTimeout,), retry_backoff=True, max_retries=5)
def checkout_flaky_gateway(self, order_id: str, amount_cents: int, timeouts: int) -> dict:
    """The provider times out on the first `timeouts` calls; Celery retries with exponential backoff."""
    if record_attempt(order_id) <= timeouts:
        raise GatewayTimeout(f"no answer from the payment provider (attempt {self.request.retries + 1})")
    charge_card(order_id, amount_cents, idempotency_key=f"charge-{order_id}")
    return {"order_id": order_id, "charged_cents": amount_cents, "retries": self.request.retries}
