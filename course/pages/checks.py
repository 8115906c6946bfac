"""What keeps the generated pages equal to what they are made from (tests/test_pages.py and
``python -m course.pages check``). Each returns a list of problems, each naming the fix."""

from __future__ import annotations

import difflib
from pathlib import Path

from course.manifest import ROOT, find_module
from course.pages import embedded, errors, impact, instructors

PAGES = {"ERRORS.md": (errors.PAGE, errors), "IMPACT.md": (impact.PAGE, impact),
         "workshop/INSTRUCTORS.md": (instructors.PAGE, instructors)}


def write(executed: dict) -> list[Path]:
    out = []
    for _, (path, page) in PAGES.items():
        path.write_text(page.render(page.measure(executed)))
        out.append(path)
    return out


def _diff(committed: str, fresh: str, name: str) -> str:
    lines = list(difflib.unified_diff(committed.splitlines(), fresh.splitlines(), f"{name} (committed)",
                                      f"{name} (from the sources now)", n=1, lineterm=""))
    return "\n".join(lines[:40]) + ("\n..." if len(lines) > 40 else "")


def _headings(number: str) -> set[str]:
    from course.pages.lessons import lesson

    try:
        notebook = find_module(number, graded=False).notebook
    except LookupError:
        return set()
    return {s.heading for s in lesson(notebook).sections} if notebook.exists() else set()


def against_sources() -> list[str]:
    """Each committed page equals its render from today's sources and its own recorded measurements,
    and the sections those measurements name still exist."""
    problems = []
    for name, (path, page) in PAGES.items():
        if not path.exists():
            problems.append(f"{name} is missing: run `make pages`")
            continue
        committed = path.read_text()
        measured = embedded(committed)
        if measured is None:
            problems.append(f"{name} has no measured data at its end (was it edited by hand?): run `make pages`")
            continue
        fresh = page.render(measured)
        if fresh != committed:
            problems.append(f"{name} differs from what its sources make now (modules.yml, the notebooks, the "
                            f"mistakes, the hints, course/pages/): run `make pages`\n{_diff(committed, fresh, name)}")
    # sections named by the recorded measurements: a renamed heading is seen here, without a run
    recorded = embedded(errors.PAGE.read_text()) if errors.PAGE.exists() else None
    for title, places in (recorded or {}).items():
        for number, sections in places.items():
            gone = [s for s in sections if s not in _headings(number)]
            if gone:
                problems.append(f"ERRORS.md: {title!r}: notebook {number} has no section {gone}: run `make pages`")
    recorded = embedded(impact.PAGE.read_text()) if impact.PAGE.exists() else None
    for claim in impact.claims():
        section = ((recorded or {}).get(claim["id"]) or {}).get("section")
        if section and section not in _headings(claim["module"]):
            problems.append(f"IMPACT.md: {claim['id']}: notebook {claim['module']} has no section {section!r}: "
                            "run `make pages`")
    return problems


def _skipped_sections(executed: dict) -> dict[str, set[str]]:
    """Per notebook, the sections that may have skipped in this run: those that need a service, when
    the run did not require the services (COURSE_REQUIRE_SERVICES unset: a maintainer's laptop)."""
    from course.pages.lessons import lesson
    from course.tooling.executed import ran_every_section

    out = {}
    for number, e in executed.items():
        if e is None or ran_every_section(e):
            out[number] = set()
        else:
            out[number] = {s.heading for s in lesson(e.module.notebook, e.nb).sections if s.services()}
    return out


def against_executed(executed: dict) -> list[str]:
    """The recorded measurements agree with this run's executed notebooks. A section that needs a
    service is not held against a run that did not require the services (it may have skipped);
    CI requires them (COURSE_REQUIRE_SERVICES=1), so there every section counts."""
    problems = []
    fresh = errors.measure(executed, every=True)
    recorded = embedded(errors.PAGE.read_text()) or {}
    skipped = _skipped_sections(executed)
    for entry in errors.entries():
        for number, _ in entry.places:
            if number not in executed or executed[number] is None:
                continue
            then = recorded.get(entry.title, {}).get(number, [])
            if then and then[0] in skipped.get(number, set()):
                continue
            now = fresh.get(entry.title, {}).get(number, [])
            if not now:
                problems.append(f"error index: {entry.title!r}: notebook {number} no longer shows any of "
                                f"{list(entry.shown)} (in an output or an assert): fix the entry in "
                                "course/pages/errors.yml, or the notebook")
                continue
            if not then or then[0] not in now:
                problems.append(f"error index: {entry.title!r}: ERRORS.md says notebook {number} section "
                                f"{then[:1]}, this run shows it in {now}: run `make pages`")
    problems += [f"impact table: {p}" for p in impact.compare(embedded(impact.PAGE.read_text()) or {},
                                                              impact.measure(executed))]
    problems += [f"instructor guide: {p}" for p in instructors.compare(embedded(instructors.PAGE.read_text()) or {},
                                                                       instructors.measure(executed), skipped)]
    return problems


__all__ = ["PAGES", "write", "against_sources", "against_executed", "ROOT"]
