"""Probe of celery_task_module.yml: runs the old form, prints one JSON line."""

from probekit import emit, error

try:
    from celery.task import task
except ImportError as exc:
    outcome = error(exc)
else:
    outcome = {"raised": None}
from celery import Celery, shared_task
app = Celery("tasks", broker="memory://", set_as_current=False)
@app.task(name="send_invoice")
def send_invoice(order_id):
    return order_id
emit(**outcome, today=send_invoice.name, shared=callable(shared_task))
