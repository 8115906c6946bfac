"""The pages made from the course itself, never written twice by hand:

    ERRORS.md                  the error index (course why "TEXT"): errors.yml + the executed notebooks
    IMPACT.md                  the brief's four claims beside the figures the notebooks measure: impact.yml + outputs
    workshop/INSTRUCTORS.md    the instructor guide: modules.yml, the notebooks' sections, checkpoints and
                               challenges, the known mistakes, the hints, workshop/sizing.json, the outputs
    the site (make site)       the executed notebooks, the module table, OLD_FORMS.md and the three pages above

How a page stays right when the modules change: each page is ``render(sources, measured)``. The
sources are read when the page is rendered; ``measured`` is what the page needs from the executed
notebooks (course.tooling.executed: saved by the notebook test), and the committed page carries the
``measured`` it was rendered with, as JSON in an HTML comment at its end. Two tests keep it equal:

* tests/test_pages.py::test_pages_match_their_sources (no notebook needed, phase 1 of make test):
  the committed page equals ``render(today's sources, its own measured)``: an edited modules.yml,
  mistake, hint, heading or checkpoint shows at once;
* tests/test_pages.py::test_pages_match_the_executed_notebooks (``make test``'s last phase): the
  measured data read from this run's executed notebooks agrees with the committed one (exactly for
  texts and sections; within the tolerance a page declares for a measured figure).

``make pages`` (python -m course.pages write) renders them again, executing first any notebook
whose executed copy is missing or stale; ``python -m course.pages check`` is what the tests check.
"""

from __future__ import annotations

import json
import re

__all__ = ["embed", "embedded", "strip_embedded"]

_BLOCK = re.compile(r"\n<!-- measured \(generated, do not edit\): (?P<json>.*?) -->\n?\Z", re.S)


def embed(text: str, measured: dict) -> str:
    """The page with its measured data at the end (invisible on GitHub and in the site)."""
    # "--" may not stand in an HTML comment; in JSON strings "\u002d" reads back as "-"
    data = json.dumps(measured, sort_keys=True, ensure_ascii=False, indent=1).replace("--", "-\\u002d")
    return text.rstrip("\n") + f"\n\n<!-- measured (generated, do not edit): {data} -->\n"


def embedded(text: str) -> dict | None:
    m = _BLOCK.search(text)
    return json.loads(m["json"]) if m else None


def strip_embedded(text: str) -> str:
    return _BLOCK.sub("\n", text).rstrip("\n") + "\n"
