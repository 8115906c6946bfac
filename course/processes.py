"""Stopping a process and everything it started: the one way the course does it.

    from course.processes import stop_tree

    stop_tree(proc, timeout=10)           # SIGTERM, up to 10 s to stop, then SIGKILL what is left
    stop_tree(proc, timeout=0)            # SIGKILL the whole tree at once (a crash, an overrun)
    stop_tree(*leftovers, timeout=0)      # several at once (psutil.Process objects or pids)

Servers, Celery workers, JupyterLab, pytest and the learner's scripts all start children (uvicorn's
workers, the prefork pool, kernels, xdist workers) that outlive a parent killed alone. A process
started with ``start_new_session=True`` leads a process group, and the group also holds children
that are no longer anyone's descendants (their parent died): there the signals go to the group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from typing import Union

import psutil

__all__ = ["stop_tree", "leads_own_group"]

Target = Union[subprocess.Popen, psutil.Process, int]

KILL_WAIT = 5.0
"""Seconds to wait for the tree to disappear after SIGKILL (a process in uninterruptible sleep
takes a moment)."""


def leads_own_group(pid: int) -> bool:
    """True when ``pid`` leads a process group other than this process's own (it was started with
    ``start_new_session=True`` or ``process_group=0``): signalling that group cannot hit us."""
    try:
        return os.getpgid(pid) == pid and pid != os.getpgrp()
    except (ProcessLookupError, PermissionError):
        return False


def _running(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running. A zombie counts as gone: it no longer runs, and once its parent is
    gone too only whoever inherits it can reap it, which may take a second or two."""
    alive = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
    return alive


def _tree(roots: list[psutil.Process]) -> list[psutil.Process]:
    """``roots`` and all their descendants now, each once."""
    found: dict[int, psutil.Process] = {}
    for root in roots:
        found.setdefault(root.pid, root)
        with contextlib.suppress(psutil.Error):
            for child in root.children(recursive=True):
                found.setdefault(child.pid, child)
    return list(found.values())


def _group_members(pgids: set[int]) -> list[psutil.Process]:
    """Every process in these process groups (psutil does not say a process's group; os does)."""
    members = []
    for pid in psutil.pids():
        with contextlib.suppress(ProcessLookupError, PermissionError, psutil.Error):
            if os.getpgid(pid) in pgids:
                members.append(psutil.Process(pid))
    return members


def _signal(proc: psutil.Process, sig: int, groups: set[int]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError, psutil.Error):
        if proc.pid in groups:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)


def _wait(procs: list[psutil.Process], popens: list[subprocess.Popen], until: float) -> list[psutil.Process]:
    """Wait until every one of ``procs`` is gone or ``until`` (monotonic) has passed; return those
    still running. Our own children (``popens``) are reaped as they exit."""
    while True:
        for popen in popens:
            popen.poll()
        alive = _running(procs)
        if not alive or time.monotonic() >= until:
            return alive
        time.sleep(0.01)


def stop_tree(*targets: Target, timeout: float = 10.0, group: bool | None = None,
              first_signal: int = signal.SIGTERM) -> None:
    """Stop each target and every process it started: ``first_signal`` (SIGTERM), up to ``timeout``
    seconds to stop, then SIGKILL for whatever of the tree is still running. Returns once the tree
    is gone (or 5 s after the SIGKILL); a ``Popen`` is reaped, so its ``returncode`` is set.

    Targets: ``subprocess.Popen``, ``psutil.Process`` or pids; one that has already exited is fine.

    The first signal goes to the target alone, so it can stop its children itself (uvicorn stops
    its workers, a Celery worker finishes its tasks, Jupyter shuts its kernels down); once it is
    gone, its descendants still running get SIGTERM (nobody else will stop them now), and at the
    deadline SIGKILL. ``timeout=0`` skips the polite part: SIGKILL at once.

    A target that leads a process group of its own (started with ``start_new_session=True``: pytest
    and its xdist workers, a driver and the learner's processes) gets the signals as a group, which
    also reaches members that are no longer its descendants. ``group=True``: the target was started
    so; its group is reached even when the ``Popen`` has already been reaped (its stragglers).
    ``group=False``: never signal a group, only the tree (processes picked one by one).

    ``first_signal``: e.g. SIGABRT, so a Python started with ``-X faulthandler`` prints every
    thread's stack before it dies (course.subprocesses).
    """
    deadline = time.monotonic() + max(0.0, timeout)
    popens = [t for t in targets if isinstance(t, subprocess.Popen)]
    leaders: list[psutil.Process] = []
    groups: set[int] = set()
    for target in targets:
        if isinstance(target, subprocess.Popen) and target.returncode is not None:
            # Reaped: its pid may already belong to someone else. Only its group, if it had one, is ours.
            if group:
                groups.add(target.pid)
            continue
        try:
            proc = target if isinstance(target, psutil.Process) else psutil.Process(
                target.pid if isinstance(target, subprocess.Popen) else int(target))
        except psutil.Error:
            continue
        leaders.append(proc)
        if group is not False and leads_own_group(proc.pid):
            groups.add(proc.pid)
    groups.discard(os.getpgrp())
    # Taken before any signal: once a parent dies, its children are no longer found under it.
    tree = _tree([*leaders, *(_group_members(groups) if groups else [])])

    if timeout > 0:
        for proc in leaders:
            _signal(proc, first_signal, groups)
        for pgid in groups - {p.pid for p in leaders}:  # a reaped leader's group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGTERM)
        if not _wait(leaders, popens, deadline):
            rest = _running(_tree(tree))
            for proc in rest:
                with contextlib.suppress(psutil.Error):
                    proc.terminate()
            _wait(rest, popens, deadline)

    # What is left (and whatever it started meanwhile) is killed.
    alive = _running(_tree(_running(tree)))
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    for popen in popens:
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(KILL_WAIT)
    _wait(alive, popens, time.monotonic() + KILL_WAIT)
