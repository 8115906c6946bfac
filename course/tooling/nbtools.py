"""Notebook utilities: execute a notebook in a fresh kernel, strip outputs.

    python -m course.nbtools run notebooks/01_database_lifecycle.ipynb
    python -m course.nbtools strip notebooks/*.ipynb
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat

__all__ = ["execute", "strip", "NotebookFailed"]


class NotebookFailed(AssertionError):
    pass


def execute(path: str | Path, *, timeout_per_cell: int = 120, env: dict[str, str] | None = None,
            save: bool = False) -> float:
    """Run every cell in a fresh kernel with the notebook's folder as working directory.
    Returns seconds; raises NotebookFailed naming the notebook and the cell. ``save=True`` (the
    notebook test): keep the executed copy in the store (course.tooling.executed), or, when the
    notebook failed, remove the older copy there."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    path = Path(path).resolve()
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout_per_cell, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    if save:
        from course.tooling import executed

        before = executed.fingerprint(path)
    start = time.perf_counter()
    try:
        client.execute(**({"env": env} if env is not None else {}))
    except (CellExecutionError, CellTimeoutError) as exc:
        index = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code" and any(
            o.get("output_type") == "error" for o in c.get("outputs", []))), None)
        cell = f"cell {index}" if index is not None else "a cell"
        if save:
            executed.forget(path)
        raise NotebookFailed(f"{path.name}, {cell} failed after {time.perf_counter() - start:.1f} s:\n{exc}") from None
    seconds = time.perf_counter() - start
    if save:
        executed.save(nb, path, seconds, before)
    return seconds


def strip(path: str | Path) -> bool:
    """Clear outputs and execution counts. Returns True if the file changed."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    changed = False
    for cell in nb.cells:
        if cell.cell_type == "code":
            if cell.outputs or cell.execution_count is not None:
                changed = True
            cell.outputs, cell.execution_count = [], None
        for key in ("execution", "collapsed", "scrolled"):
            if key in cell.metadata:
                del cell.metadata[key]
                changed = True
    if changed:
        nbformat.write(nb, path)
    return changed


def main(argv: list[str]) -> int:
    command, *paths = argv
    for p in paths:
        if command == "strip":
            print(f"{p}: {'stripped' if strip(p) else 'already clean'}")
        elif command == "run":
            print(f"{p}: ran in {execute(p):.1f} s")
        else:
            raise SystemExit(f"unknown command {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
