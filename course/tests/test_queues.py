"""course.queues: real Celery workers on real brokers, started, killed and always cleaned up."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import psutil
import pytest

from course.queues import (broker_down, rabbitmq_broker, redis_broker, run_worker, run_workers, sqlite_broker,
                           start_worker, wait_until)

TASKS = textwrap.dedent("""
    import os, time
    from celery import Celery

    app = Celery("t", broker=os.environ["BROKER_URL"], backend=os.environ["RESULT_BACKEND"])
    app.conf.update(task_default_queue=os.environ["TASK_QUEUE"], broker_connection_retry_on_startup=True,
                    broker_transport_options=__import__("json").loads(os.environ["BROKER_OPTIONS"]),
                    worker_enable_remote_control=False)

    @app.task(name="add")
    def add(a, b, sleep=0):
        time.sleep(sleep)
        return a + b

    class Flaky(Exception):
        pass

    @app.task(name="flaky", bind=True, autoretry_for=(Flaky,), retry_backoff=True, max_retries=2)
    def flaky(self):
        raise Flaky(self.request.retries)
""")


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "tasks.py").write_text(TASKS)
    return tmp_path


def gone(pids: list[int]) -> bool:
    return all(not psutil.pid_exists(p) or psutil.Process(p).status() == psutil.STATUS_ZOMBIE for p in pids)


def test_sqlite_worker_runs_a_task_and_is_stopped(app_dir: Path, tmp_path: Path) -> None:
    with sqlite_broker(tmp_path / "broker") as broker:
        with run_worker("tasks", app_dir=app_dir, env=broker.env) as worker:
            assert worker.ready_seconds > 0
            pids = [worker.pid, *(p.pid for p in worker.pool_children())]
            assert len(pids) == 2  # the main process and one pool process (-c 1)
            assert broker.client().send_task("add", args=[2, 3]).get(timeout=20) == 5
        assert gone(pids)
        assert " ready." in worker.log() and not worker.log_path.exists()  # the log outlives its file


def test_two_workers_start_side_by_side_on_a_new_sqlite_broker(app_dir: Path, tmp_path: Path) -> None:
    with sqlite_broker(tmp_path / "broker") as broker, run_workers("tasks", 2, app_dir=app_dir, env=broker.env) as workers:
        assert all(w.proc.poll() is None for w in workers)


def test_kill_pool_child_and_kill_the_whole_worker(app_dir: Path, tmp_path: Path) -> None:
    with sqlite_broker(tmp_path / "broker") as broker, run_worker("tasks", app_dir=app_dir, env=broker.env) as worker:
        first = worker.kill_pool_child()
        wait_until(lambda: [p.pid for p in worker.pool_children()] not in ([], [first]), timeout=20,
                   what="a new pool process")  # the worker replaces the killed one
        with pytest.raises(RuntimeError, match="not one of the worker's pool processes"):
            worker.kill_pool_child(worker.pid)
        pids = [worker.pid, *(p.pid for p in worker.pool_children())]
        worker.kill()
        assert worker.proc.returncode == -9 and gone(pids)


def test_redis_broker_deletes_its_keys(app_dir: Path, tmp_path: Path) -> None:
    import redis

    from course.services import REDIS_URL, redis_available

    if not redis_available():
        pytest.skip("Redis is not running")
    with redis_broker(tmp_path / "r") as broker:
        prefix = broker.options["global_keyprefix"]
        broker.client().send_task("add", args=[1, 1])  # no worker: the message stays in the queue
        client = redis.Redis.from_url(REDIS_URL)
        assert list(client.scan_iter(match=prefix + "*"))
    assert not list(client.scan_iter(match=prefix + "*"))
    client.close()


def test_rabbitmq_broker_deletes_its_queue(app_dir: Path, tmp_path: Path) -> None:
    import kombu

    from course.services import RABBITMQ_URL, rabbitmq_available

    if not rabbitmq_available():
        pytest.skip("RabbitMQ is not running")
    with rabbitmq_broker(tmp_path / "q") as broker:
        broker.client().send_task("add", args=[1, 1])
        queue = broker.queue
        with kombu.Connection(RABBITMQ_URL) as conn:  # a dead-letter queue of the lesson's kind
            conn.channel().queue_declare(queue=f"{queue}.dead")
    with kombu.Connection(RABBITMQ_URL) as conn:
        for name in (queue, f"{queue}.dead"):
            with pytest.raises(Exception, match="NOT_FOUND"):
                conn.channel().queue_declare(queue=name, passive=True)


def test_a_sqlite_broker_that_is_down_refuses_a_publish_then_takes_it(app_dir: Path, tmp_path: Path) -> None:
    import kombu.exceptions
    from celery import Celery

    with sqlite_broker(tmp_path / "broker") as broker:
        sender = Celery("sender", broker=broker.url + "?timeout=0.1", set_as_current=False)
        sender.conf.task_default_queue = broker.queue
        try:
            with broker_down(broker):
                # refused while the lock is still held: the publish did not wait for the broker's return
                with pytest.raises(kombu.exceptions.OperationalError, match="database is locked"):
                    sender.send_task("add", args=[1, 2], retry=False)
            sender.send_task("add", args=[1, 2], retry=False)  # the lock is gone
        finally:
            sender.close()
    with pytest.raises(ValueError, match="SQLite"):
        with broker_down(type(broker)("Redis", "redis://", "q", "")):
            pass


def test_retry_jitter_off_makes_the_backoff_exact(app_dir: Path, tmp_path: Path) -> None:
    with sqlite_broker(tmp_path / "broker") as broker:
        worker = start_worker("tasks", app_dir=app_dir, env=broker.env, sqlite_poll_interval=0.1, retry_jitter=False)
        try:
            worker.wait_ready()
            result = broker.client().send_task("flaky")
            wait_until(lambda: result.state == "FAILURE", timeout=20, what="the last retry")
        finally:
            worker.stop(0)
    waits = [line.split("Retry in ", 1)[1].split(":", 1)[0] for line in worker.log().splitlines() if "Retry in" in line]
    assert waits == ["1s", "2s"], waits
