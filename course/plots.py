"""Small matplotlib helpers so every notebook's figures look alike.

Colour is never the only signal (many readers cannot tell the course's red from its green, and
printouts are often grey): every bar drawn in one of the course's colours also gets that colour's
hatching and a direct label or legend entry saying what it means ("problem", "trap", "fix"), and
values are written on the bars.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

__all__ = ["style", "compare_bars", "errors_and_latency", "BAD", "GOOD", "NEUTRAL", "TRAP", "MEANING"]

BAD, GOOD, NEUTRAL, TRAP = "#c0392b", "#27ae60", "#7f8c8d", "#e67e22"

MEANING: dict[str, tuple[str, str]] = {
    BAD: ("problem", "xxx"),
    TRAP: ("trap", "///"),
    GOOD: ("fix", ""),
    NEUTRAL: ("reference", "..."),
}
"""Colour -> (what it means, its hatching). Colours not listed here get no hatching and no label."""


def style() -> None:
    """Apply the course's figure style (called by every helper below)."""
    import matplotlib as mpl

    mpl.rcParams.update({
        "figure.figsize": (9, 3.6), "figure.dpi": 100, "axes.spines.top": False,
        "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3, "axes.titleweight": "bold",
        "font.size": 10, "hatch.linewidth": 0.8,
    })


def _colors(labels: Sequence[str], colors: Sequence[str] | None) -> list[str]:
    if colors:
        return list(colors)
    palette = [BAD, GOOD, TRAP, NEUTRAL]
    return [palette[i % len(palette)] for i in range(len(labels))]


def _hatch(color: str) -> str:
    return MEANING.get(color, ("", ""))[1]


def _meanings_used(colors: Sequence[str]) -> list[str]:
    """The course colours used, in first-use order; empty if fewer than two (nothing to tell apart)."""
    used = list(dict.fromkeys(c for c in colors if c in MEANING))
    return used if len(used) >= 2 else []


def _legend_handles(colors: Sequence[str]) -> list[Any]:
    """One legend entry per course colour used, or none if only one is used."""
    from matplotlib.patches import Patch

    return [Patch(facecolor=c, edgecolor="white", hatch=MEANING[c][1], label=MEANING[c][0])
            for c in _meanings_used(colors)]


def _hatch_bars(bars: Any, colors: Sequence[str]) -> None:
    for bar, color in zip(bars, colors):
        hatch = _hatch(color)
        if hatch:
            bar.set_hatch(hatch)
            bar.set_edgecolor("white")  # the hatching is drawn in the edge colour


def compare_bars(values: Mapping[str, float], *, title: str, ylabel: str, colors: Sequence[str] | None = None,
                 fmt: str = "{:.2f}", ax: Any = None, tags: bool = True) -> Any:
    """One bar per label with its value written on top. Returns the Axes.

    Bars in the course's colours are hatched by meaning (``MEANING``: problem ``xxx``, trap ``///``,
    fix plain) and, with ``tags`` (the default) and more than one meaning on the axes, the meaning
    is written under the value ("46" / "problem"): a direct label, no legend to look up.
    """
    import matplotlib.pyplot as plt

    style()
    if ax is None:
        _, ax = plt.subplots(figsize=(max(4, 1.6 * len(values)), 3.4))
    labels = list(values)
    cols = _colors(labels, colors)
    bars = ax.bar(labels, [values[k] for k in labels], color=cols)
    _hatch_bars(bars, cols)
    shown = set(_meanings_used(cols)) if tags else set()
    texts = [fmt.format(values[k]) + (f"\n{MEANING[c][0]}" if c in shown else "") for k, c in zip(labels, cols)]
    ax.bar_label(bars, labels=texts, padding=2, fontsize=9)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.margins(y=0.3 if shown else 0.15)
    return ax


def errors_and_latency(results: Mapping[str, Any], *, title: str = "", colors: Sequence[str] | None = None) -> Any:
    """Two panels for a set of :class:`course.load.LoadResult`: failed requests, and latency
    (p95 as a bar, p50 as a black diamond, both with their values). Returns the Figure."""
    import matplotlib.pyplot as plt
    import numpy as np

    style()
    labels = list(results)
    cols = _colors(labels, colors)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(9, 2.4 * len(labels)), 3.8))
    compare_bars({k: results[k].failed for k in labels}, title=f"failed requests (of {results[labels[0]].n})",
                 ylabel="requests", colors=cols, fmt="{:.0f}", ax=ax1)
    x = np.arange(len(labels))
    p50 = [results[k].p50 for k in labels]
    p95 = [results[k].p95 for k in labels]
    width = 0.45
    bars = ax2.bar(x, p95, width, color=cols)
    _hatch_bars(bars, cols)
    ax2.bar_label(bars, labels=[f"p95 {v:.2f}" for v in p95], padding=2, fontsize=8)
    ax2.scatter(x, p50, marker="D", s=36, color="black", zorder=3, label="p50 (median)")
    for xi, v in zip(x, p50):  # the median's value just right of its bar, at its height
        ax2.annotate(f"p50 {v:.2f}", (xi + width / 2, v), xytext=(3, 0), textcoords="offset points",
                     fontsize=8, va="center")
    ax2.set_xticks(x, labels)
    ax2.set_ylabel("seconds")
    ax2.set_title("latency of answered requests")
    ax2.margins(y=0.2)
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", labelsize=8)
    from matplotlib.patches import Patch

    handles = _legend_handles(cols) + [plt.Line2D([], [], marker="D", color="black", linestyle="", label="p50 (median)"),
                                       Patch(facecolor="lightgray", label="bar: p95")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontweight="bold")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig
