"""The Pareto front of a sweep and its plot: accuracy vs latency, marker area ~ size.

Accuracy is the trials' metric ("higher_is_better" in the metric dict, default True).
Where no trial has a metric value (a family without one, no --metric), the y axis is the
artifact size instead (smaller is better), and the plot says so.
"""

from __future__ import annotations

import io

LABEL = "{recipe}/{target}/{backend}"


def axes(results: list[dict]) -> dict:
    """What the plot compares: {"y": key function, "name", "higher_is_better", "points"}."""
    ok = [r for r in results if r.get("status") == "ok"
          and isinstance(r.get("latency_median_ms"), (int, float))]
    scored = [r for r in ok if (r.get("metric") or {}).get("value") is not None]
    if scored:
        m = scored[0]["metric"]
        return {"points": scored, "name": m.get("name") or "metric",
                "higher_is_better": bool(m.get("higher_is_better", True)),
                "y": lambda r: r["metric"]["value"]}
    return {"points": ok, "name": "size (KiB; no metric)", "higher_is_better": False,
            "y": lambda r: r["size_bytes"] / 1024}


def front(points: list[dict], y, higher_is_better: bool) -> list[dict]:
    """The points no other point beats on both latency (lower) and y, fastest first."""
    sign = 1 if higher_is_better else -1
    best, out = None, []
    for r in sorted(points, key=lambda r: (r["latency_median_ms"], -sign * y(r))):
        if best is None or sign * y(r) > best:
            out.append(r)
            best = sign * y(r)
    return out


MAX_LABELLED = 8
LOG_SPAN = 5.0  # latencies spanning more than this ratio get a log axis


def plot_png(results: list[dict], title: str) -> tuple[bytes, list[str]]:
    """-> (PNG bytes, trial ids on the front). Matplotlib's Agg canvas, no display."""
    from matplotlib.figure import Figure

    ax_info = axes(results)
    pts, y = ax_info["points"], ax_info["y"]
    on_front = front(pts, y, ax_info["higher_is_better"])
    fig = Figure(figsize=(8, 5.5), dpi=110)
    ax = fig.add_subplot()
    if pts:
        biggest = max(r["size_bytes"] for r in pts) or 1
        ax.scatter([r["latency_median_ms"] for r in pts], [y(r) for r in pts],
                   s=[30 + 570 * r["size_bytes"] / biggest for r in pts], alpha=0.45,
                   edgecolors="k", linewidths=0.5, label="trial (area ~ size of the model file)")
        ax.plot([r["latency_median_ms"] for r in on_front], [y(r) for r in on_front], "r-",
                drawstyle="steps-post",
                marker="o", markersize=3, label="Pareto front")
        front_ids = {r["trial_id"] for r in on_front}
        # Past a handful of points the labels of a cluster print over each other: then only
        # the front is labelled (every point is in the report's table).
        labelled = pts if len(pts) <= MAX_LABELLED else on_front
        labelled = sorted(labelled, key=lambda r: r["latency_median_ms"])
        for i, r in enumerate(labelled):  # the front's points in black, the others in grey
            # Neighbours' labels stagger downwards so close points stay readable.
            ax.annotate(LABEL.format(**r), (r["latency_median_ms"], y(r)), fontsize=7,
                        xytext=(4, 4 - 10 * (i % 3)), textcoords="offset points",
                        color="black" if r["trial_id"] in front_ids else "0.55")
        lat = [r["latency_median_ms"] for r in pts if r["latency_median_ms"] > 0]
        if lat and max(lat) > LOG_SPAN * min(lat):  # one slow outlier squeezes the rest
            ax.set_xscale("log")
        ax.legend(loc="best", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no trial finished with a latency", ha="center",
                transform=ax.transAxes)
    better = "higher" if ax_info["higher_is_better"] else "lower"
    ax.set_xlabel("latency per call, median (ms; lower is better)")
    ax.set_ylabel(f"{ax_info['name']} ({better} is better)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue(), [r["trial_id"] for r in on_front]
