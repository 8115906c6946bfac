"""Is a service the production track needs here? PostgreSQL, Redis, RabbitMQ.

    from course.services import redis_available, rabbitmq_available

    if redis_available():          # prints the version, or why the section is skipped
        ...

Every section that needs a server asks first and skips with a sentence when the server is not
running. In CI a skip would hide a broken section, so ``COURSE_REQUIRE_SERVICES=1`` (set by
``.ci/run``) turns "not reachable" into an error. ``COURSE_REQUIRE_POSTGRES=1``, the older name,
still works.
"""

from __future__ import annotations

import os

__all__ = ["REDIS_URL", "RABBITMQ_URL", "services_required", "redis_available", "rabbitmq_available"]

REDIS_URL = "redis://127.0.0.1:6379"
"""The course's Redis. Lessons use their own database number or key prefix and clean it up."""
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"
"""The course's RabbitMQ (guest/guest). Lessons declare their own queues and delete them."""

REQUIRE_ENV = ("COURSE_REQUIRE_SERVICES", "COURSE_REQUIRE_POSTGRES")


def services_required() -> bool:
    """True when a section may not skip for want of a server (CI sets COURSE_REQUIRE_SERVICES=1)."""
    return any(os.environ.get(name) == "1" for name in REQUIRE_ENV)


def _unreachable(what: str, where: str, exc: BaseException) -> bool:
    if services_required():
        raise RuntimeError(f"COURSE_REQUIRE_SERVICES=1 but {what} is not reachable at {where}") from exc
    print(f"{what} is not reachable at {where} ({exc!r}).\n"
          f"This section is skipped. Start {what} and run it again to see it.")
    return False


def redis_available(url: str = REDIS_URL, *, timeout: float = 3.0) -> bool:
    """True if Redis answers PING at ``url``; prints its version, or why the section is skipped."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            print("Redis", client.info("server")["redis_version"])
        finally:
            client.close()
    except (OSError, redis.RedisError) as exc:
        return _unreachable("Redis", url, exc)
    return True


def rabbitmq_available(url: str = RABBITMQ_URL, *, timeout: float = 3.0) -> bool:
    """True if RabbitMQ accepts an AMQP connection at ``url``; prints its version, or why not."""
    import kombu

    try:
        with kombu.Connection(url, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
            props = conn.connection.server_properties
            print("RabbitMQ", props.get("version", "?"))
    except Exception as exc:  # kombu wraps socket errors in its own types, by transport
        return _unreachable("RabbitMQ", url.replace("guest:guest@", ""), exc)
    return True
