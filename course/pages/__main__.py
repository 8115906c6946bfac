"""``make pages``: write ERRORS.md, IMPACT.md and workshop/INSTRUCTORS.md from their sources and the
executed notebooks; ``check``: what tests/test_pages.py checks, from a terminal.

    python -m course.pages write     executes the notebooks whose saved copy is missing or stale, then writes
    python -m course.pages check     the committed pages against their sources and the executed notebooks
"""

from __future__ import annotations

import sys

from course.pages import checks


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "write"
    if command == "write":
        from course.tooling.executed import ensure

        # every section must have run (PostgreSQL, Redis, RabbitMQ): a copy where one skipped is
        # executed again with COURSE_REQUIRE_SERVICES=1 (and fails, naming the service, without it)
        executed = ensure(require_services=True)
        for path in checks.write(executed):
            print(f"wrote {path}")
        return 0
    if command == "check":
        from course.manifest import modules
        from course.tooling.executed import executed as saved

        problems = checks.against_sources()
        available = {m.number: saved(m) for m in modules() if m.notebook.exists()}
        if all(available.values()):
            problems += checks.against_executed(available)
        else:
            print("(some executed notebooks are missing or stale: only the sources were checked)")
        print("\n".join(problems) or "the pages agree with their sources and the executed notebooks")
        return 1 if problems else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
