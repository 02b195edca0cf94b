"""A sweep's tables: results.csv, results.json and report.html (the plot embedded)."""

from __future__ import annotations

import base64
import csv
import html
import io
import json

# One row per trial, the same columns in the CSV, the HTML table and the CLI's table.
COLUMNS = ["trial_id", "status", "recipe", "target", "backend", "metric", "metric_value",
           "recipe_deviation", "latency_median_ms", "latency_p90_ms", "latency_source", "size_bytes",
           "measured_graph", "artifact_bytes", "peak_rss_mb", "threads", "on_front", "attempt", "wall_s",
           "export_s", "eval_s", "bench_s", "note"]


def row(r: dict, on_front: set) -> dict:
    metric = r.get("metric") or {}
    note = r.get("reason") or r.get("error") or metric.get("reason") or ""
    return {**{c: r.get(c) for c in COLUMNS}, "metric": metric.get("name"),
            "metric_value": metric.get("value"), "on_front": r.get("trial_id") in on_front,
            "note": note}


def csv_text(results: list[dict], on_front: set) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in results:
        w.writerow({k: "" if v is None else v for k, v in row(r, on_front).items()})
    return buf.getvalue()


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape("" if v is None else str(v))


def html_text(summary: dict, png: bytes) -> str:
    """The report: what was swept, the plot, the table, each trial's recipe configs and
    the machine. One self-contained file (the plot is a data: URI)."""
    on_front = set(summary["pareto_front"])
    trials = summary["trials"]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "\n".join(
        f"<tr class='{html.escape(r['status'])}{' front' if r['trial_id'] in on_front else ''}'>"
        + "".join(f"<td>{_cell(v)}</td>" for v in row(r, on_front).values()) + "</tr>"
        for r in trials)
    recipes = "\n".join(
        f"<li><b>{html.escape(r['trial_id'])}</b>: <code>"
        f"{html.escape(json.dumps(r.get('recipe_configs', [])))}</code></li>"
        for r in trials if r.get("status") == "ok")
    s = summary["sweep"]
    t = summary["timing"]
    img = base64.b64encode(png).decode()
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>avedge sweep: {html.escape(s['model'])}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 6px; text-align: left; }}
tr.skipped {{ color: #777; }} tr.failed {{ color: #b00; }} tr.front {{ font-weight: bold; }}
pre {{ background: #f6f6f6; padding: 1em; }}
</style></head><body>
<h1>avedge sweep: {html.escape(s['model'])}</h1>
<p>recipes {html.escape(', '.join(s['recipes']))}; targets {html.escape(', '.join(s['targets']))};
backends {html.escape(', '.join(s['backends']) if s['backends'] else "each target's")};
metric on {s['eval_n']} eval item(s); latency over {s['runs']} calls after {s['warmup']}
warm-up. {len(trials)} trials; sweep wall {t['wall_s']:.1f} s, of which outside trials
(the sweep's own overhead) {t['overhead_s']:.1f} s.</p>
<h2>Accuracy vs latency</h2>
<p>Marker area ~ size of the model file the backend runs; the red line is the Pareto
front (bold rows below). Where a trial names a measured_graph (one of an artifact's
alternative graphs, e.g. a lip reader's rate-1 graph), its latency and size are that
graph's, the one its metric is of; artifact_bytes counts every graph.</p>
<img alt="accuracy vs latency" src="data:image/png;base64,{img}">
<h2>Trials</h2>
<table><tr>{head}</tr>
{body}
</table>
<h2>Recipe of each point</h2>
<ul>
{recipes}
</ul>
<h2>Machine</h2>
<pre>{html.escape(json.dumps(summary['machine'], indent=2))}</pre>
</body></html>
"""
