"""The checkout task: charge the card, then send the invoice, in a Celery worker.

    celery -A tasks worker -P prefork -c 2 -l info

Settings come from the environment: BROKER_URL (default: a SQLite file, no server needed),
RESULT_BACKEND (where the task states are kept), TASK_QUEUE and CHECKOUT_TIME_LIMIT.
"""

import os

from celery import Celery

import shop

CHECKOUT_TIME_LIMIT = float(os.environ.get("CHECKOUT_TIME_LIMIT", "30"))
"""The longest a checkout may run, in seconds (the checks set a few)."""

celery_app = Celery(
    "tasks",
    broker=os.environ.get("BROKER_URL", "sqla+sqlite:///broker.db"),
    backend=os.environ.get("RESULT_BACKEND", "db+sqlite:///results.db"),
)
celery_app.conf.update(
    task_default_queue=os.environ.get("TASK_QUEUE", "celery"),
    broker_connection_retry_on_startup=True,
    task_track_started=True,       # STARTED while it runs, for the status endpoint
    worker_prefetch_multiplier=1,  # a worker reserves one task per pool process
    worker_lost_wait=0.2,          # after a pool process died, wait 0.2 s (not 10) for a result it may have sent
    # TODO 1: the task is acknowledged only once it has finished, and requeued if the process running it dies.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # TODO 2: ...but not forever: a task whose process dies on every try ends in FAILURE after at most 3 tries.
    task_retry_on_worker_lost=True,  # a lost process counts as a retry, so max_retries ends the loop
    # TODO 3: a checkout still running after CHECKOUT_TIME_LIMIT seconds is stopped.
    task_soft_time_limit=CHECKOUT_TIME_LIMIT,   # SoftTimeLimitExceeded inside the task
    task_time_limit=CHECKOUT_TIME_LIMIT + 5,    # the process is killed if that did not end it
)


# TODO 4: retry the provider's timeouts with growing waits, at most 3 calls in all; a declined card fails at once.
@celery_app.task(bind=True, autoretry_for=(shop.GatewayTimeout,), retry_backoff=True, retry_backoff_max=8,
                 max_retries=2, default_retry_delay=0)
def checkout(self, order_id: str) -> dict:
    # TODO 5: the order's id is all the task gets (the card stays in the shop's database); one charge per order.
    order = shop.load_order(order_id)
    charge_id = shop.charge_card(order.order_id, order.amount_cents, order.card,
                                 idempotency_key=f"checkout-{order_id}")
    shop.send_invoice(order_id)
    return {"order_id": order_id, "charge_id": charge_id}
