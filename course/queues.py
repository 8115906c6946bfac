"""Celery brokers and workers for the lessons: a real worker subprocess on a real broker, killed
on purpose, and always cleaned up.

    from course.queues import sqlite_broker, redis_broker, rabbitmq_broker, run_worker, broker_down

    with sqlite_broker(folder) as broker, run_worker("tasks", app_dir=DEMO, env=broker.env) as worker:
        ...                               # send tasks with broker.env in os.environ
        worker.kill_pool_child()          # SIGKILL the process running the task
        worker.kill()                     # SIGKILL the whole worker (main process and pool)
        with broker_down(broker):         # the SQLite broker refuses every write for the block
            ...

A broker is a URL plus what makes it private to this run: on SQLite its own file, on Redis a key
prefix (``global_keyprefix``) whose keys are deleted afterwards, on RabbitMQ its own queue and
exchange (and a dead-letter queue ``<queue>.dead`` if one was declared), deleted afterwards.
``broker.env`` holds the environment variables the course's Celery
apps read (``BROKER_URL``, ``RESULT_BACKEND``, ``TASK_QUEUE``, ``BROKER_OPTIONS`` as JSON); every
broker uses a SQLite result backend in the run's folder.

A worker runs as ``celery -A module worker -P prefork -c N --without-heartbeat --without-gossip
--without-mingle -l info -Q queue`` (started through :data:`BOOT`, which works around a thread-safety
bug of kombu's SQLite transport), logs to a file (never a pipe nobody reads),
in this process's session (a kernel that stops takes it along), and inherits ``COURSE_RUN_ID`` and
the grader's marker, so a leftover is found. Leaving the ``with`` block stops it: SIGTERM, then
SIGKILL for the worker and every child still alive.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import psutil

from course.processes import stop_tree

__all__ = ["Broker", "Worker", "broker_down", "declare_sqlite_queue", "sqlite_broker", "redis_broker",
           "rabbitmq_broker", "run_worker", "run_workers", "start_worker", "wait_until", "WORKER_ARGS", "BOOT"]

WORKER_ARGS = ("-P", "prefork", "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "info")
"""The worker's options besides ``-c`` and ``-Q``: one prefork pool, none of the cluster chatter
(heartbeats, gossip, the start-up "mingle" with other workers) a single lesson worker does not need."""

T = TypeVar("T")


def wait_until(condition: Callable[[], T], *, timeout: float, interval: float = 0.02, what: str = "the condition") -> T:
    """Call ``condition`` until it returns something true; return that, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:g} s")
        time.sleep(interval)


# --- brokers -------------------------------------------------------------------------------------

@dataclass
class Broker:
    """A broker for one run: its URL, its private queue name, transport options, and the result backend."""

    name: str
    url: str
    queue: str
    result_backend: str
    options: dict[str, Any] = field(default_factory=dict)
    _client: Any = field(default=None, repr=False)

    @property
    def env(self) -> dict[str, str]:
        """The environment the course's Celery apps read (set it for the worker and the sender)."""
        return {"BROKER_URL": self.url, "RESULT_BACKEND": self.result_backend, "TASK_QUEUE": self.queue,
                "BROKER_OPTIONS": json.dumps(self.options)}

    def display_url(self) -> str:
        return re.sub(r"//[^@/]*@", "//", self.url)

    def client(self) -> Any:
        """A Celery app that only sends tasks (by name, ``send_task``) and reads their results: no
        worker code imported, no environment variable changed, so threads can each use their own."""
        if self._client is None:
            from celery import Celery

            app = Celery(f"client-{self.queue}", broker=self.url, backend=self.result_backend, set_as_current=False)
            app.conf.update(task_default_queue=self.queue, broker_transport_options=self.options,
                            broker_connection_retry_on_startup=True)
            self._client = app
        return self._client

    def close(self) -> None:
        """Close the client's connections (each broker context manager calls it on exit)."""
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            manager = getattr(self._client.backend, "session_manager", None)  # the SQLAlchemy result backend
            for engine in list(getattr(manager, "_engines", {}).values()):
                engine.dispose()
            self._client = None


def _run_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _folder(folder: str | os.PathLike | None) -> tuple[Path, Callable[[], None]]:
    if folder is not None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        return Path(folder), lambda: None
    tmp = tempfile.TemporaryDirectory(prefix="course-queue-")
    return Path(tmp.name), tmp.cleanup


def declare_sqlite_queue(url: str, queue: str) -> None:
    """Create the SQLite transport's tables and the queue's row before any worker starts: two workers
    starting at once on a new file both insert the row, and kombu 5.7 lets the loser's IntegrityError
    end its start-up. (It also leaves this process with the transport's engine cached.)"""
    import kombu

    with kombu.Connection(url) as conn:
        conn.default_channel.queue_declare(queue=queue)


@contextlib.contextmanager
def sqlite_broker(folder: str | os.PathLike | None = None, *, prefix: str = "course") -> Iterator[Broker]:
    """Celery's SQLAlchemy transport on a SQLite file: no server. The worker polls it once a second."""
    where, cleanup = _folder(folder)
    broker = Broker("SQLite", f"sqla+sqlite:///{where / 'broker.db'}", _run_name(prefix),
                    f"db+sqlite:///{where / 'results.db'}")
    declare_sqlite_queue(broker.url, broker.queue)
    try:
        yield broker
    finally:
        broker.close()
        cleanup()


@contextlib.contextmanager
def redis_broker(folder: str | os.PathLike | None = None, *, url: str | None = None, prefix: str = "course",
                 **options: Any) -> Iterator[Broker]:
    """Redis, every key under a prefix of this run's own (deleted afterwards). ``options`` are transport
    options, e.g. ``visibility_timeout=3``."""
    import redis

    from course.services import REDIS_URL

    url = url or REDIS_URL
    queue = _run_name(prefix)
    keyprefix = f"{queue}:"
    where, cleanup = _folder(folder)
    broker = Broker("Redis", url, queue, f"db+sqlite:///{where / 'results.db'}", {"global_keyprefix": keyprefix, **options})
    try:
        yield broker
    finally:
        broker.close()
        try:
            client = redis.Redis.from_url(url, socket_timeout=5)
            try:
                keys = list(client.scan_iter(match=keyprefix + "*", count=500))
                if keys:
                    client.delete(*keys)
            finally:
                client.close()
        finally:
            cleanup()


@contextlib.contextmanager
def rabbitmq_broker(folder: str | os.PathLike | None = None, *, url: str | None = None,
                    prefix: str = "course") -> Iterator[Broker]:
    """RabbitMQ, with a queue and an exchange of this run's own (both deleted afterwards)."""
    import kombu

    from course.services import RABBITMQ_URL

    url = url or RABBITMQ_URL
    queue = _run_name(prefix)
    where, cleanup = _folder(folder)
    broker = Broker("RabbitMQ", url, queue, f"db+sqlite:///{where / 'results.db'}")
    try:
        yield broker
    finally:
        broker.close()
        try:
            with kombu.Connection(url, connect_timeout=5) as conn:
                # one channel per deletion: deleting what does not exist closes the channel
                for delete, name in ((_delete_queue, queue), (_delete_queue, f"{queue}.dead"),
                                     (_delete_exchange, queue)):
                    with contextlib.suppress(Exception):
                        delete(conn.channel(), name)
        finally:
            cleanup()


def _delete_queue(channel: Any, name: str) -> None:
    channel.queue_delete(name)


def _delete_exchange(channel: Any, name: str) -> None:
    channel.exchange_delete(name)


@contextlib.contextmanager
def broker_down(broker: Broker) -> Iterator[None]:
    """The SQLite broker is unavailable for the block: another connection holds its write lock
    (``BEGIN EXCLUSIVE``), as a stuck writer would. A publish then fails once the sender's SQLite
    timeout is up (``database is locked``, raised by kombu as ``kombu.exceptions.OperationalError``,
    the exception a Redis or RabbitMQ that refuses connections gives too); a worker's poll waits
    up to its own timeout (SQLite's 5 s), so keep the block shorter than that. Give the sender a
    short timeout with ``?timeout=0.2`` on its broker URL (a URL of its own: kombu keeps one
    engine per URL in each process)."""
    import sqlite3

    if broker.name != "SQLite":
        raise ValueError(f"broker_down() locks a SQLite broker's file; {broker.name} is a server to stop")
    lock = sqlite3.connect(broker.url.split("///", 1)[1], timeout=10, isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        with contextlib.suppress(sqlite3.Error):
            lock.execute("ROLLBACK")
        lock.close()


# --- workers ---------------------------------------------------------------------------------------

@dataclass
class Worker:
    """A running Celery worker subprocess."""

    proc: subprocess.Popen
    log_path: Path
    ready_seconds: float = 0.0
    """From the start of ``python -m celery`` to the worker's ``ready.`` line."""
    _final_log: str | None = None
    _started: float = 0.0

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Wait for the worker's ``ready.`` line; returns the seconds since its start."""
        deadline = self._started + timeout
        while " ready." not in self.log_path.read_text(errors="replace"):
            if self.proc.poll() is not None:
                raise RuntimeError(f"the Celery worker exited with code {self.proc.returncode} during start-up. "
                                   f"Its log:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Celery worker was not ready within {timeout:g} s. Its log:\n{self.log()[-3000:]}")
            time.sleep(0.02)
        self.ready_seconds = time.monotonic() - self._started
        return self.ready_seconds

    def stop(self, timeout: float = 1.0) -> None:
        """SIGTERM, wait ``timeout`` seconds, then SIGKILL the worker and its pool; keep the log."""
        if self._final_log is not None:
            return
        stop_tree(self.proc, timeout=timeout)  # SIGTERM: a warm shutdown, the worker finishes what it runs
        self._final_log = self.log_path.read_text(errors="replace")
        self.log_path.unlink(missing_ok=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        """Everything the worker has logged so far (kept after it stops)."""
        if self._final_log is not None:
            return self._final_log
        return self.log_path.read_text(errors="replace")

    def pool_children(self) -> list[psutil.Process]:
        """The prefork pool's processes (the ones that run the tasks)."""
        try:
            return psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return []

    def kill_pool_child(self, pid: int | None = None) -> int:
        """SIGKILL one pool process (``pid``, or the only one), as the kernel's OOM killer would."""
        children = [p.pid for p in self.pool_children()]
        if pid is None:
            if len(children) != 1:
                raise RuntimeError(f"the worker has {len(children)} pool processes; say which one to kill")
            pid = children[0]
        elif pid not in children:
            raise RuntimeError(f"{pid} is not one of the worker's pool processes {children}")
        os.kill(pid, signal.SIGKILL)
        return pid

    def kill(self) -> None:
        """SIGKILL the whole worker: the main process and its pool, at once (a crashed machine)."""
        stop_tree(self.proc, timeout=0)

    def wait_for_log(self, text: str, *, timeout: float = 10.0) -> None:
        """Wait until the worker has logged ``text``."""
        wait_until(lambda: text in self.log(), timeout=timeout, what=f"the worker logging {text!r}")


# How the course starts a worker: ``python -c BOOT POLL -A module worker ...``. BOOT serialises the SQLite
# transport's database session across the worker's threads, sets its polling interval (POLL, "" for
# kombu's 1 s), turns off the jitter of autoretry's backoff when COURSE_RETRY_JITTER=0 (the grader, to
# see the waits a learner configured), then runs Celery's own command line. kombu 5.7's SQLite transport
# shares one SQLAlchemy session per channel between threads (celery/kombu#1395): in a prefork worker the
# pool's thread requeues a task whose process died (reject_on_worker_lost) while the main thread polls,
# and about one such requeue in forty failed here ("UNABLE TO RESTORE 1 MESSAGES: IntegrityError", the
# task lost). A pool process is forked from the main process (again each time one dies), so BOOT gives
# each new one fresh locks (a lock the main process's poller held at the fork would never be released
# in the child: its first publish, a retry, hung until the task's time limit) and lets it drop the
# parent's SQLite connections (SQLAlchemy's advice for a fork: dispose(close=False)).
BOOT = """
import os, sys, threading
import kombu.transport.sqlalchemy as sqla
locks = [threading.RLock()]
def serialised(method):
    def run(self, *args, **kwargs):
        with locks[0]:
            return method(self, *args, **kwargs)
    return run
for name in ("_get", "_put", "_purge", "_size", "_new_queue"):
    setattr(sqla.Channel, name, serialised(getattr(sqla.Channel, name)))
def after_fork_in_child():
    locks[0] = threading.RLock()
    sqla._MUTEX = threading.RLock()
    for engine, _ in list(sqla.Channel._engines.values()):
        engine.dispose(close=False)
os.register_at_fork(after_in_child=after_fork_in_child)
poll = sys.argv.pop(1)
if poll:
    sqla.Transport.polling_interval = float(poll)
if os.environ.get("COURSE_RETRY_JITTER") == "0":
    import celery.app.autoretry as autoretry
    backoff = autoretry.get_exponential_backoff_interval
    def without_jitter(factor, retries, maximum, full_jitter=False):
        return backoff(factor, retries, maximum, full_jitter=False)
    autoretry.get_exponential_backoff_interval = without_jitter
sys.argv[0] = "celery"
from celery.__main__ import main
main()
"""


def start_worker(app_module: str, *, app_dir: str | os.PathLike, env: dict[str, str] | None = None,
                 queue: str | None = None, concurrency: int = 1, extra_args: tuple[str, ...] = (),
                 sqlite_poll_interval: float | None = None, retry_jitter: bool = True) -> Worker:
    """Start ``celery -A app_module worker`` in ``app_dir`` and return at once (``worker.wait_ready()``,
    ``worker.stop()``). Prefer :func:`run_worker`, which always stops it.

    The worker runs Celery's own command line through :data:`BOOT`, which works around a thread-safety
    bug of kombu's SQLite transport (see there). ``sqlite_poll_interval``: how often the worker polls
    the SQLite transport (kombu's 1 s by default, which no setting changes: its transport options all
    go to ``create_engine``). The grader sets it to 0.1 s on the worker's side only, to spend less time
    waiting; no behaviour it checks depends on it. ``retry_jitter=False`` makes ``retry_backoff``'s
    waits exact (1, 2, 4 s...) instead of random below those bounds, so that a check can see them grow."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if not retry_jitter:
        full_env["COURSE_RETRY_JITTER"] = "0"
    queue = queue or full_env.get("TASK_QUEUE")
    log_fd, log_name = tempfile.mkstemp(prefix="celery-worker-", suffix=".log")
    poll = "" if sqlite_poll_interval is None else str(sqlite_poll_interval)
    cmd = [sys.executable, "-c", BOOT, poll, "-A", app_module, "worker", *WORKER_ARGS, "-c", str(concurrency),
           "-n", f"{_run_name('worker')}@%h", *(["-Q", queue] if queue else []), *extra_args]
    # Not a new session: if the kernel (or the driver) dies, the worker is not orphaned in a session of its own.
    proc = subprocess.Popen(cmd, cwd=str(app_dir), stdout=log_fd, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=full_env)
    os.close(log_fd)
    return Worker(proc, Path(log_name), _started=time.monotonic())


@contextlib.contextmanager
def run_worker(app_module: str, *, app_dir: str | os.PathLike, env: dict[str, str] | None = None,
               queue: str | None = None, concurrency: int = 1, ready_timeout: float = 30.0,
               stop_timeout: float = 0.3, extra_args: tuple[str, ...] = (),
               sqlite_poll_interval: float | None = None) -> Iterator[Worker]:
    """Start ``celery -A app_module worker`` in ``app_dir``, wait for its ``ready.`` line, and stop it
    (with its pool) when the block ends, also when the block raises. ``queue`` defaults to
    ``env["TASK_QUEUE"]``.

    Stopping sends SIGTERM (a warm shutdown: the worker finishes its running tasks) and waits
    ``stop_timeout`` seconds, then SIGKILLs what is left. An idle worker on the SQLite transport
    takes about 6 s for its warm shutdown (it first finishes its 2 s polling rounds), so the
    lessons, which stop idle (or deliberately stuck) workers, wait 0.3 s and no longer. ``sqlite_poll_interval``: see
    :func:`start_worker`."""
    worker = start_worker(app_module, app_dir=app_dir, env=env, queue=queue, concurrency=concurrency,
                          extra_args=extra_args, sqlite_poll_interval=sqlite_poll_interval)
    try:
        worker.wait_ready(ready_timeout)
        yield worker
    finally:
        worker.stop(stop_timeout)


@contextlib.contextmanager
def run_workers(app_module: str, count: int, *, app_dir: str | os.PathLike, env: dict[str, str] | None = None,
                ready_timeout: float = 30.0, stop_timeout: float = 0.3, **options: Any) -> Iterator[list[Worker]]:
    """``count`` workers on the same queue, started side by side (not one after the other), each
    stopped when the block ends. ``options`` as for :func:`start_worker`."""
    workers: list[Worker] = []
    try:
        for _ in range(count):
            workers.append(start_worker(app_module, app_dir=app_dir, env=env, **options))
        for worker in workers:
            worker.wait_ready(ready_timeout)
        yield workers
    finally:
        for worker in workers:
            worker.stop(stop_timeout)
