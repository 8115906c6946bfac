"""Run a Python script in a subprocess with a timeout, and always stop it.

    from course.subprocesses import run_script

    run = run_script("demo.py", env={"DB_PATH": "/tmp/x.db"}, timeout=2, after="main() finished")
    run.returncode, run.timed_out, run.output, run.seconds

For demos that may hang (a process that never exits): the notebook's kernel must never run them
itself. The script runs as ``python -X faulthandler script``, so when it is still running at the
timeout it gets ``SIGABRT`` and Python prints the stack of every thread before it dies: the output
shows *where* it was stuck. Whatever happens, the process is gone when the function returns.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple, Sequence

from course.processes import stop_tree

__all__ = ["ScriptResult", "run_script"]


class ScriptResult(NamedTuple):
    """How a script run ended. Unpacks as ``returncode, timed_out, output, seconds``."""

    returncode: int
    """The exit code; negative for a signal (-6: SIGABRT, sent at the timeout; -9: SIGKILL)."""
    timed_out: bool
    """True if the script was still running ``timeout`` seconds after the start (or the marker)."""
    output: str
    """stdout and stderr, interleaved as written (faulthandler's stack dump included)."""
    seconds: float
    """From the start (or from the marker line) until the process exited or the timeout hit."""


def run_script(
    script: str | os.PathLike,
    *,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    timeout: float = 10.0,
    after: str | None = None,
    start_timeout: float = 30.0,
    cwd: str | os.PathLike | None = None,
) -> ScriptResult:
    """Run ``python -X faulthandler script *args`` and wait at most ``timeout`` seconds for it to exit.

    ``env`` is added to this process's environment. With ``after`` (a text the script prints),
    the timeout counts from the moment that text appears in the output, so the interpreter's
    start-up time on a busy machine does not count; the text must appear within ``start_timeout``
    seconds (or before the process exits), else ``RuntimeError`` with the output.

    At the timeout the process gets ``SIGABRT`` (faulthandler dumps every thread's stack into the
    output), then ``SIGKILL`` if it is still alive 5 s later, and so do the processes it started.
    """
    cmd = [sys.executable, "-X", "faulthandler", str(script), *map(str, args)]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with tempfile.TemporaryDirectory(prefix="course-script-") as tmp:
        log = Path(tmp) / "output.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=full_env, cwd=cwd)
        try:
            start = time.monotonic()
            if after is not None:
                while after not in log.read_text(errors="replace"):
                    if proc.poll() is not None or time.monotonic() - start > start_timeout:
                        if after in log.read_text(errors="replace"):
                            break
                        raise RuntimeError(f"{Path(script).name} did not print {after!r} "
                                           f"(exit code {proc.poll()}). Its output:\n{log.read_text(errors='replace')}")
                    time.sleep(0.01)
                start = time.monotonic()
            try:
                proc.wait(timeout=max(0.0, timeout - (time.monotonic() - start)))
                return ScriptResult(proc.returncode, False, log.read_text(errors="replace"), time.monotonic() - start)
            except subprocess.TimeoutExpired:
                seconds = time.monotonic() - start
                # faulthandler prints every thread's stack, then the process dies; what it started goes too.
                stop_tree(proc, timeout=5, first_signal=signal.SIGABRT)
                return ScriptResult(proc.returncode, True, log.read_text(errors="replace"), seconds)
        finally:
            stop_tree(proc, timeout=0)  # an error or an interrupt above: nothing may outlive the call
