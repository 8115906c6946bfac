"""`course doctor`: one line per item, OK or what to do; a stopped service is named with the lesson
sections skipped without it. The services are "stopped" by pointing the doctor at a closed port
(COURSE_DOCTOR_POSTGRES and friends), never by stopping the real ones, which others use."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import pytest

from course.tooling import doctor

LINE = re.compile(r"^(OK|FIX|NOTE)\s+\S")


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then closed: refused from now on)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_doctor(*args: str, **env: str) -> tuple[int, str, float]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("COURSE_DOCTOR_")
                and k not in ("COURSE_REQUIRE_SERVICES", "COURSE_REQUIRE_POSTGRES")}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "course.tooling.cli", "doctor", *args], capture_output=True,
                          text=True, env={**full_env, **env}, timeout=60)
    return done.returncode, done.stdout + done.stderr, time.perf_counter() - start


def test_every_line_says_ok_or_what_to_do(record_time) -> None:
    code, out, seconds = run_doctor()
    record_time("course doctor (services as they are)", seconds)
    lines = out.strip().splitlines()
    items = [line for line in lines[:-2]]  # the last two: a blank line and the verdict
    assert items and all(LINE.match(line) for line in items), out
    for item in ("Python", "packages", "disk", "JupyterLab", "ports", "PostgreSQL", "Redis", "RabbitMQ",
                 "browser test", "open files"):
        assert any(line.split(None, 1)[1].startswith(item) for line in items), f"no line for {item}:\n{out}"
    assert re.search(r"course doctor: (ready|\d+ to fix).*\(\d+\.\d s\)$", lines[-1]), lines[-1]
    assert code == (1 if any(line.startswith("FIX") for line in items) else 0), out


def test_a_stopped_service_is_named_with_what_it_skips(record_time) -> None:
    port = closed_port()
    where = f"127.0.0.1:{port}"
    code, out, seconds = run_doctor(COURSE_DOCTOR_POSTGRES=where, COURSE_DOCTOR_REDIS=where,
                                    COURSE_DOCTOR_RABBITMQ=where)
    record_time("course doctor (three services stopped)", seconds)
    for name in ("PostgreSQL", "Redis", "RabbitMQ"):
        line = next(line for line in out.splitlines() if re.match(rf"\w+\s+{name}\s", line))
        assert line.startswith("NOTE"), line  # optional for a learner: not a failure
        assert f"not reachable at {where}" in line and "skipped without it:" in line and "start it" in line, line
    postgres = next(line for line in out.splitlines() if "PostgreSQL" in line)
    assert re.search(r"01 §\d+", postgres), postgres  # notebook 01's PostgreSQL section, read from the notebook
    assert not any(line.startswith("FIX") for line in out.splitlines() if "PostgreSQL" in line)
    # Under COURSE_REQUIRE_SERVICES=1 (CI) a stopped service is a failure
    code, out, _ = run_doctor(COURSE_DOCTOR_REDIS=where, COURSE_REQUIRE_SERVICES="1")
    line = next(line for line in out.splitlines() if re.match(r"\w+\s+Redis\s", line))
    assert line.startswith("FIX") and "COURSE_REQUIRE_SERVICES=1" in line, line
    assert code == 1, out


def test_a_package_off_its_pin_says_how_to_fix_it(monkeypatch) -> None:
    monkeypatch.setattr(doctor, "_pins", lambda: {"fastapi": "0.0.1", "surely-not-installed-here": "1.0"})
    line = doctor.check_venv()
    assert line.status == "FIX", line
    assert "fastapi" in line.text and "0.0.1 pinned" in line.text and "missing" in line.text, line
    assert "make venv" in line.text, line


def test_a_low_file_limit_says_how_to_raise_it(monkeypatch) -> None:
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda what: (256, 4096))
    line = doctor.check_files()
    assert line.status == "FIX" and "ulimit -n" in line.text, line


@pytest.mark.parametrize("name", list(doctor.SERVICES))
def test_the_probes_tell_a_wrong_server_from_a_right_one(name) -> None:
    """A port that answers with something else (here: a server that closes at once) is not the service."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        os.environ[doctor.SERVICES[name][1]] = f"127.0.0.1:{port}"
        try:
            import threading

            def refuse() -> None:
                conn, _ = server.accept()
                conn.close()

            threading.Thread(target=refuse, daemon=True).start()
            line = doctor.check_service(name)
        finally:
            del os.environ[doctor.SERVICES[name][1]]
    assert line.status in ("NOTE", "FIX") and f"127.0.0.1:{port}" in line.text, line
