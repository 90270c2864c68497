"""The PNG plots of `fedrec compare`, drawn headless (Agg) from validated results and returned as bytes."""

from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fedrec.simulations.results_schema import CompareResults, SettingRow

LINE_STYLES = ("-", "--", "-.", ":")  # plain and secure runs can coincide: keep both visible


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)  # attaches the Agg canvas: no display, no pyplot global state
    stream = io.BytesIO()
    figure.savefig(stream, format="png", dpi=120)
    return stream.getvalue()


def _federated(results: CompareResults) -> list[SettingRow]:
    return [row for row in results.rows if row.name != "centralized" and row.status == "ok"]


def rmse_by_round(results: CompareResults) -> bytes:
    """Test RMSE (implicit feedback: NDCG@10) against round for each federated setting; the centralised
    value as a horizontal line."""
    implicit = results.config.get("data", {}).get("feedback") == "implicit"
    key, label = ("ndcg_at_10", "test NDCG@10") if implicit else ("rmse", "test RMSE")
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.add_subplot()
    for style, row in zip(LINE_STYLES, _federated(results)):
        points = [(entry.round, getattr(entry, key), entry.rmse_std if not implicit else None)
                  for entry in row.history if getattr(entry, key) is not None]
        if not points:
            continue
        rounds, rmse, std = zip(*points)
        (line,) = axes.plot(rounds, rmse, marker="." if len(points) < 30 else None, label=row.name, linestyle=style)
        if results.repeats > 1 and all(s is not None for s in std):
            low = [m - s for m, s in zip(rmse, std)]
            high = [m + s for m, s in zip(rmse, std)]
            axes.fill_between(rounds, low, high, color=line.get_color(), alpha=0.2)
    for row in results.rows:
        if row.name == "centralized" and row.status == "ok":
            axes.axhline(getattr(row, key), color="black", linestyle="--", label=f"centralized (after {row.rounds} epochs)")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("round")
    axes.set_ylabel(label)
    axes.set_title(f"{label[0].upper()}{label[1:]} by round ({results.data.source})")
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend()
    return _png(figure)


def cost_per_round(results: CompareResults) -> bytes:
    """Two panels: seconds per round, and payload bytes per round (up solid, down dashed)."""
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    seconds_axes, bytes_axes = figure.subplots(1, 2)
    for row in _federated(results):
        rounds = [entry.round for entry in row.history]
        (line,) = seconds_axes.plot(rounds, [entry.seconds for entry in row.history], label=row.name)
        color = line.get_color()
        bytes_axes.plot(rounds, [entry.bytes_up for entry in row.history], color=color, label=f"{row.name} up")
        bytes_axes.plot(rounds, [entry.bytes_down for entry in row.history], color=color, linestyle="--",
                        label=f"{row.name} down")
    seconds_axes.set(xlabel="round", ylabel="seconds", title="Wall time per round")
    bytes_axes.set(xlabel="round", ylabel="bytes (payload)", title="Bytes per round")
    if any(entry.bytes_up > 0 or entry.bytes_down > 0 for row in _federated(results) for entry in row.history):
        bytes_axes.set_yscale("log")  # secure and per-user costs differ from plain by orders of magnitude
    for axes in (seconds_axes, bytes_axes):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize="small")
    return _png(figure)
