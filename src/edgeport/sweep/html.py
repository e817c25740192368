"""report.html: one self-contained page (inline CSS, no script, no network) with a table and the
plots per target, and the refused and failed configurations with their messages. Plots are PNG
files in `plots/`, referenced by relative path."""

from __future__ import annotations

from html import escape

from edgeport.sweep.records import FAILED, OK, REFUSED
from edgeport.sweep.report import (
    JSON_NAME,
    METRIC_LABELS,
    TargetSummary,
    table_header,
    table_rows,
)

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f; margin: 2rem auto;
       max-width: 1180px; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
code { font: 13px ui-monospace, "SFMono-Regular", Menlo, monospace; }
table { border-collapse: collapse; margin: .6rem 0 1rem; }
th, td { padding: .3rem .7rem; border-bottom: 1px solid #e5e5e5; text-align: right; white-space: nowrap; }
th { background: #f5f5f7; font-weight: 600; }
td:first-child, th:first-child, td.text, th.text { text-align: left; }
td.message { white-space: normal; overflow-wrap: anywhere; text-align: left; max-width: 760px; }
tr.front td:first-child { font-weight: 700; }
tr.front { background: #eef5fc; }
.status-refused { color: #8a6d00; } .status-failed { color: #b42318; font-weight: 600; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; border: 1px solid #e5e5e5; padding: .5rem; background: #fff; flex: 1 1 520px; max-width: 580px; }
figure img { display: block; width: 100%; height: auto; }
figcaption { font-size: .85rem; color: #555; }
.note { color: #555; font-size: .9rem; }
"""


def _cells(row: list[str], header: bool = False) -> str:
    tag = "th" if header else "td"
    return "".join(f"<{tag}>{escape(cell)}</{tag}>" for cell in row)


def _summary(report) -> str:
    counts = {s: sum(c.status == s for c in report.configurations) for s in (OK, REFUSED, FAILED)}
    return (f"<p class=\"summary\"><code>{escape(report.source)}</code>: {len(report.recipes)} recipes × "
            f"{len(report.targets)} targets = {len(report.configurations)} configurations — "
            f"{counts[OK]} exported and checked, {counts[REFUSED]} refused, {counts[FAILED]} failed; "
            f"{report.seconds} s with {report.workers} worker(s) ({escape(report.executor)} executor). "
            f"Data: <a href=\"{JSON_NAME}\">{JSON_NAME}</a>.</p>")


def _recipes(report) -> str:
    sources = getattr(report, "sources", {})
    rows = "".join(f"<tr><td><code>{escape(name)}</code></td><td class=\"text\">{escape(recipe.describe())}"
                   + (f" of <code>{escape(sources[name])}</code>" if name in sources else "") + "</td></tr>"
                   for name, recipe in report.recipes.items())
    return ("<h2>Recipes</h2><table class=\"recipes\"><tr><th>name</th><th class=\"text\">recipe</th></tr>"
            f"{rows}</table>")


def _target_table(summary: TargetSummary) -> str:
    head = _cells(table_header(summary), header=True)
    rows = []
    for config, row in zip(summary.configurations, table_rows(summary)):
        front = config.recipe in summary.fronts["size"] or config.recipe in summary.fronts["latency"]
        recipe = (f"<a href=\"{escape(config.report)}\">{escape(config.recipe)}</a>" if config.report
                  else escape(config.recipe))
        status = escape(config.status)
        if config.status != OK:
            status = f"<a href=\"#problems\" title=\"{escape(config.error)}\">{status}</a>"
        rows.append(f"<tr class=\"{'front' if front else 'other'}\"><td>{recipe}</td>{_cells(row[1:-1])}"
                    f"<td class=\"status-{escape(config.status)}\">{status}</td></tr>")
    return (f"<table class=\"configurations\" data-target=\"{escape(summary.target)}\">"
            f"<tr>{head}</tr>{''.join(rows)}</table>")


def _alt(summary: TargetSummary, kind: str) -> str:
    metric = METRIC_LABELS[summary.metric]
    if kind == "size-breakdown":
        return f"{summary.target}: stacked bars of weight bytes per recipe, split by layer or storage kind"
    axis = kind.rsplit("-", 1)[-1]
    front = ", ".join(summary.fronts[axis]) or "none"
    return f"{summary.target}: {metric} (%) against {axis} per recipe; on the Pareto frontier: {front}"


def _caption(summary: TargetSummary, kind: str) -> str:
    if kind == "size-breakdown":
        return ("Weight bytes of each artifact: per layer for ONNX artifacts (initializers grouped by layer, "
                "scales and zero points with their layer), else per storage kind (structure check).")
    axis = kind.rsplit("-", 1)[-1]
    cost = summary.cost
    missing = [c.recipe for c in summary.configurations
               if c.status != OK or cost(c, axis) is None or summary.quality[c.recipe] is None]
    cheaper = "smaller" if axis == "size" else "faster"
    text = (f"Filled points are on the Pareto frontier (no other recipe is both {cheaper} and at least as good); "
            "the line is the best quality reachable within a budget.")
    if axis == "latency" and summary.latency_estimate:
        text += " Latency is an estimate: instructions counted on the emulated core × the core's cycle table."
    if summary.float_quality is not None:
        text += " Dashed: the float model."
    if missing:
        text += f" Not plotted (not measured): {', '.join(missing)}."
    return text


def _plots(report, summary: TargetSummary) -> str:
    figures = []
    for kind, path in report.plots.get(summary.target, {}).items():
        figures.append(f"<figure><img id=\"plot-{escape(summary.target)}-{kind}\" class=\"plot\" "
                       f"data-target=\"{escape(summary.target)}\" data-kind=\"{kind}\" src=\"{escape(path)}\" "
                       f"alt=\"{escape(_alt(summary, kind))}\"><figcaption>{escape(_caption(summary, kind))}"
                       "</figcaption></figure>")
    if not figures:
        return "<p class=\"note\">No configuration of this target was measured: nothing to plot.</p>"
    return f"<div class=\"plots\">{''.join(figures)}</div>"


def _target_section(report, summary: TargetSummary) -> str:
    metric = ("accuracy on the labeled eval data" if summary.metric == "accuracy"
              else "top-1 agreement with the float model (the eval data has no labels)")
    estimate = (" Latency on this target is an <strong>estimate</strong> (instruction count on the emulated "
                "core × cycle table at the board clock), not a timing." if summary.latency_estimate else "")
    return (f"<section class=\"target\" id=\"target-{escape(summary.target)}\"><h2>{escape(summary.target)}</h2>"
            f"<p class=\"note\">Quality: {metric}. Frontier: yes when no other recipe is both cheaper and at least "
            f"as good on this target; otherwise the recipes that beat it.{estimate}</p>"
            f"{_target_table(summary)}{_plots(report, summary)}</section>")


def _problems(report) -> str:
    problems = report.problems()
    if not problems:
        return "<section id=\"problems\"><h2>Refused and failed configurations</h2><p>None.</p></section>"
    rows = "".join(f"<tr><td class=\"status-{escape(c.status)}\">{escape(c.status)}</td>"
                   f"<td class=\"text\"><code>{escape(c.recipe)}</code></td><td class=\"text\">{escape(c.target)}</td>"
                   f"<td class=\"message\">{escape(c.error)}</td></tr>"
                   for c in problems)
    return ("<section id=\"problems\"><h2>Refused and failed configurations</h2>"
            "<p class=\"note\">Refused: the target's exporter cannot honor the recipe (checked before any work). "
            f"Failed: the export or its checks raised; tracebacks are in {JSON_NAME}.</p>"
            "<table class=\"problems\"><tr><th>status</th><th class=\"text\">recipe</th><th class=\"text\">target</th>"
            f"<th class=\"text\">message</th></tr>{rows}</table></section>")


def render_html(report) -> str:
    """The page for a SweepReport (its `plots` already written)."""
    env = report.environment
    packages = ", ".join(f"{k} {v}" for k, v in env.get("packages", {}).items())
    sections = "".join(_target_section(report, s) for s in report.summaries().values())
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>edgeport sweep: {escape(report.source)}</title><style>{CSS}</style></head><body>"
            f"<h1>edgeport sweep</h1>{_summary(report)}{_recipes(report)}{sections}{_problems(report)}"
            f"<footer class=\"note\"><p>{escape(report.latency_note())}.</p>"
            f"<p>Python {escape(env.get('python', '?'))} on {escape(env.get('machine', '?'))}; {escape(packages)}.</p>"
            "</footer></body></html>\n")
