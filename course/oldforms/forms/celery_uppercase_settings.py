"""Probe of celery_uppercase_settings.yml: runs the old form, prints one JSON line."""

from probekit import emit, error

from celery import Celery
from celery.exceptions import ImproperlyConfigured
class OldOnly:
    CELERY_ACKS_LATE = True
    CELERYD_PREFETCH_MULTIPLIER = 1
class Mixed:  # half migrated: one old name, one new
    CELERY_ACKS_LATE = True
    task_track_started = True
old = Celery("old", broker="memory://", set_as_current=False)
old.config_from_object(OldOnly)
mixed = Celery("mixed", broker="memory://", set_as_current=False)
mixed.config_from_object(Mixed)
try:
    mixed.conf.task_acks_late
except ImproperlyConfigured as exc:
    outcome = error(exc)
else:
    outcome = {"raised": None}
today = Celery("today", broker="memory://", set_as_current=False)
today.conf.update(task_acks_late=True, worker_prefetch_multiplier=1)
emit(old_only=[old.conf.task_acks_late, old.conf.worker_prefetch_multiplier], **outcome,
     today=[today.conf.task_acks_late, today.conf.worker_prefetch_multiplier])
