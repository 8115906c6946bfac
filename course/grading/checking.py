"""The two halves of every check suite under ``checks/``.

**The driver** (``checks/NN_topic/driver.py``) runs in a fresh interpreter, imports the
learner's code, exercises it for real (starts the app, sends requests, counts connections) and
prints one JSON report. It never judges. It is written on :class:`Driver`::

    def main(d: Driver) -> None:
        with d.stage("import", limit=10, doing="importing app.py"):
            app = d.import_learner("app.py", needs="app").app
        with d.stage("requests", limit=30, doing="answering the checks' requests"):
            d.report["single"] = ...

    if __name__ == "__main__":
        Driver.main(main)

Each stage has a time limit: a stage that overruns ends the driver with the error "importing
app.py did not finish within 10 s". An exception ends it with the learner's line. Either way the
report says which stage, in one shape: ``report["error"] = {"stage", "kind", "message", "hint"}``.

**The checks** (``checks/NN_topic/test_NN_topic.py``) run the driver once per suite with
:func:`run_driver`, then each test reads its part of the report, fails with :func:`expect`
(what was called, what was expected, what happened, a hint), and first calls :func:`require`,
which turns a missing part of the report into "your app did not get this far" with the reason.

:func:`run_driver` also cleans up after the learner's code: it gives the driver a scratch folder
(removed afterwards, even if the driver was killed), never waits on a pipe (output goes to files),
and stops every process the learner's code started that is still running afterwards, reporting them
as ``report["leftover_processes"]``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Mapping

__all__ = ["Unmet", "expect", "describe", "require", "answer", "stops_by_itself", "nothing_left_running", "run_driver", "Driver", "DriverError", "learner_error",
           "REPORT_MARKER", "STAGE_MARKER", "RUN_MARKER_ENV", "SCRATCH_ENV"]

REPORT_MARKER = "COURSE-DRIVER-REPORT:"
STAGE_MARKER = "COURSE-DRIVER-STAGE:"
RUN_MARKER_ENV = "COURSE_GRADE_RUN"  # inherited by every process the learner's code starts
SCRATCH_ENV = "COURSE_DRIVER_SCRATCH"  # the driver's temporary folder, removed by run_driver


# --- expectations ----------------------------------------------------------------------------------

def describe(unmet: Mapping[str, Any], *, indent: str = "") -> str:
    """Called / Expected / Got / Hint, as the learner reads them (the one formatter)."""
    cont = "\n" + indent + " " * 10
    lines = []
    if unmet.get("called"):
        lines.append(f"{indent}Called:   {unmet['called']}")
    lines.append(f"{indent}Expected: {unmet['expected']}")
    lines.append(f"{indent}Got:      " + str(unmet["got"]).replace("\n", cont))
    hint = unmet.get("hint")
    if hint or unmet.get("more"):
        text = hint or ""
        if unmet.get("more"):
            text += ("  " if text else "") + f"(more: {unmet['more']})"
        lines.append(f"{indent}Hint:     " + text.replace("\n", cont))
    return "\n".join(lines)


class Unmet(AssertionError):
    """An expectation the learner's code does not meet. ``todo``: the exercise's TODO it is about
    (the grader points to ``course hint NN <todo>``)."""

    def __init__(self, *, expected: str, got: str, called: str | None = None, hint: str | None = None,
                 todo: int | None = None) -> None:
        self.expected, self.got, self.called, self.hint, self.todo = expected, got, called, hint, todo
        super().__init__(describe(self.as_dict()))

    def as_dict(self) -> dict[str, Any]:
        return {"called": self.called, "expected": self.expected, "got": self.got, "hint": self.hint,
                "todo": self.todo}


def expect(condition: Any, *, expected: str, got: str | Callable[[], str], called: str | None = None,
           hint: str | None = None, todo: int | None = None) -> None:
    """Raise :class:`Unmet` unless ``condition`` is true (``got`` may be a function, called only then)."""
    if not condition:
        raise Unmet(expected=expected, got=got() if callable(got) else got, called=called, hint=hint, todo=todo)


def require(report: Mapping[str, Any], *keys: str,
            expected: str = "your code gets as far as this check (it imports, starts, answers requests, stops)",
            hint: str | None = None) -> Any:
    """The report's ``keys`` (one key: its value; several: a tuple), or :class:`Unmet` saying how far
    the learner's code got and why it stopped (the driver's one error shape)."""
    missing = [k for k in keys if k not in report]
    if missing:
        error = report.get("error") or {}
        stage = error.get("stage") or report.get("stage") or "an early stage"
        got = error.get("message") or f"the checks stopped before this part (missing: {', '.join(missing)})"
        raise Unmet(called=f"your code, while {error.get('doing') or stage}", expected=expected, got=got,
                    hint=error.get("hint") or hint or "run it yourself and read the first error.")
    values = tuple(report[k] for k in keys)
    return values[0] if len(values) == 1 else values


def answer(result: Mapping[str, Any]) -> str:
    """A recorded request's answer as the learner reads it in a Got line: the status and body (or
    why there was none), and what the server raised meanwhile, with the line of the app."""
    text = f"{result['status']}: {result['body']}" if result.get("status") is not None else str(result.get("body"))
    return text + (f"; the server raised {result['server_error']}" if result.get("server_error") else "")


def stops_by_itself(report: Mapping[str, Any]) -> None:
    """Every serving stage stopped the app with a signal, as production does: the server must exit by
    itself within a few seconds, and no thread of the learner's code may keep the process alive."""
    for stop in report.get("stops") or []:
        signal_name, label = stop["signal"], stop["label"]
        called = f"{signal_name} to the server running {label} (what `kill`, Ctrl+C or a container stop sends)"
        expect(stop["exited"], called=called, expected=f"the server stops by itself within {stop['within']:g} s",
               got=f"still running {stop['within']:g} s later" + (f"; waiting at {stop['stuck_at']}" if stop["stuck_at"] else "")
                   + (f"; the server logged: {'; '.join(stop['errors'])}" if stop.get("errors") else ""),
               hint="after the lifespan's yield, everything must finish: a task you started needs .cancel() "
                    "before you await it; a loop needs a way to end.")
        threads = stop["threads"]
        expect(not threads, called=called, expected="no thread of your code still running once the server stopped "
                                                    "(the process could not exit)",
               got=lambda: "; ".join(f"thread '{t['name']}'" + (f" started at {t['started_at']}" if t["started_at"] else "")
                                     for t in threads),
               hint="a thread of your own must end when the app stops: stop it after the lifespan's yield (an "
                    "Event it checks) and join it, or make it a daemon if losing its work is fine.")


def nothing_left_running(report: Mapping[str, Any]) -> None:
    """The expectation every suite has: the app stops by itself on SIGTERM, and no thread or process
    the learner's code started outlives it (:func:`run_driver` stopped the processes and listed them)."""
    stops_by_itself(report)
    left = report.get("leftover_processes") or []
    expect(not left, called="your code, after the app stopped and the checks ended",
           expected="no process your code started is still running",
           got=lambda: f"{len(left)} still running (the checks stopped them): " + "; ".join(left),
           hint="a subprocess you start needs someone to stop it: start it in the lifespan and stop it "
                "(terminate, then wait) after the yield.")


# --- the learner's errors, in a line they can act on ---------------------------------------------

def learner_error(exc: BaseException, folder: str | os.PathLike | None = None) -> str:
    """``NameError: name 'x' is not defined (app.py line 12: x + 1)``: the exception and the last
    line of the learner's own files (those under ``folder``) in its traceback."""
    from course.tracebacks import exception_line

    return exception_line(exc, folder, inner=False)


class DriverError(Exception):
    """Raised in a driver: ends it with this message as the report's error (no traceback)."""

    def __init__(self, message: str, *, hint: str | None = None, kind: str = "error") -> None:
        super().__init__(message)
        self.message, self.hint, self.kind = message, hint, kind


# --- the driver skeleton ---------------------------------------------------------------------------

class Driver:
    """What every driver shares: the report, stages with time limits, importing the learner's files,
    one error shape, and the scratch folder. Use :meth:`main` as the script's entry point."""

    def __init__(self, target: Path, scratch: Path) -> None:
        self.target, self.scratch = target, scratch
        self.report: dict[str, Any] = {"stages": [], "stage": None, "error": None}
        self._stage: tuple[str, float, float, str] | None = None  # name, started, limit, doing
        self._lock = threading.Lock()
        self._emitted = False
        self.logged: list[str] = []  # ERROR log lines of this process (what uvicorn says before it exits)
        self.threads_before: set[int | None] | None = None  # threads alive before the learner's code was imported
        self.thread_starts: dict[int | None, str] = {}  # thread ident -> the learner's line that started it

    # stages ---------------------------------------------------------------------------------------
    @property
    def current_stage(self) -> str | None:
        return self.report["stage"]

    @contextlib.contextmanager
    def stage(self, name: str, *, limit: float, doing: str, hint: str | None = None) -> Iterator[None]:
        """Run a part of the driver with a time limit; an exception or an overrun ends the driver
        with the report's error naming this stage."""
        with self._lock:
            self._stage = (name, time.monotonic(), limit, doing)
            self.report["stage"] = name
        print(STAGE_MARKER + name, flush=True)
        try:
            yield
        except DriverError as exc:
            self.fail(name, exc.kind, exc.message, exc.hint)
            raise
        except BaseException as exc:  # noqa: BLE001 - the learner's error becomes the report's
            text = learner_error(exc, self.target)
            if isinstance(exc, SystemExit) and self.logged:
                # uvicorn.run() exits with 1 or 3 after logging why ("address already in use").
                text += f" after the error: {self.logged[-1]}"
            error = DriverError(f"{text}, while {doing}", hint=hint)
            self.fail(name, "error", error.message, hint)  # the first error wins over later ones (shutdown)
            raise error from exc
        finally:
            with self._lock:
                if self._stage and self._stage[0] == name:
                    self.report["stages"].append({"name": name, "seconds": round(time.monotonic() - self._stage[1], 3)})
                    self._stage = None

    def _watch(self) -> None:
        while True:
            time.sleep(0.1)
            with self._lock:
                current = self._stage
            if current and time.monotonic() - current[1] > current[2]:
                name, _, limit, doing = current
                self.fail(name, "timeout", f"{doing} did not finish within {limit:g} s; it was stopped",
                          "look for an endless loop, a blocking call (time.sleep, a sync client) or something "
                          "awaited that never completes (a lock, an event, a connection from an exhausted pool).")
                self.emit()
                os._exit(0)

    # errors and the report ------------------------------------------------------------------------
    def fail(self, stage: str | None, kind: str, message: str, hint: str | None = None) -> None:
        """Record the one error of this run (the first one wins)."""
        if self.report["error"] is None:
            doing = self._stage[3] if self._stage else None
            self.report["error"] = {"stage": stage, "kind": kind, "message": message, "hint": hint, "doing": doing}

    def emit(self) -> None:
        with self._lock:
            if self._emitted:
                return
            self._emitted = True
        print(REPORT_MARKER + json.dumps(self.report, default=str), flush=True)

    # the learner's code ---------------------------------------------------------------------------
    def import_learner(self, filename: str = "app.py", *, needs: str | tuple[str, ...] = (),
                       module_name: str | None = None) -> ModuleType:
        """Import ``filename`` from the graded folder as a top-level module (``app``), with the graded
        folder first on ``sys.path`` and the scratch folder as working directory. ``needs``: names it
        must define, else a :class:`DriverError` that says which is missing."""
        path = self.target / filename
        if not path.is_file():
            raise DriverError(f"there is no {filename} in {self.target}",
                              hint="grade the exercise folder (course check NN) or a folder laid out like it.")
        name = module_name or path.stem
        if self.threads_before is None:
            self.threads_before = {t.ident for t in threading.enumerate()}
        if str(self.target) not in sys.path:
            sys.path.insert(0, str(self.target))
        os.chdir(self.scratch)  # a stray relative database file lands in the scratch folder
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        for attr in (needs,) if isinstance(needs, str) else needs:
            if not hasattr(module, attr):
                defined = sorted(k for k in vars(module) if not k.startswith("_"))
                raise DriverError(f"{filename} defines no `{attr}` (it defines: {', '.join(defined)[:300]})",
                                  hint=f"keep the name `{attr}` from the exercise: the checks look for it by name.")
        return module

    def import_stage(self, filename: str = "app.py", *, needs: str | tuple[str, ...] = "app", limit: float = 10,
                     module_name: str | None = None, doing: str | None = None) -> ModuleType:
        """The import stage most drivers start with: :meth:`import_learner` under a time limit, with the
        hint every learner needs when their file does not import."""
        stem = Path(filename).stem
        with self.stage("import", limit=limit, doing=doing or f"importing {filename}",
                        hint=f"run `python -c 'import {stem}'` in your exercise folder and read the first error."):
            return self.import_learner(filename, needs=needs, module_name=module_name)

    def serve(self, app: Any, **kwargs: Any) -> Any:
        """The serving stage: startup, the block, a stop by SIGTERM (course.grading.serving.serve)."""
        from course.grading.serving import serve

        return serve(self, app, **kwargs)

    @classmethod
    def main(cls, body: Callable[["Driver"], Any]) -> None:
        """The driver script's entry point: ``python driver.py TARGET``. Runs ``body(driver)``, then
        prints the report and exits at once (never waiting on threads the learner's code left)."""
        target = Path(sys.argv[1]).resolve()
        scratch = Path(os.environ.get(SCRATCH_ENV) or tempfile.mkdtemp(prefix="course-driver-"))
        scratch.mkdir(parents=True, exist_ok=True)
        driver = cls(target, scratch)
        _record_errors(driver.logged)
        from course.grading.serving import record_thread_starts

        record_thread_starts(driver)
        threading.Thread(target=driver._watch, name="course-stage-watchdog", daemon=True).start()
        try:
            body(driver)
        except DriverError as exc:
            driver.fail(driver.current_stage, exc.kind, exc.message, exc.hint)
        except BaseException as exc:  # noqa: BLE001 - a bug outside any stage: still a report
            driver.fail(driver.current_stage, "driver", learner_error(exc, driver.target)
                        + "\n" + "".join(traceback.format_exception(exc))[-1500:])
        finally:
            driver.emit()
            os._exit(0)


def _record_errors(lines: list[str]) -> None:
    """Keep the last ERROR log lines of this process, whatever logging configuration the learner's
    code (or uvicorn.run's dictConfig, which replaces handlers) installs."""
    original = logging.Logger.handle

    def handle(self: logging.Logger, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            with contextlib.suppress(Exception):
                lines.append(record.getMessage()[:300])
                del lines[:-5]
        return original(self, record)

    logging.Logger.handle = handle  # type: ignore[method-assign]


# --- running a driver from the checks ----------------------------------------------------------------

def stop_marked(marker: str) -> list[str]:
    """Kill every process carrying ``marker`` in its environment; return what they were."""
    import psutil

    from course.probes import processes_with_env
    from course.processes import stop_tree

    described, procs = [], processes_with_env(RUN_MARKER_ENV, marker)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            described.append(" ".join(proc.cmdline())[:160] or proc.name())
    stop_tree(*procs, timeout=0, group=False)
    return described


def run_driver(driver: str | os.PathLike, target: str | os.PathLike, *, timeout: float = 45.0,
               env: Mapping[str, str] | None = None, what: str = "your code") -> dict[str, Any]:
    """Run ``python driver.py TARGET`` and return its report.

    Raises :class:`Unmet` when the driver gives no report (it crashed, or was still running after
    ``timeout`` seconds: the message names the stage it was in). Afterwards every process started
    under it that is still running is stopped and listed in ``report["leftover_processes"]``, and
    its scratch folder is removed.
    """
    from course.processes import stop_tree

    marker = uuid.uuid4().hex
    from course.pytest_runner import SCRATCH, clean_env

    # In memory where there is one (/dev/shm): a commit on a busy disk can take 50 ms.
    scratch = Path(tempfile.mkdtemp(prefix="course-check-", dir=SCRATCH))
    logs = Path(tempfile.mkdtemp(prefix="course-driver-log-"))
    full_env = clean_env({**(env or {}), RUN_MARKER_ENV: marker, SCRATCH_ENV: str(scratch)})
    timed_out = False
    try:
        with (logs / "out").open("w") as out, (logs / "err").open("w") as err:
            # Output to files, not pipes: a child of the learner's code that inherits a pipe would make
            # us wait for it. Its own session, so a timeout stops the whole tree.
            proc = subprocess.Popen([sys.executable, str(driver), str(target)], stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL, env=full_env, start_new_session=True)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                if proc.poll() is None:
                    stop_tree(proc, timeout=0)
        leftovers = stop_marked(marker)
        stdout = (logs / "out").read_text(errors="replace")
        stderr = (logs / "err").read_text(errors="replace")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(logs, ignore_errors=True)
    stages = [line[len(STAGE_MARKER):] for line in stdout.splitlines() if line.startswith(STAGE_MARKER)]
    for line in reversed(stdout.splitlines()):
        if line.startswith(REPORT_MARKER):
            report = json.loads(line[len(REPORT_MARKER):])
            report["leftover_processes"] = leftovers
            return report
    where = f" (during its stage '{stages[-1]}')" if stages else ""
    if timed_out:
        tail = stderr.strip()[-600:]
        raise Unmet(called=f"{what}, in a fresh Python process", expected=f"it finishes within {timeout:.0f} s",
                    got=f"still running after {timeout:.0f} s{where}; it was stopped"
                        + (f". Last output:\n{tail}" if tail else ""),
                    hint="look for a blocking call, an endless loop, or something awaited that never completes.")
    err_lines = stderr.strip().splitlines()
    raise Unmet(called=f"{what}, in a fresh Python process", expected="it runs and reports back",
                got=f"it exited with code {proc.returncode}{where} before reporting: "
                    + (" / ".join(err_lines[-3:]) if err_lines else "(no error output)"),
                hint="run the file yourself (python app.py, or import it) and read the first error.")
