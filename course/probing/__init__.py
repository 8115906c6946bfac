"""``course probe MODULE:APP``: the course's instruments pointed at any FastAPI app.

From a terminal::

    course probe myservice.main:app                        # read-only: GET only
    course probe main:app --env DATABASE_URL=sqlite+aiosqlite:///throwaway.db --allow-writes
    course probe main:app --json                           # for CI: exit code 1 on a finding

From a notebook cell::

    report = course.probe("app:app", app_dir="exercises/01_database_lifecycle", env={...})
    report.findings        # [Finding(kind, title, module, section, notebook, evidence, operation)]

It starts the app as production does (uvicorn in its own process, 127.0.0.1, a port of its own,
stopped with SIGTERM) and reports each finding with its evidence and the notebook section that
teaches it: what is created at import (engines, clients, settings, threads, processes,
connections), what the shutdown leaves (connections, clients, threads, processes, files, tasks),
every route from the OpenAPI schema through schemathesis (5xx answers with the app's exception and
line), NaN, Infinity and lone surrogates in JSON bodies, the loop's lag and the errors of each GET
route alone and in a burst, a one-field PATCH followed by a GET, and ruff's flake8-async (ASYNC) and
FastAPI (FAST) rules on the app's own files. Methods that write (POST, PUT, PATCH, DELETE) are sent
only with ``allow_writes``: point the app at a throwaway database first.

course/probing/run.py has the steps, course/probing/launch.py the app's side, sections.py the
section of each finding, tools.py schemathesis and ruff (from ``.venv-test``: ``make test-tools``).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from course.probing.run import Finding, ProbeReport

__all__ = ["probe", "Finding", "ProbeReport", "add_arguments", "main"]


def __getattr__(name: str) -> Any:  # Finding, ProbeReport: imported when first used (`course --help` stays quick)
    if name in ("Finding", "ProbeReport"):
        from course.probing import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


PHASES = "examples,coverage,fuzzing,stateful"  # schemathesis's phases, all of them by default


def probe(target: str, *, app_dir: str | os.PathLike | None = None, env: dict[str, Any] | None = None,
          allow_writes: bool = False, factory: bool = False, max_examples: int = 15, burst: int = 20,
          fuzz: bool = True, phases: str = PHASES, progress: bool = False) -> "ProbeReport":
    """Probe the app ``target`` (``"module:attribute"``, as uvicorn names it) and return the report
    (a notebook cell shows its table). ``app_dir``: where ``module`` is imported from (default: the
    working directory); ``env``: added to the app's environment (its settings); ``allow_writes``:
    send POST, PUT, PATCH and DELETE too; ``factory``: the attribute is a function that returns the
    app (uvicorn's ``--factory``); ``fuzz=False``: no schemathesis (a quicker look); ``phases``:
    schemathesis's phases (``"examples,fuzzing"`` skips its coverage phase, most of its time)."""
    from course.probing.run import run_probe

    return run_probe(target, app_dir=app_dir, env={k: str(v) for k, v in (env or {}).items()},
                     allow_writes=allow_writes, factory=factory, max_examples=max_examples, burst=burst,
                     fuzz_routes=fuzz, phases=phases,
                     progress=(lambda text: print(f"probe: {text}", file=sys.stderr, flush=True)) if progress else None)


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: write KEY=VALUE")
    return key, value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="MODULE:APP", help="the app, as uvicorn names it (main:app, myservice.main:app)")
    p.add_argument("--app-dir", default=None, help="where MODULE is imported from (default: the working directory)")
    p.add_argument("--env", action="append", type=_env_pair, default=[], metavar="KEY=VALUE",
                   help="a setting for the app (repeat it); added to this environment")
    p.add_argument("--allow-writes", action="store_true",
                   help="send POST, PUT, PATCH and DELETE too (point the app at a throwaway database)")
    p.add_argument("--factory", action="store_true", help="APP is a function that returns the app")
    p.add_argument("--json", action="store_true", help="print the report as JSON (exit code 1 on a finding)")
    p.add_argument("--max-examples", type=int, default=15, help="schemathesis' cases per operation and phase")
    p.add_argument("--burst", type=int, default=20, help="requests at once in the load step")
    p.add_argument("--no-fuzz", action="store_true", help="skip schemathesis (a quicker look)")


def main(args: argparse.Namespace) -> int:
    report = probe(args.target, app_dir=args.app_dir, env=dict(args.env), allow_writes=args.allow_writes,
                   factory=args.factory, max_examples=args.max_examples, burst=args.burst, fuzz=not args.no_fuzz,
                   progress=not args.json)
    print(report.to_json() if args.json else report.table())
    return report.exit_code
