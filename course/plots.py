"""Small matplotlib helpers so every notebook's figures look alike."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

__all__ = ["style", "compare_bars", "errors_and_latency"]

BAD, GOOD, NEUTRAL, TRAP = "#c0392b", "#27ae60", "#7f8c8d", "#e67e22"


def style() -> None:
    """Apply the course's figure style (called by every helper below)."""
    import matplotlib as mpl

    mpl.rcParams.update({
        "figure.figsize": (9, 3.6), "figure.dpi": 100, "axes.spines.top": False,
        "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3, "axes.titleweight": "bold",
        "font.size": 10,
    })


def _colors(labels: Sequence[str], colors: Sequence[str] | None) -> list[str]:
    if colors:
        return list(colors)
    palette = [BAD, GOOD, TRAP, NEUTRAL]
    return [palette[i % len(palette)] for i in range(len(labels))]


def compare_bars(values: Mapping[str, float], *, title: str, ylabel: str, colors: Sequence[str] | None = None,
                 fmt: str = "{:.2f}", ax: Any = None) -> Any:
    """One bar per label with its value written on top. Returns the Axes."""
    import matplotlib.pyplot as plt

    style()
    if ax is None:
        _, ax = plt.subplots(figsize=(max(4, 1.6 * len(values)), 3.4))
    labels = list(values)
    bars = ax.bar(labels, [values[k] for k in labels], color=_colors(labels, colors))
    ax.bar_label(bars, labels=[fmt.format(values[k]) for k in labels], padding=2)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.margins(y=0.15)
    return ax


def errors_and_latency(results: Mapping[str, Any], *, title: str = "", colors: Sequence[str] | None = None) -> Any:
    """Two panels for a set of :class:`course.load.LoadResult`: failed requests, and p50/p95
    latency. Returns the Figure."""
    import matplotlib.pyplot as plt
    import numpy as np

    style()
    labels = list(results)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(9, 2.4 * len(labels)), 3.8))
    compare_bars({k: results[k].failed for k in labels}, title=f"failed requests (of {results[labels[0]].n})",
                 ylabel="requests", colors=colors, fmt="{:.0f}", ax=ax1)
    x = np.arange(len(labels))
    p50 = [results[k].p50 for k in labels]
    p95 = [results[k].p95 for k in labels]
    cols = _colors(labels, colors)
    b1 = ax2.bar(x - 0.2, p50, 0.4, color=cols, alpha=0.55, label="p50")
    b2 = ax2.bar(x + 0.2, p95, 0.4, color=cols, label="p95")
    ax2.bar_label(b1, fmt="%.2f", padding=2, fontsize=8)
    ax2.bar_label(b2, fmt="%.2f", padding=2, fontsize=8)
    ax2.set_xticks(x, labels)
    ax2.set_ylabel("seconds")
    ax2.set_title("latency of answered requests (p50 light, p95 dark)")
    ax2.margins(y=0.15)
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", labelsize=8)
    if title:
        fig.suptitle(title, fontweight="bold")
    fig.tight_layout()
    return fig
