"""``make bench``: the time budgets a learner feels, measured one at a time and judged as ratios.

    python -m course.tooling.bench                       # everything, then rewrite bench/last.json
    python -m course.tooling.bench --no-record           # measure and compare, keep bench/last.json
    python -m course.tooling.bench --only check -m 04    # one part, one module: a few seconds
    python -m course.tooling.bench --no-lab              # all but building a venv (~45 s)

What is measured (each alone: run it on a machine doing nothing else worth measuring):

* ``notebooks``: each notebook top to bottom in a fresh kernel, through the executor
  tests/test_notebooks.py uses (``course.tooling.nbtools.execute``);
* ``check``: ``course check NN --target solutions`` per graded module, the whole command;
* ``list``: ``course list`` when nothing changed (its cache is warm), in a copy of the course;
* ``lab``: ``make venv`` (what ``make lab`` does before JupyterLab opens) in an empty folder.

Why ratios: a figure in seconds says as much about the machine and what else runs on it as about
the course. ``make test`` used to assert seconds, and failed on a 2-core laptop with a browser open.
Here every figure is divided by a *floor* measured in the same run, just before and just after it:
a fresh ``python -I -c "import fastapi"``. That floor was chosen over a pytest process because it
depends only on the machine, its load and the pinned libraries, not on the course's own code: a
slower conftest or plugin then shows as a larger ratio instead of a larger floor that hides it.
It is also what most figures start with (a kernel, a check suite and its driver each start Python
and import the web stack), and it costs half a second, so it can be taken around every figure.

The budgets in DEVELOPERS.md (seconds on 2 cores) become ratio limits: the budget divided by the
floor measured on the reference 2-core machine (``REFERENCE_FLOOR``), times ``MARGIN`` for how
much less a ratio moves than a time on a busy machine. The exit code is 1 only when a ratio is
over its limit (2 when a figure could not be measured: a notebook failed, the solution failed).
Building the venv has no limit: it depends on pip's cache and the network more than on the CPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from course.manifest import ROOT, modules

__all__ = ["PARTS", "BUDGETS", "LIMITS", "REFERENCE_FLOOR", "MARGIN", "LAST", "Figure", "floor", "main"]

PARTS = ("notebooks", "check", "list", "probe", "lab")
LAST = ROOT / "bench" / "last.json"

# The budgets of DEVELOPERS.md, in seconds on a 2-core machine. The venv has none (see above).
BUDGETS: dict[str, float | None] = {"notebooks": 60.0, "check": 5.0, "list": 1.0, "probe": 30.0, "lab": None}
# Median of `python -I -c "import fastapi"` on the 2-core reference machine (issue 16) with little
# else running: 0.34 to 0.41 s (0.54 s once), median 0.37 s.
REFERENCE_FLOOR = 0.37
# Room for a ratio's own drift: a busy machine slows a figure that uses both cores (a server and
# its client, a pytest and its driver) more than the one-process floor, or less.
MARGIN = 1.3
LIMITS: dict[str, float | None] = {part: None if budget is None else round(budget / REFERENCE_FLOOR * MARGIN, 1)
                                   for part, budget in BUDGETS.items()}

FLOOR_CODE = "import fastapi"
FLOOR_SAMPLES = 3


@dataclass
class Figure:
    part: str
    name: str  # the key in bench/last.json: "notebook 04_async_testing", "course check 04", ...
    seconds: float | None = None  # None: could not be measured
    floor: float | None = None
    error: str = ""

    @property
    def ratio(self) -> float | None:
        return None if self.seconds is None or not self.floor else self.seconds / self.floor

    @property
    def limit(self) -> float | None:
        return LIMITS[self.part]

    @property
    def over(self) -> bool:
        return self.ratio is not None and self.limit is not None and self.ratio > self.limit


# ---------------------------------------------------------------- the floor

def _python() -> str:
    """The learner's interpreter: the .venv's when there is one (make runs us with it anyway)."""
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def floor(samples: int = FLOOR_SAMPLES) -> list[float]:
    """Seconds of ``samples`` fresh ``python -I -c "import fastapi"``, one after the other."""
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        # -I: neither the working directory nor PYTHON* variables change what is imported.
        subprocess.run([_python(), "-I", "-c", FLOOR_CODE], check=True, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return times


class Floors:
    """Floor samples taken between figures: each figure is divided by the median of the samples
    taken just before and just after it, so a machine that gets busy halfway through a run moves
    the floors of the later figures with it."""

    def __init__(self) -> None:
        floor(1)  # the first start reads the files from disk: not what the figures pay
        self.last = floor()
        self.all = list(self.last)

    def around(self, figure: Figure) -> Figure:
        before, self.last = self.last, floor()
        self.all += self.last
        figure.floor = statistics.median(before + self.last)
        return figure


# ---------------------------------------------------------------- the parts

def _selected(numbers: list[str], graded: bool) -> list:
    """Every module (graded: only those with an exercise), or those numbered in ``numbers``."""
    chosen = modules(graded=True) if graded else modules()
    return [m for m in chosen if not numbers or m.number in numbers]


def bench_notebooks(numbers: list[str], floors: Floors) -> list[Figure]:
    from course.probes import processes_with_env
    from course.tooling.nbtools import NotebookFailed, execute

    figures = []
    for m in _selected(numbers, graded=False):
        figure = Figure("notebooks", f"notebook {m.notebook.stem}")
        run_id = uuid.uuid4().hex
        try:
            figure.seconds = execute(m.notebook, env={**os.environ, "COURSE_RUN_ID": run_id})
        except NotebookFailed as exc:
            figure.error = _why(str(exc))
        deadline = time.monotonic() + 5
        while (left := processes_with_env("COURSE_RUN_ID", run_id)) and time.monotonic() < deadline:
            time.sleep(0.2)
        for p in left:  # what one notebook leaves behind must not slow the next figure
            p.kill()
        figures.append(_show(floors.around(figure)))
    return figures


def bench_checks(numbers: list[str], floors: Floors) -> list[Figure]:
    figures = []
    for m in _selected(numbers, graded=True):
        figure = Figure("check", f"course check {m.number} --target solutions")
        start = time.perf_counter()
        try:
            done = subprocess.run([_python(), "-m", "course.tooling.cli", "check", m.number, "--target", "solutions"],
                                  cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
        except subprocess.TimeoutExpired:
            figure.error = "still grading after 300 s"
        else:
            figure.seconds = time.perf_counter() - start
            if done.returncode != 0:
                first = [line.strip() for line in done.stdout.splitlines() if "not met" in line][:1]
                figure.seconds = None
                figure.error = f"the solution did not pass: {first[0] if first else f'exit {done.returncode}'}"
        figures.append(_show(floors.around(figure)))
    return figures


def bench_probe(floors: Floors) -> list[Figure]:
    """``course probe`` on module 01's solution (every schemathesis phase; issue 20's 30 s budget),
    against a database seeded by the module's own driver."""
    import tempfile

    figure = Figure("probe", "course probe solutions/01 app:app")
    with tempfile.TemporaryDirectory(prefix="course-bench-probe-") as tmp:
        db = Path(tmp) / "shop.db"
        from course.demo import import_file

        import_file(ROOT / "checks" / "01_database_lifecycle" / "driver.py").seed(db)
        start = time.perf_counter()
        done = subprocess.run([_python(), "-m", "course.tooling.cli", "probe", "app:app", "--app-dir",
                               str(ROOT / "solutions" / "01_database_lifecycle"), "--env",
                               f"DATABASE_URL=sqlite+aiosqlite:///{db}", "--env", "SLOW_CALL_SECONDS=0.2", "--json"],
                              cwd=tmp, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
        figure.seconds = time.perf_counter() - start
        if done.returncode != 0:
            figure.seconds, figure.error = None, f"the probe found something or failed (exit {done.returncode})"
    return [_show(floors.around(figure))]


def _copy_course(into: Path) -> Path:
    """The course without its environments, git data or caches: what ``course list`` reads."""
    skip = shutil.ignore_patterns(".git", ".venv*", "node_modules", ".course-cache", ".course-backups",
                                  "__pycache__", ".ipynb_checkpoints", "*.db", "*.db-*", ".workshop-logs")
    return Path(shutil.copytree(ROOT, into / "course-copy", ignore=skip, symlinks=True))


# Run inside the copy: a cache that says every exercise was graded as it is now, as after a first
# `course list` (which would grade eight exercises, a minute, for a figure that does not use it).
_PRIME = """
import json
from course.manifest import modules
from course.tooling import cli
cli.CACHE.parent.mkdir(exist_ok=True)
cli.CACHE.write_text(json.dumps({m.name: {"fingerprint": cli.fingerprint(m), "module": m.number, "passed": False,
    "seconds": 0.0, "met": 0, "total": 1, "problem": None, "first_failure": None} for m in modules(graded=True)}))
"""


def bench_list(floors: Floors, repeats: int = 3) -> list[Figure]:
    figure = Figure("list", "course list, nothing changed")
    with tempfile.TemporaryDirectory(prefix="course-bench-") as tmp:
        copy = _copy_course(Path(tmp))
        env = {**os.environ, "PYTHONPATH": str(copy)}
        run = dict(cwd=copy, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
        primed = subprocess.run([_python(), "-c", _PRIME], **run)
        if primed.returncode != 0:
            figure.error = f"could not prime the cache: {primed.stderr.strip().splitlines()[-1:]}"
            return [_show(floors.around(figure))]
        times = []
        for _ in range(repeats):  # a second short: the median of three
            start = time.perf_counter()
            try:
                done = subprocess.run([_python(), "-m", "course.tooling.cli", "list"], **run)
            except subprocess.TimeoutExpired:
                figure.error = "`course list` still running after 120 s"
                return [_show(floors.around(figure))]
            times.append(time.perf_counter() - start)
            if done.returncode != 0 or "graded now" in done.stdout:
                figure.error = "`course list` graded again though nothing changed" if done.returncode == 0 \
                    else f"`course list` failed (exit {done.returncode})"
                return [_show(floors.around(figure))]
        figure.seconds = statistics.median(times)
    return [_show(floors.around(figure))]


def bench_lab(floors: Floors) -> list[Figure]:
    """``make venv`` in an empty folder holding only what it reads: the Makefile, the pins and the
    course package. pip's own cache is kept (a learner's second course is not their first pip)."""
    figure = Figure("lab", "make lab: the venv from nothing")
    with tempfile.TemporaryDirectory(prefix="course-bench-lab-") as tmp:
        for name in ("Makefile", "requirements.txt", "requirements-lock.txt", "pyproject.toml"):
            shutil.copy2(ROOT / name, tmp)
        shutil.copytree(ROOT / "course", Path(tmp) / "course", ignore=shutil.ignore_patterns("__pycache__"))
        # Without the course's .venv on PATH: make picks an interpreter as it does for a learner.
        venv_bin = str(ROOT / ".venv" / "bin")
        path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != venv_bin)
        env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "VIRTUAL_ENV")}
        start = time.perf_counter()
        try:
            done = subprocess.run(["make", "--no-print-directory", "-C", tmp, "venv"], env={**env, "PATH": path},
                                  capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=900)
        except subprocess.TimeoutExpired:
            figure.error = "make venv still running after 900 s"
            return [_show(floors.around(figure))]
        figure.seconds = time.perf_counter() - start
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-1:]
            figure.seconds, figure.error = None, f"make venv failed: {' '.join(tail)}"
    return [_show(floors.around(figure))]


# ---------------------------------------------------------------- report and record

def _why(failure: str) -> str:
    """A failed notebook in one line: which cell, and the error it raised (the traceback's last
    ``SomeError: ...`` line)."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", failure)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception)\b", line)]
    where = lines[0].rstrip(":") if lines else "failed"
    return f"{where}: {errors[-1][:200]}" if errors else where


def _show(figure: Figure) -> Figure:
    took = f"{figure.seconds:.1f} s" if figure.seconds is not None else f"NOT MEASURED: {figure.error}"
    print(f"  {figure.name}: {took}", flush=True)
    return figure


def load_last(path: Path = LAST) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"figures": {}}


def record(figures: list[Figure], floors: Floors, path: Path = LAST) -> None:
    """Merge this run into ``path``: figures measured now replace theirs, the others stay."""
    data = load_last(path)
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    data["floor"] = {"what": f'python -I -c "{FLOOR_CODE}"', "median_seconds": round(statistics.median(floors.all), 3),
                     "recorded": now}
    data["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.system(),
                       "floor_spread_seconds": [round(min(floors.all), 3), round(max(floors.all), 3)]}
    stored = data.setdefault("figures", {})
    for f in figures:
        if f.seconds is not None:
            stored[f.name] = {"part": f.part, "seconds": round(f.seconds, 2), "floor": round(f.floor, 3),
                              "ratio": round(f.ratio, 2), "recorded": now}
    data["figures"] = dict(sorted(stored.items()))
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


def _r(ratio: float | None) -> str:
    """A ratio as the table shows it: a decimal where the whole number would hide the change."""
    return "-" if ratio is None else f"{ratio:.1f}" if ratio < 10 else f"{ratio:.0f}"


def table(figures: list[Figure], last: dict) -> str:
    previous = last.get("figures", {})
    width = max(len(f.name) for f in figures)
    head = f"{'figure':<{width}}  {'seconds':>8}  {'last':>7}  {'ratio':>6}  {'last':>6}  {'limit':>5}  verdict"
    lines = [head, "-" * len(head)]
    for f in figures:
        before = previous.get(f.name, {})
        last_s = f"{before['seconds']:.1f}" if "seconds" in before else "-"
        last_r = _r(before.get("ratio"))
        limit = _r(f.limit)
        if f.seconds is None:
            lines.append(f"{f.name:<{width}}  {'-':>8}  {last_s:>7}  {'-':>6}  {last_r:>6}  {limit:>5}  "
                         f"NOT MEASURED: {f.error}")
            continue
        verdict = "OVER" if f.over else ("ok" if f.limit is not None else "(no limit)")
        budget = BUDGETS[f.part]
        if f.over and budget is not None:
            verdict += f" (budget {budget:g} s = {_r(f.limit)} floors)"
        lines.append(f"{f.name:<{width}}  {f.seconds:8.1f}  {last_s:>7}  {_r(f.ratio):>6}  {last_r:>6}  {limit:>5}  {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=PARTS, metavar="PART",
                        help=f"measure only this part ({', '.join(PARTS)}); repeat for several")
    parser.add_argument("-m", "--module", action="append", default=[], metavar="NN",
                        help="only this module's notebook and check (repeat for several)")
    parser.add_argument("--no-lab", action="store_true", help="skip building a venv (about 45 s)")
    parser.add_argument("--no-record", action="store_true", help=f"do not rewrite {LAST.relative_to(ROOT)}")
    opts = parser.parse_args(sys.argv[1:] if argv is None else argv)
    parts = [p for p in (opts.only or PARTS) if not (p == "lab" and opts.no_lab)]
    numbers = [n.zfill(2) for n in opts.module]
    unknown = [n for n in numbers if n not in {m.number for m in modules()}]
    if unknown:
        print(f"no module {', '.join(unknown)}")
        return 2

    started = time.perf_counter()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    floors = Floors()
    print(f"make bench: {', '.join(parts)} on {os.cpu_count()} cores (load {load:.1f}); floor "
          f"`python -I -c \"{FLOOR_CODE}\"` {statistics.median(floors.all):.2f} s", flush=True)
    figures: list[Figure] = []
    for part in parts:
        print(f"\n===== {part}", flush=True)
        if part == "notebooks":
            figures += bench_notebooks(numbers, floors)
        elif part == "check":
            figures += bench_checks(numbers, floors)
        elif part == "list":
            figures += bench_list(floors)
        elif part == "probe":
            figures += bench_probe(floors)
        elif part == "lab":
            figures += bench_lab(floors)
    if not figures:
        print("nothing selected")
        return 2

    last = load_last()
    spread = (min(floors.all), statistics.median(floors.all), max(floors.all))
    print(f"\n===== make bench: seconds, and ratios to the floor (`python -I -c \"{FLOOR_CODE}\"`: "
          f"{spread[1]:.2f} s, {spread[0]:.2f} to {spread[2]:.2f} s in this run)")
    previous = last.get("floor", {})
    if previous:
        print(f"last recorded run: floor {previous['median_seconds']:.2f} s on {previous['recorded']}")
    print(table(figures, last))
    print(f"limit = budget / reference floor {REFERENCE_FLOOR:.2f} s x margin {MARGIN}; budgets: "
          + ", ".join(f"{part} {budget:g} s" for part, budget in BUDGETS.items() if budget is not None))
    if spread[2] > 2 * spread[0]:
        print("\nThe floor varied more than twofold: the machine was busy, the ratios are rough.")
    if not opts.no_record:
        record(figures, floors)
        print(f"\nrecorded in {LAST.relative_to(ROOT)} (commit it with the change it measures)")
    over = [f for f in figures if f.over]
    missing = [f for f in figures if f.seconds is None]
    verdict = (f"{len(over)} over the limit: {', '.join(f.name for f in over)}" if over else "every ratio within its limit")
    if missing:
        verdict += f"; {len(missing)} not measured"
    print(f"\nmake bench: {verdict} ({time.perf_counter() - started:.0f} s)")
    return 1 if over else (2 if missing else 0)


if __name__ == "__main__":
    sys.exit(main())
