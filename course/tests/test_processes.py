"""course.processes.stop_tree against real process trees: children, orphans, groups, stubborn ones."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from course.processes import leads_own_group, stop_tree

# A parent that starts children, writes their pids to a file, then sleeps. CHILD ignores SIGTERM
# when told to; ORPHAN runs under a parent that exits at once (so it is no longer the tree's).
SCRIPT = textwrap.dedent("""
    import os, signal, subprocess, sys, time
    pids_file, mode = sys.argv[1], sys.argv[2]
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    stubborn = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "open(__import__('sys').argv[1], 'w').close(); time.sleep(60)"]
    pids = []
    if mode == "children":
        pids.append(subprocess.Popen(sleeper).pid)
    elif mode == "stubborn":
        ready = pids_file + ".ready"
        pids.append(subprocess.Popen([*stubborn, ready]).pid)
        while not os.path.exists(ready):
            time.sleep(0.01)
    elif mode == "orphan":  # a middle process starts the sleeper and exits: the sleeper is reparented
        middle = subprocess.run([sys.executable, "-c", "import subprocess, sys; "
                                 "print(subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], "
                                 "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)"],
                                capture_output=True, text=True)
        pids.append(int(middle.stdout))
    if mode == "ignore_term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(pids_file + ".tmp", "w") as f:
        f.write(" ".join(map(str, pids)))
    os.rename(pids_file + ".tmp", pids_file)
    time.sleep(60)
""")


@pytest.fixture(autouse=True)
def no_leftovers():
    """A failed test leaves nothing running (killed by hand: stop_tree is what is tested)."""
    before = {p.pid for p in psutil.process_iter()}
    yield
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if p.pid not in before and any("tree.py" in a or "time.sleep(60)" in a for a in p.cmdline()):
                p.kill()


def start(tmp_path: Path, mode: str, **popen: object) -> tuple[subprocess.Popen, list[psutil.Process]]:
    script, pids = tmp_path / "tree.py", tmp_path / f"pids-{mode}"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(pids), mode], stdin=subprocess.DEVNULL, **popen)
    deadline = time.monotonic() + 30
    while not pids.exists():
        assert proc.poll() is None and time.monotonic() < deadline, f"the tree did not start ({proc.returncode})"
        time.sleep(0.01)
    return proc, [psutil.Process(int(pid)) for pid in pids.read_text().split()]


def gone(procs: list[psutil.Process]) -> bool:
    return all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in procs)


def test_a_parent_and_its_children_stop_on_sigterm(tmp_path: Path) -> None:
    proc, children = start(tmp_path, "children")
    deadline = 10
    started = time.monotonic()
    stop_tree(proc, timeout=deadline)
    # The parent dies of SIGTERM; its child (which got no signal from it) gets SIGTERM once the parent is gone.
    assert proc.returncode == -signal.SIGTERM and gone(children)
    # Against the test's own deadline, not a budget: waiting for it is the failure this rules out.
    assert time.monotonic() - started < deadline, "nobody ignored SIGTERM: no need to wait for the deadline"


def test_what_ignores_sigterm_is_killed_at_the_deadline(tmp_path: Path) -> None:
    proc, children = start(tmp_path, "stubborn")
    started = time.monotonic()
    stop_tree(proc, timeout=1)
    seconds = time.monotonic() - started
    assert proc.returncode == -signal.SIGTERM and gone(children)
    # It waited for the 1 s deadline before killing (a busy machine only makes this longer; a hang
    # is pytest-timeout's to catch).
    assert seconds >= 0.9, seconds

    proc, _ = start(tmp_path, "ignore_term")
    stop_tree(proc, timeout=0.5)
    assert proc.returncode == -signal.SIGKILL


def test_timeout_zero_kills_at_once(tmp_path: Path) -> None:
    proc, children = start(tmp_path, "children")
    stop_tree(proc, timeout=0)
    assert proc.returncode == -signal.SIGKILL and gone(children)


def test_a_new_session_is_stopped_as_a_group_orphans_included(tmp_path: Path) -> None:
    proc, orphans = start(tmp_path, "orphan", start_new_session=True)
    assert leads_own_group(proc.pid)
    assert orphans[0].ppid() != proc.pid, "the sleeper is no longer under the tree: only its group finds it"
    stop_tree(proc, timeout=5)
    assert proc.returncode == -signal.SIGTERM and gone(orphans)


def test_a_reaped_group_leader_still_has_its_stragglers_stopped(tmp_path: Path) -> None:
    proc, orphans = start(tmp_path, "orphan", start_new_session=True)
    proc.kill()
    proc.wait()
    assert not gone(orphans)
    stop_tree(proc, timeout=5, group=True)
    assert gone(orphans)


def test_without_a_session_only_the_tree_is_touched(tmp_path: Path) -> None:
    """A child in this process's own group: the group (pytest's own) is never signalled."""
    proc, children = start(tmp_path, "children")
    assert not leads_own_group(proc.pid)
    stop_tree(proc, timeout=5, group=True)  # it leads no group: the tree only (never pytest's own group)
    assert proc.returncode == -signal.SIGTERM and gone(children)


def test_several_targets_and_plain_pids(tmp_path: Path) -> None:
    first, a = start(tmp_path, "children")
    second, b = start(tmp_path, "stubborn")
    stop_tree(psutil.Process(first.pid), second.pid, timeout=0)
    assert gone([*a, *b])
    assert first.wait(5) == second.wait(5) == -signal.SIGKILL
    stop_tree(first, second, timeout=1)  # already gone: nothing happens
    stop_tree(999_999_999, timeout=1)


def test_first_signal_sigabrt_dumps_the_stack(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-c", "import time; print('up', flush=True); "
                                 "time.sleep(60)"], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while "up" not in log.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    stop_tree(proc, timeout=5, first_signal=signal.SIGABRT)
    assert proc.returncode == -signal.SIGABRT
    assert "Fatal Python error: Aborted" in log.read_text() and "line 1 in <module>" in log.read_text()


@pytest.mark.parametrize("session", [False, True])
def test_uvicorn_with_workers_is_stopped_by_its_master(tmp_path: Path, session: bool) -> None:
    """The course's real case: a uvicorn master stops its own workers on SIGTERM (they finish cleanly)."""
    from course.server import free_port

    (tmp_path / "app.py").write_text("async def app(scope, receive, send):\n    pass\n")
    log = tmp_path / "uvicorn.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "app:app", "--app-dir", str(tmp_path), "--port",
                                 str(free_port()), "--workers", "2", "--lifespan", "off"], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=session)
    deadline = time.monotonic() + 30
    while log.read_text().count("Started server process") < 2:
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    stop_tree(proc, timeout=10)
    assert proc.returncode == 0, log.read_text()  # a clean shutdown, not a kill
    assert gone(tree)
