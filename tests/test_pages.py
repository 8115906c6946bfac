"""The generated pages (ERRORS.md, IMPACT.md, workshop/INSTRUCTORS.md; course/pages/) equal what
they are made from, and ``course why`` finds every indexed text.

Two halves (course/pages/__init__.py explains the design):

* against the sources, with no notebook run (``make test``'s first phase): each committed page
  equals its render from today's modules.yml, notebooks, mistakes, hints and course/pages/ with the
  measurements it recorded; the sections they name still exist;
* against the executed notebooks (marked ``executed``: ``make test``'s last phase, after the notebook
  test saved every executed notebook to build/executed): every error text still appears where the
  index says, in an output or an asserted exception; every impact figure is still printed, within
  its tolerance of the recorded one; the guide's checkpoint answers come from these notebooks.
  Outside ``make test`` this half skips naming the missing notebooks; under CI=true it fails.

Every failure says what to run: usually ``make pages``.
"""

from __future__ import annotations

import pytest

from course.pages import checks, errors
from course.tooling import executed as store


def test_pages_match_their_sources() -> None:
    problems = checks.against_sources()
    assert not problems, "\n\n".join(problems)


def test_why_finds_every_indexed_text() -> None:
    """`course why` finds each entry by each text the notebooks show, by its title and by each alias."""
    missed = []
    for entry in errors.entries():
        for text in (*entry.shown, entry.title, *entry.aliases):
            found = [e.title for e, _ in errors.why(text)]
            if entry.title not in found:
                missed.append(f"{text!r} does not find {entry.title!r} (found {found[:3]})")
            elif text in entry.shown and found[0] != entry.title:
                missed.append(f"{text!r} finds {found[0]!r} before {entry.title!r}")
    assert not missed, "\n".join(missed)


def test_why_reads_a_real_message() -> None:
    """A message as production logs it, numbers and all, finds its entry and the section."""
    message = ("sqlalchemy.exc.TimeoutError: QueuePool limit of size 5 overflow 10 reached, connection timed "
               "out, timeout 30.00 (Background on this error at: https://sqlalche.me/e/20/3o7r)")
    found = errors.why(message)
    assert found and found[0][0].title.startswith("QueuePool limit"), [e.title for e, _ in found]
    assert found[0][1].get("01"), "ERRORS.md names no section of notebook 01 for it"
    assert not errors.why("a message the course never shows: zebra crossing")


def test_why_command(capsys) -> None:
    from course.tooling.cli import main

    assert main(["why", "MissingGreenlet"]) == 0
    out = capsys.readouterr().out
    assert "module 01" in out and "expire_on_commit=False" in out and "course check 01" in out, out
    assert main(["why", "zebra", "crossing"]) == 1
    assert "no entry" in capsys.readouterr().out


@pytest.mark.executed
def test_pages_match_the_executed_notebooks() -> None:
    executed = store.require()
    problems = checks.against_executed(executed)
    assert not problems, "\n".join(problems)


@pytest.mark.executed
def test_the_executed_check_can_fail() -> None:
    """A notebook that stops showing what the pages promise fails the check: here notebook 02 and
    07 with every output and every assert removed."""
    import copy

    from course.tooling.executed import Executed

    executed = store.require()
    blank = dict(executed)
    for number in ("02", "07"):
        nb = copy.deepcopy(executed[number].nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell["outputs"] = []
                cell["source"] = "\n".join(line for line in cell.source.splitlines() if "assert" not in line)
        blank[number] = Executed(executed[number].module, nb)
    problems = "\n".join(checks.against_executed(blank))
    for promised in ("Too many open files", "Response not awaited", "memory.saving", "413"):
        assert promised in problems, f"{promised!r} not reported:\n{problems}"
