"""Old forms a learner meets in blog posts and in the course brief, beside today's form.

Each form is two files in ``forms/``, named after its key (``model-dict`` -> ``model_dict``):
``.yml`` holds the page's text (old code, today's code, what happens, where it is taught) and
``expect``; ``.py`` is the probe, a script that runs the old form and prints one JSON line with
:func:`probekit.emit`. ``tests/test_old_forms.py`` runs every probe and compares its line with
``expect``, so the page cannot drift from the libraries. ``forms/order.txt`` orders the page.

    python -m course.oldforms > OLD_FORMS.md     # regenerate the page
    python -m course.oldforms --check [KEY ...]  # run the probes, print what each saw

A probe runs in its own ``python -I`` process with a clean environment, in a fresh temporary
folder: several create event loops, patch ``sys.modules`` or start a server.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from course.pytest_runner import clean_env

__all__ = ["OldForm", "FORMS", "keys", "load", "render", "main", "run_probe", "check", "source_problems", "is_shell"]

HERE = Path(__file__).resolve().parent
FORMS_DIR = HERE / "forms"
ROOT = HERE.parents[1]
PAGE = ROOT / "OLD_FORMS.md"
REGENERATE = "python -m course.oldforms > OLD_FORMS.md"
PROBE_TIMEOUT = 15.0
CITED_PYTHON = (3, 11)  # the Python the page is made with and its stdlib lines are cited from (CI's)
# `python -I` ignores PYTHON* itself; dropping these keeps them from the probes' children too (the
# pytest a probe starts counts warnings). PYTHONPATH stays: that pytest may need it to find `course`.
PYTHON_VARS = ("PYTHONWARNINGS", "PYTHONDEVMODE", "PYTHONASYNCIODEBUG")
# `-I` leaves the probe's folder off sys.path (so `import aioredis` cannot find aioredis.py): put
# only this package's folder there, for `probekit`, then run the probe as __main__.
_BOOT = ("import runpy, sys; kit, probe = sys.argv[1:]; sys.argv[:] = [probe]; sys.path.insert(0, kit); "
         "runpy.run_path(probe, run_name='__main__')")


@dataclass(frozen=True)
class OldForm:
    key: str              # short id, also the page anchor
    title: str            # the old form in a few words (Markdown)
    today_title: str      # today's form in a few words (Markdown)
    seen_in: str          # where a learner meets the old form
    old: str              # the old code as a learner meets it
    today: str            # today's form (code; must compile)
    what_happens: str     # what the old form does with the pinned versions
    where: str            # the notebook or module that teaches today's form
    probe: Path           # the probe script
    expect: dict[str, Any]  # checked against the probe's JSON (see `check`)
    packages: tuple[str, ...] = ()  # distributions whose versions the outcome depends on
    sources: tuple[tuple[str, int | None, str], ...] = ()  # (path, line, text on that line)


_TEXT = ("title", "today_title", "seen_in", "old", "today", "what_happens", "where")
_OPTIONAL = ("expect_from_python", "packages", "sources")


def load(key: str) -> OldForm:
    """One form from its two files; ``expect_from_python`` ("3.12": {...}) overrides ``expect``
    on that Python and later."""
    stem = FORMS_DIR / key.replace("-", "_")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: all forms in 10 ms, not 100
    data = yaml.load(stem.with_suffix(".yml").read_text(), Loader=loader)
    missing = {*_TEXT, "expect"} - set(data)
    unknown = set(data) - {*_TEXT, "expect", *_OPTIONAL}
    if missing or unknown:
        raise ValueError(f"{stem.name}.yml: missing fields {sorted(missing)}, "
                         f"unknown fields {sorted(unknown)}")
    expect = dict(data["expect"])
    overrides = {tuple(map(int, v.split("."))): o for v, o in data.get("expect_from_python", {}).items()}
    for version in sorted(v for v in overrides if sys.version_info >= v):
        expect.update(overrides[version])
    return OldForm(key=key, probe=stem.with_suffix(".py"), expect=expect,
                   packages=tuple(data.get("packages", ())), sources=tuple(map(tuple, data.get("sources", ()))),
                   **{name: data[name] for name in _TEXT})


def keys() -> list[str]:
    """The page's order, from ``forms/order.txt``."""
    lines = (FORMS_DIR / "order.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


FORMS: list[OldForm] = [load(key) for key in keys()]


def is_shell(code: str) -> bool:
    """A snippet that is a command line (pip, celery), not Python."""
    return code.split(maxsplit=1)[0] in ("pip", "celery")


# ---------------------------------------------------------------- running the probes


def run_probe(form: OldForm, timeout: float = PROBE_TIMEOUT, python: str | None = None) -> dict[str, Any]:
    """Run a probe in a subprocess (in a fresh temporary folder) and return its JSON outcome.

    A probe that crashes, prints no JSON or overruns ``timeout`` returns ``{"probe_failed": ...}``
    with the end of its stderr, so the test names the problem instead of a JSON error.
    """
    with tempfile.TemporaryDirectory(prefix="oldforms-") as folder:
        try:
            done = subprocess.run([python or sys.executable, "-I", "-c", _BOOT, str(HERE), str(form.probe)],
                                  cwd=folder, env=clean_env(drop=PYTHON_VARS), capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"probe_failed": f"no answer within {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    try:
        outcome = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        return {"probe_failed": f"exit code {done.returncode}, no JSON line", "stderr": done.stderr[-2000:]}
    if done.returncode != 0:
        outcome["probe_failed"] = f"exit code {done.returncode}"
        outcome["stderr"] = done.stderr[-2000:]
    return outcome


def check(expect: dict[str, Any], outcome: dict[str, Any]) -> list[str]:
    """What in ``outcome`` disagrees with ``expect``.

    A key named ``message`` (or ending in ``_message``) holds a substring the outcome's text must
    contain; every other key must be equal.
    """
    problems = []
    if "probe_failed" in outcome:
        problems.append(f"the probe failed: {outcome['probe_failed']}\n{outcome.get('stderr', '')}")
    for key, want in expect.items():
        if key not in outcome:
            problems.append(f"{key}: missing from the probe's outcome {outcome}")
        elif (key == "message" or key.endswith("_message")) and isinstance(want, str):
            if not isinstance(outcome[key], str) or want not in outcome[key]:
                problems.append(f"{key}: expected to contain {want!r}, got {outcome[key]!r}")
        elif outcome[key] != want:
            problems.append(f"{key}: expected {want!r}, got {outcome[key]!r}")
    return problems


def source_problems(form: OldForm) -> list[str]:
    """Citations of library source whose line no longer holds the quoted text."""
    problems = []
    for path, line, text in form.sources:
        if path.startswith("stdlib:"):
            if sys.version_info[:2] != CITED_PYTHON:
                continue  # the standard library's lines were cited from CITED_PYTHON's
            file = Path(sysconfig.get_paths()["stdlib"]) / path.removeprefix("stdlib:")
        else:
            file = Path(sysconfig.get_paths()["purelib"]) / path
        if not file.exists():
            problems.append(f"{path}: not found at {file}")
            continue
        lines = file.read_text().splitlines()
        if line is None:
            if not any(text in candidate for candidate in lines):
                problems.append(f"{path}: no line contains {text!r}")
        elif not (0 < line <= len(lines) and text in lines[line - 1]):
            got = lines[line - 1].strip() if 0 < line <= len(lines) else "(past the end)"
            problems.append(f"{path}:{line}: expected {text!r}, found {got!r}")
    return problems


# ---------------------------------------------------------------- the page


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _python() -> str:
    return "Python " + ".".join(map(str, CITED_PYTHON))


def _cite(path: str, line: int | None) -> str:
    shown = path.removeprefix("stdlib:")
    return f"`{shown}:{line}`" if line else f"`{shown}`"


def render() -> str:
    """The Markdown page, built from FORMS and the versions installed in this environment."""
    packages = sorted({dist for form in FORMS for dist in form.packages})
    out = [
        "# Old forms and today's forms",
        "",
        "<!-- Generated from course/oldforms/forms/ (one .yml and one probe .py per form): edit them, then run",
        f"     {REGENERATE}",
        "     tests/test_old_forms.py fails when this file and the data disagree. -->",
        "",
        "Blog posts, answers and the brief this course grew from show forms that no longer work, or that",
        "work differently from what they promise. Each one below is **run** against the course's pinned",
        "versions by `tests/test_old_forms.py`, which asserts what happens (the exception and its message,",
        "the warning, or the behaviour), so if an upgrade changes the outcome the test fails and this page",
        "is corrected. See the list in a terminal with `python -m course.oldforms`, and what each probe",
        "sees now with `python -m course.oldforms --check [KEY ...]` (the keys are the anchors below).",
        "",
        "Checked with " + _python() + " and " + ", ".join(f"{d} {_version(d)}" for d in packages) + ".",
        "",
        "| # | Old form | Today | Taught in |",
        "|---|---|---|---|",
    ]
    for n, form in enumerate(FORMS, 1):
        cells = [f"[{form.title}](#{form.key})", form.today_title, form.where]
        out.append(f"| {n} | " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    for n, form in enumerate(FORMS, 1):
        checked_with = ", ".join([_python(), *(f"{dist} {_version(dist)}" for dist in form.packages)])
        out += [
            "", f'<a id="{form.key}"></a>', "", f"## {n}. {form.title}", "", f"Met in {form.seen_in}.", "",
            "```" + ("bash" if is_shell(form.old) else "python"), form.old, "```", "",
            f"**What happens** ({checked_with}): {form.what_happens}", "", "**Today:**", "",
            "```" + ("bash" if is_shell(form.today) else "python"), form.today, "```", "",
            f"**Taught in:** {form.where}.",
        ]
        if form.sources:
            out += ["", "**Source:** " + ", ".join(_cite(path, line) for path, line, _ in form.sources) + "."]
    out.append("")
    return "\n".join(out)


def _check_all(keys: list[str]) -> int:
    forms = [f for f in FORMS if not keys or f.key in keys]
    unknown = set(keys) - {f.key for f in forms}
    if unknown:
        print(f"unknown key(s): {', '.join(sorted(unknown))}; known: {', '.join(f.key for f in FORMS)}")
        return 2
    failed = 0
    with ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 1))) as pool:
        for form, outcome in zip(forms, pool.map(run_probe, forms)):
            problems = check(form.expect, outcome) + source_problems(form)
            failed += bool(problems)
            print(f"{'ok  ' if not problems else 'FAIL'} {form.key}: {json.dumps(outcome)}")
            for problem in problems:
                print(f"       {problem}")
    print(f"\n{len(forms) - failed} of {len(forms)} old forms behave as the page says.")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Print the page (``course old-forms``); ``--check [KEY ...]`` runs the probes instead.

    ``argv=None`` means no options (not ``sys.argv``), so a caller such as the course CLI can call
    ``main()`` whatever its own command line was."""
    parser = argparse.ArgumentParser(prog="course old-forms", description=(
        "Old forms met online, what they do with the pinned versions, and today's form."))
    parser.add_argument("--check", nargs="*", metavar="KEY",
                        help="run the probes (all, or the keys given) and show what each old form does now")
    args = parser.parse_args([] if argv is None else argv)
    if args.check is not None:
        return _check_all(args.check)
    sys.stdout.write(render())
    return 0
