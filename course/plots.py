"""Small matplotlib helpers so every notebook's figures look alike.

Colour is never the only signal (many readers cannot tell the course's red from its green, and
printouts are often grey): every bar drawn in one of the course's colours also gets that colour's
hatching and a direct label or legend entry saying what it means ("problem", "trap", "fix"), and
values are written on the bars. Lines in those colours get that colour's marker and line style
(``MARKS``) and a direct label or legend entry.

A notebook draws each figure with one call here (and ``plt.show()``): the lesson cell shows what
is compared, this module how it is drawn.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

__all__ = [
    "style", "compare_bars", "bar_panels", "errors_and_latency", "answers_by_status", "loop_lag",
    "answer_staircase", "memory_over_time", "outcome_bars", "BAD", "GOOD", "NEUTRAL", "TRAP", "MEANING",
    "MARKS",
]

BAD, GOOD, NEUTRAL, TRAP = "#c0392b", "#27ae60", "#7f8c8d", "#e67e22"

MEANING: dict[str, tuple[str, str]] = {
    BAD: ("problem", "xxx"),
    TRAP: ("trap", "///"),
    GOOD: ("fix", ""),
    NEUTRAL: ("reference", "..."),
}
"""Colour -> (what it means, its hatching). Colours not listed here get no hatching and no label."""

MARKS: dict[str, tuple[str, str]] = {BAD: ("x", "-"), TRAP: ("^", "-."), GOOD: ("o", "--"), NEUTRAL: ("s", ":")}
"""Colour -> (marker, line style): a line in a course colour is told apart without its colour."""


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


def _marks(color: str, i: int) -> tuple[str, str]:
    """The marker and line style for the ``i``-th line, drawn in ``color``."""
    return MARKS.get(color, ("osx^"[i % 4], ("-", "--", ":", "-.")[i % 4]))


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
                 fmt: str = "{:.2f}", ax: Any = None, tags: bool = True,
                 figsize: tuple[float, float] | None = None) -> Any:
    """One bar per label with its value written on top, on ``ax`` or on a figure of its own
    (``figsize``, by default as wide as the bars need). Returns the Axes.

    Bars in the course's colours are hatched by meaning (``MEANING``: problem ``xxx``, trap ``///``,
    fix plain) and, with ``tags`` (the default) and more than one meaning on the axes, the meaning
    is written under the value ("46" / "problem"): a direct label, no legend to look up.
    """
    import matplotlib.pyplot as plt

    style()
    own_figure = ax is None
    if own_figure:
        _, ax = plt.subplots(figsize=figsize or (max(4, 1.6 * len(values)), 3.4))
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
    if own_figure:
        ax.figure.tight_layout()
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


def bar_panels(panels: Mapping[str, Mapping[str, float]], *, ylabel: str | Sequence[str],
               colors: Sequence[str] | None = None, fmt: str = "{:.2f}", title: str = "",
               sharey: bool = False) -> Any:
    """:func:`compare_bars` side by side: one panel per title in ``panels`` (title -> label ->
    value), the same colours in each; ``ylabel`` one for all or one per panel. Returns the Figure."""
    import matplotlib.pyplot as plt

    style()
    fig, axes = plt.subplots(1, len(panels), figsize=(max(9, 5 * len(panels)), 3.6), sharey=sharey,
                             squeeze=False)
    ylabels = [ylabel] * len(panels) if isinstance(ylabel, str) else list(ylabel)
    for ax, (name, values), label in zip(axes[0], panels.items(), ylabels):
        compare_bars(values, title=name, ylabel=label, colors=colors, fmt=fmt, ax=ax)
    if title:
        fig.suptitle(title, fontweight="bold")
    fig.tight_layout()
    return fig


def answers_by_status(counts: Mapping[str, Mapping[int, int]],
                      groups: Mapping[str, tuple[Sequence[int], str, str]], *, total: int, title: str,
                      xlabel: str, spell_out: Sequence[int] = (), min_label: int = 12) -> Any:
    """One horizontal bar per label in ``counts`` (label -> status code -> how many), stacked by
    ``groups`` (name -> (status codes, colour, hatching)) in that order and drawn from the top.
    A segment of at least ``min_label`` answers has its count written on it; the counts of the
    ``spell_out`` statuses are written beside every bar, also where their segment is too thin to
    see. ``total`` is the number of answers per bar. Returns the Axes."""
    import matplotlib.pyplot as plt

    style()
    _, ax = plt.subplots(figsize=(9, 3.4))
    labels = list(counts)
    left = [0] * len(labels)
    for name, (codes, color, hatch) in groups.items():
        values = [sum(counts[label].get(code, 0) for code in codes) for label in labels]
        bars = ax.barh(labels, values, left=left, color=color, hatch=hatch, edgecolor="white", label=name)
        for bar, value in zip(bars, values):
            if value >= min_label:
                ax.text(bar.get_x() + bar.get_width() / 2, bar.get_y() + bar.get_height() / 2, str(value),
                        ha="center", va="center", fontweight="bold",
                        bbox=dict(facecolor="white", edgecolor="none", pad=1.5))
        left = [a + b for a, b in zip(left, values)]
    if spell_out:
        for y, label in enumerate(labels):
            note = "\n".join(f"{counts[label].get(code, 0)} x {code}" for code in spell_out)
            ax.annotate(note, (total, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=9)
    ax.set_xlim(0, total * 1.16)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=2, frameon=False)
    ax.figure.tight_layout()
    return ax


def loop_lag(samples: Mapping[str, Sequence[tuple[float, float]]], *, title: str,
             colors: Sequence[str] | None = None, xlabel: str = "seconds since the burst started") -> Any:
    """How long the event loop had been stuck at each moment, one line per label in ``samples``
    (a :class:`course.blocking.LagProbe`'s ``(t, lag)`` samples): the curve rises while the probe's
    timer is overdue and drops when it fires (the markers). The longest stall is written out.
    Returns the Axes."""
    import matplotlib.pyplot as plt

    from course.blocking import lag_curve

    style()
    _, ax = plt.subplots(figsize=(9, 3.4))
    cols = _colors(list(samples), colors)
    for i, ((label, points), color) in enumerate(zip(samples.items(), cols)):
        marker, line = _marks(color, i)
        xs, ys = lag_curve(list(points))
        ax.plot(xs, [y * 1000 for y in ys], color=color, linestyle=line, linewidth=2, label=label)
        ax.plot([t for t, _ in points], [lag * 1000 for _, lag in points], color=color, linestyle="",
                marker=marker, markersize=5)  # the probe's wake-ups
    everything = [point for points in samples.values() for point in points]
    if everything:
        worst_t, worst_lag = max(everything, key=lambda point: point[1])
        ax.annotate(f"the probe woke {worst_lag:.2f} s late:\nno request ran meanwhile",
                    xy=(worst_t, worst_lag * 1000), xytext=(-190, -10), textcoords="offset points",
                    fontsize=9, ha="left")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loop stuck for (ms)")
    ax.set_title(title)
    ax.legend(loc="upper left")
    return ax


def answer_staircase(latencies: Mapping[str, Sequence[float]], *, title: str,
                     colors: Sequence[str] | None = None) -> Any:
    """Each request's answer time, sorted, one line per label in ``latencies`` (label -> seconds):
    requests that wait for a free thread show as steps. Returns the Axes."""
    import matplotlib.pyplot as plt

    style()
    _, ax = plt.subplots(figsize=(9, 3.8))
    cols = _colors(list(latencies), colors)
    for i, ((label, seconds), color) in enumerate(zip(latencies.items(), cols)):
        marker, line = _marks(color, i)
        done = sorted(seconds)
        ax.plot(range(1, len(done) + 1), done, color=color, marker=marker, markevery=5, linestyle=line,
                markersize=5, label=label)
    ax.set_xlabel("n-th answer (sorted)")
    ax.set_ylabel("answered after (s)")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    return ax


def memory_over_time(samples: Mapping[str, Sequence[Any]], *, peaks: Mapping[str, float], title: str,
                     colors: Sequence[str] | None = None, xlabel: str = "seconds",
                     ylabel: str = "RSS (MiB)") -> Any:
    """A process's memory over time, one line per label in ``samples`` (:class:`course.probes.
    MemorySampler` samples, with ``.t`` and ``.rss_mib``), each labelled at its highest point with
    its peak from ``peaks`` (the kernel's VmHWM, which sampling can miss). Returns the Axes."""
    import matplotlib.pyplot as plt

    style()
    _, ax = plt.subplots(figsize=(9, 4))
    cols = _colors(list(samples), colors)
    for i, ((label, points), color) in enumerate(zip(samples.items(), cols)):
        marker, line = _marks(color, i)
        t, rss = [s.t for s in points], [s.rss_mib for s in points]
        ax.plot(t, rss, color=color, marker=marker, linestyle=line, markersize=4,
                markevery=max(1, len(t) // 12))
        if rss:
            top = max(range(len(rss)), key=rss.__getitem__)
            ax.annotate(f"{label}: VmHWM {peaks[label]:.0f} MiB", (t[top], rss[top]), xytext=(6, 4),
                        textcoords="offset points", fontsize=9, color="black")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return ax


def outcome_bars(seconds: Mapping[str, float | None], *, window: float, title: str, ylabel: str,
                 lost: str = "lost", fmt: str = "{:.1f} s", figsize: tuple[float, float] | None = None) -> Any:
    """How long each thing took to finish, judged against one ``window`` (drawn as a dashed line):
    a bar with its value for each label that finished (``seconds[label]``, drawn as a fix), and, for
    each that did not finish within the window (``None``), no bar at all but a cross on the axis and
    the word ``lost``: a loss never reads as a long wait. Returns the Axes."""
    import matplotlib.pyplot as plt

    style()
    _, ax = plt.subplots(figsize=figsize or (max(5, 2.2 * len(seconds)), 3.6))
    labels = list(seconds)
    done = [seconds[k] if seconds[k] is not None else 0 for k in labels]
    bars = ax.bar(labels, done, color=GOOD, width=0.55)
    ax.bar_label(bars, labels=[fmt.format(seconds[k]) if seconds[k] is not None else "" for k in labels],
                 padding=2, fontsize=9)
    for i, k in enumerate(labels):
        if seconds[k] is None:
            marker, _ = MARKS[BAD]
            ax.plot([i], [0], marker=marker, color=BAD, markersize=14, markeredgewidth=3, clip_on=False)
            ax.annotate(f"{lost}: no outcome\nwithin {window:g} s", (i, 0), xytext=(0, 14),
                        textcoords="offset points", ha="center", fontsize=9, color=BAD, fontweight="bold")
    ax.axhline(window, color=NEUTRAL, linestyle="--", linewidth=1)
    ax.annotate(f"window: {window:g} s", (len(labels) - 0.5, window), xytext=(0, 3), textcoords="offset points",
                ha="right", fontsize=8, color=NEUTRAL)
    ax.set_ylim(0, window * 1.15)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.figure.tight_layout()
    return ax
