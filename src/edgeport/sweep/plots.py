"""PNG plots of a sweep, per target: quality vs size, quality vs latency (frontier connected and
highlighted, every point labeled with its recipe) and weight bytes per layer / storage kind.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, so no global backend switch in
the caller's process).
"""

from __future__ import annotations

from pathlib import Path

from edgeport.sweep.records import OK
from edgeport.sweep.report import METRIC_LABELS, TargetSummary

FRONT_COLOR, OTHER_COLOR, FLOAT_COLOR = "#1f6fb2", "#9a9a9a", "#c2410c"
DPI = 110
MARKER_RADIUS_PT = 5.0  # a little more than the frontier markers (s=70 pt^2)
MAX_SEGMENTS = 12  # a breakdown shows the largest layers / kinds; the rest are summed into one segment


def write_plots(report, folder: Path) -> dict[str, dict[str, str]]:
    """Write every plot of `report` (a SweepReport) into `folder`: target -> kind -> file name.
    A plot without a single measured point is not drawn."""
    written: dict[str, dict[str, str]] = {}
    for target, summary in report.summaries().items():
        for kind, draw in (("accuracy-vs-size", lambda s: _tradeoff(s, "size")),
                           ("accuracy-vs-latency", lambda s: _tradeoff(s, "latency")),
                           ("size-breakdown", _breakdown)):
            figure = draw(summary)
            if figure is None:
                continue
            name = f"{target}-{kind}.png"
            figure.savefig(folder / name, dpi=DPI)
            written.setdefault(target, {})[kind] = name
    return written


def _figure(width: float = 6.4, height: float = 4.4):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def cost_unit(summary: TargetSummary, axis: str) -> tuple[str, float]:
    """Axis unit and the factor from bytes / milliseconds: KB, and µs when every latency is under 1 ms."""
    if axis == "size":
        return "KB", 1e-3
    latencies = [p[0] for p in summary.points("latency") if p]
    return ("µs", 1e3) if latencies and max(latencies) < 1.0 else ("ms", 1.0)


def cost_label(summary: TargetSummary, axis: str) -> str:
    unit, _ = cost_unit(summary, axis)
    if axis == "size":
        return f"artifact size ({unit})"
    if summary.latency_estimate:
        return f"estimated p50 latency ({unit}: instruction count x cycle table at the board clock)"
    return f"p50 latency at batch 1 ({unit})"


def _tradeoff(summary: TargetSummary, axis: str):
    """Quality (%) against size (KB) or latency (ms); the frontier as a staircase: between two of
    its points, the best reachable quality is that of the cheaper one."""
    points = summary.points(axis)
    _, scale = cost_unit(summary, axis)
    shown = [(c.recipe, p[0] * scale, 100 * p[1]) for c, p in zip(summary.configurations, points) if p]
    if not shown:
        return None
    front = summary.fronts[axis]
    figure = _figure()
    ax = figure.add_subplot()
    xs = [x for _, x, _ in shown]
    if min(xs) > 0 and max(xs) / min(xs) > 10:
        ax.set_xscale("log")
    front_xy = sorted((x, y) for r, x, y in shown if r in front)
    if len(front_xy) > 1:
        ax.plot([x for x, _ in front_xy], [y for _, y in front_xy], drawstyle="steps-post", color=FRONT_COLOR,
                linewidth=1.5, zorder=2)
    on = [(x, y) for r, x, y in shown if r in front]
    off = [(x, y) for r, x, y in shown if r not in front]
    ax.scatter(*zip(*on), s=70, color=FRONT_COLOR, edgecolor="black", zorder=3.5, label="Pareto frontier")
    if off:
        ax.scatter(*zip(*off), s=50, facecolor="white", edgecolor=OTHER_COLOR, linewidth=1.5, zorder=3,
                   label="dominated")
    ys = [y for _, _, y in shown]
    if summary.float_quality is not None:
        ax.axhline(100 * summary.float_quality, color=FLOAT_COLOR, linestyle="--", linewidth=1,
                   label="float model", zorder=1)
        ys.append(100 * summary.float_quality)
    low, high = min(ys), max(ys)
    pad = max(0.5, (high - low) * 0.2)
    ax.set_ylim(low - pad, min(100.0 + pad / 4, high + pad))
    left, right = ax.get_xlim()
    if ax.get_xscale() == "linear":
        span = max(right - left, 1e-9)
        ax.set_xlim(left - 0.08 * span, right + 0.15 * span)  # room for labels
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    if ax.get_xscale() == "linear":
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
    metric = METRIC_LABELS[summary.metric]
    ax.set_xlabel(cost_label(summary, axis))
    ax.set_ylabel(f"{metric} (%)")
    cost = "size" if axis == "size" else "estimated latency" if summary.latency_estimate else "latency"
    ax.set_title(f"{summary.target}: {metric} vs {cost}")
    ax.grid(True, alpha=0.3)
    figure.legend(loc="outside lower center", ncols=3, fontsize="small", frameon=False)
    _label_points(figure, ax, shown, front)
    return figure


def _label_points(figure, ax, shown: list[tuple[str, float, float]], front: list[str]) -> None:
    """Label every point with its recipe (recipes on the same point share one label). Each label
    goes to the first candidate offset where it overlaps no marker and no label placed before
    (else where it overlaps least); frontier points are labeled first, far labels get a leader."""
    from matplotlib.transforms import Bbox

    figure.draw_without_rendering()  # lay the figure out once, then freeze it: labels stay inside
    figure.set_layout_engine("none")
    renderer = figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    groups: dict[tuple[float, float], list[str]] = {}
    for recipe, x, y in shown:
        groups.setdefault((x, y), []).append(recipe)
    radius = MARKER_RADIUS_PT * figure.dpi / 72
    taken = [Bbox.from_extents(px - radius, py - radius, px + radius, py + radius)
             for px, py in (ax.transData.transform(xy) for xy in groups)]
    order = sorted(groups, key=lambda xy: (not any(r in front for r in groups[xy]), xy))
    for x, y in order:
        recipes = groups[(x, y)]
        style = {"fontsize": "small", "fontweight": "bold" if any(r in front for r in recipes) else "normal",
                 "textcoords": "offset points", "zorder": 4}
        best = None
        for ring, (dx, dy, ha, va) in _label_candidates():
            text = ax.annotate(", ".join(recipes), (x, y), xytext=(dx, dy), ha=ha, va=va, **style)
            box = text.get_window_extent(renderer)
            text.remove()
            cost = sum(_overlap(box, other) for other in taken) + box.width * box.height - _overlap(box, frame)
            if best is None or cost < best[0]:
                best = (cost, ring, dx, dy, ha, va, box)
            if cost == 0:
                break
        _, ring, dx, dy, ha, va, box = best
        leader = {"arrowprops": {"arrowstyle": "-", "color": OTHER_COLOR, "linewidth": 0.7}} if ring else {}
        ax.annotate(", ".join(recipes), (x, y), xytext=(dx, dy), ha=ha, va=va, **style, **leader)
        taken.append(box)


def _label_candidates():
    """(ring, (dx, dy, ha, va)) in points: beside the point first, then further out."""
    for ring, scale in enumerate((1.0, 2.6, 4.2)):
        for dx, dy, ha, va in ((6, 3, "left", "bottom"), (6, -3, "left", "top"), (-6, 3, "right", "bottom"),
                               (-6, -3, "right", "top"), (0, 7, "center", "bottom"), (0, -7, "center", "top")):
            yield ring, (dx * scale, dy * scale, ha, va)


def _overlap(a, b) -> float:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return width * height if width > 0 and height > 0 else 0.0


def _breakdown(summary: TargetSummary):
    """Stacked bars, one per recipe: weight bytes per layer (ONNX artifacts) or per storage kind."""
    rows = [(c.recipe, c.layer_bytes or c.weight_bytes) for c in summary.configurations
            if c.status == OK and (c.layer_bytes or c.weight_bytes)]
    if not rows:
        return None
    per_layer = any(c.layer_bytes for c in summary.configurations)
    segments = breakdown_segments([parts for _, parts in rows])
    figure = _figure(7.2, 4.2)
    ax = figure.add_subplot()
    colors = _colors(len(segments))
    bottoms = [0.0] * len(rows)
    for color, (label, sizes) in zip(colors, segments):
        heights = [size / 1e3 for size in sizes]
        ax.bar([r for r, _ in rows], heights, bottom=bottoms, label=label, color=color, edgecolor="white",
               linewidth=0.5)
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    for i, total in enumerate(bottoms):
        ax.annotate(f"{total:.1f} KB", (i, total), xytext=(0, 3), textcoords="offset points", ha="center",
                    fontsize="small")
    ax.set_ylim(0, max(bottoms) * 1.12)
    if sum(len(r) for r, _ in rows) > 40:  # long or many recipe names: slant them
        ax.tick_params(axis="x", labelrotation=25)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    ax.set_ylabel("weight bytes (KB)")
    ax.set_title(f"{summary.target}: weight bytes per {'layer' if per_layer else 'storage kind'}")
    handles, labels = ax.get_legend_handles_labels()  # top of the legend = top of the stack
    ax.legend(handles[::-1], labels[::-1], title="layer" if per_layer else "storage", fontsize="small",
              loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(True, axis="y", alpha=0.3)
    return figure


def breakdown_segments(bars: list[dict[str, int]], limit: int = MAX_SEGMENTS) -> list[tuple[str, list[int]]]:
    """Stacked-bar segments: (name, bytes in each bar), in first-seen (model) order. With more than
    `limit` names, the `limit - 1` largest are kept and the rest summed into one segment."""
    names: list[str] = []
    for parts in bars:
        names += [k for k in parts if k not in names]
    kept = names
    if len(names) > limit:
        largest = set(sorted(names, key=lambda k: -max(parts.get(k, 0) for parts in bars))[:limit - 1])
        kept = [k for k in names if k in largest]
    segments = [(k, [parts.get(k, 0) for parts in bars]) for k in kept]
    rest = [sum(v for k, v in parts.items() if k not in kept) for parts in bars]
    if any(rest):
        segments.append((f"{len(names) - len(kept)} smaller", rest))
    return segments


def _colors(count: int) -> list:
    from matplotlib import colormaps

    palette = colormaps["tab20" if count > 10 else "tab10"]
    return [palette(i % palette.N) for i in range(count)]
