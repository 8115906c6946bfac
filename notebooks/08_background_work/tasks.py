"""The notebook's Celery app: a photo service. An uploaded photo is processed in a worker: decode
it, mail its owner that it is live, archive the original (slow).

Its settings come from the environment, as a real deployment's do: BROKER_URL, RESULT_BACKEND,
TASK_QUEUE and BROKER_OPTIONS (transport options, JSON) name the broker. SETTINGS (comma-separated)
turns on what each section adds: durable (section 4), capped and time_limit (section 5),
dead_letter (section 5, RabbitMQ). PHOTOS_DB is the service's own database (photos.py); JOURNAL_DB
records what happened outside it: each run of a task, and each e-mail the mail service sent (the
effect a redelivered task must not repeat).

    python -m celery -A tasks worker -P prefork -c 1 -Q $TASK_QUEUE -l info
"""

import json
import os
import time

from celery import Celery
from kombu import Exchange, Queue

import photos

QUEUE = os.environ.get("TASK_QUEUE", "celery")
SETTINGS = set(filter(None, os.environ.get("SETTINGS", "").split(",")))

app = Celery("tasks", broker=os.environ["BROKER_URL"], backend=os.environ["RESULT_BACKEND"])
app.conf.update(
    task_default_queue=QUEUE,
    broker_transport_options=json.loads(os.environ.get("BROKER_OPTIONS", "{}")),
    broker_connection_retry_on_startup=True,
    worker_enable_remote_control=False,
    task_track_started=True,        # a STARTED state while the task runs (off by default)
    worker_prefetch_multiplier=1,   # reserve one task per pool process, not four
    # How long the worker waits, after a pool process died, for a result it may have sent before it
    # died. Celery's default is 10 s.
    worker_lost_wait=float(os.environ.get("WORKER_LOST_WAIT", "1")),
)
ARCHIVE_SECONDS = float(os.environ.get("ARCHIVE_SECONDS", "1.0"))


def archive_original(photo_id: str) -> None:
    time.sleep(ARCHIVE_SECONDS)  # copy the original to cold storage: slow


# max_retries and default_retry_delay: see section 5 (Celery's defaults: 3 retries, 180 s apart).
@app.task(name="process_photo", max_retries=2, default_retry_delay=0.5)
def process_photo(photo_id: str) -> dict:
    """Decode, mail the owner, archive. Run twice, it mails twice."""
    photos.record_run(photo_id)
    photo = photos.load(photo_id)      # PhotoNotFound if its row is not committed
    photos.decode(photo)               # a corrupt file kills the process; a pathological one hangs
    photos.mail_owner(photo)
    archive_original(photo_id)
    return {"photo_id": photo_id, "size": photo.size}


@app.task(name="process_photo_flaky_mailer", bind=True, autoretry_for=(photos.MailTimeout,),
          retry_backoff=True, max_retries=5)
def process_photo_flaky_mailer(self, photo_id: str, timeouts: int) -> dict:
    """The mail service times out on the first `timeouts` calls; Celery retries, with backoff."""
    if photos.record_run(photo_id) <= timeouts:
        try_ = self.request.retries + 1
        raise photos.MailTimeout(f"no answer from the mail service (try {try_})")
    photo = photos.load(photo_id)
    photos.mail_owner(photo, idempotency_key=f"live-{photo_id}")
    return {"photo_id": photo_id, "retries": self.request.retries}


# --- Section 4: an idempotent task, and what SETTINGS=durable turns on ---------------------------
@app.task(name="process_photo_idempotent", max_retries=2, default_retry_delay=0.5)
def process_photo_idempotent(photo_id: str) -> dict:
    """The same work; the mail service gets a key per photo, so a second run mails nobody."""
    photos.record_run(photo_id)
    photo = photos.load(photo_id)
    photos.decode(photo)
    photos.mail_owner(photo, idempotency_key=f"live-{photo_id}")
    archive_original(photo_id)
    return {"photo_id": photo_id, "size": photo.size}


if "durable" in SETTINGS:
    app.conf.task_acks_late = True              # acknowledge when the task ends, not when it starts
    app.conf.task_reject_on_worker_lost = True  # the pool process died mid-task: requeue the task


# --- Section 5: what SETTINGS=capped, time_limit, dead_letter turn on ----------------------------
if "capped" in SETTINGS:
    app.conf.task_retry_on_worker_lost = True  # a lost process is a retry: max_retries ends it
if "time_limit" in SETTINGS:
    app.conf.task_soft_time_limit = 1.0  # SoftTimeLimitExceeded is raised inside the task
    app.conf.task_time_limit = 3.0       # the pool process is killed if the task is still running


def dead_letter_queues(name: str) -> list[Queue]:
    """RabbitMQ: the queue `name`, whose rejected messages go to `name.dead`, and that one."""
    dead = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": f"{name}.dead"}
    queue = Queue(name, Exchange(name), routing_key=name, queue_arguments=dead)
    return [queue, Queue(f"{name}.dead")]


if "dead_letter" in SETTINGS:  # RabbitMQ: a message that fails for good goes to QUEUE.dead
    app.conf.task_acks_on_failure = False  # reject it, so that RabbitMQ dead-letters it
    app.conf.task_queues = dead_letter_queues(QUEUE)[:1]


# --- Section 8: a result someone reads, and one nobody reads -----------------------------------
@app.task(name="count_photos")
def count_photos(owner: str) -> int:
    """A quick task whose result someone reads (a page polls for it)."""
    return photos.count(owner)


@app.task(name="warm_cache", ignore_result=True)
def warm_cache(owner: str) -> int:
    """The same work, fired and forgotten: nobody reads the result, so none is stored."""
    return photos.count(owner)
