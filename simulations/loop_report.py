"""The report and plot of `fedrec loop`: a summary table per policy and the per-step metrics, like compare's."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fedrec.shared.config import FedrecConfig
from fedrec.shared.table import format_table
from fedrec.simulations.plots import LINE_STYLES, _png
from fedrec.simulations.report import library_versions, machine_facts, toml_dump

PANELS = (("ctr", "click-through rate"), ("regret", "cumulative regret (clicks per user)"),
          ("ndcg", "NDCG@N against the truth"), ("coverage", "catalogue coverage per step"),
          ("popular_share", "share of slots on the top-10% items"))
SUMMARY_COLUMNS = [
    ("policy", "policy", ""),
    ("ctr", "mean CTR", ".4f"),
    ("regret", "final regret", ".3f"),
    ("ndcg", "mean NDCG", ".4f"),
    ("coverage", "last coverage", ".3f"),
    ("popular_share", "last popular share", ".3f"),
    ("first_popular_share", "first popular share", ".3f"),
]


def summary_rows(policies: dict[str, list[dict]]) -> list[dict]:
    rows = []
    for name, steps in policies.items():
        rows.append({"policy": name, "ctr": sum(s["ctr"] for s in steps) / len(steps),
                     "regret": steps[-1]["regret"], "ndcg": sum(s["ndcg"] for s in steps) / len(steps),
                     "coverage": steps[-1]["coverage"], "popular_share": steps[-1]["popular_share"],
                     "first_popular_share": steps[0]["popular_share"]})
    return rows


def summary_table(policies: dict[str, list[dict]], markdown: bool = True) -> str:
    return format_table(summary_rows(policies), SUMMARY_COLUMNS, markdown=markdown)


def plot(policies: dict[str, list[dict]], config: FedrecConfig) -> bytes:
    """Five panels, one per metric, every policy a line over the steps."""
    figure = Figure(figsize=(15, 8), layout="constrained")
    axes_grid = figure.subplots(2, 3)
    for (key, title), axes in zip(PANELS, axes_grid.ravel()):
        for index, (name, steps) in enumerate(policies.items()):
            axes.plot([s["step"] for s in steps], [s[key] for s in steps], marker=".",
                      linestyle=LINE_STYLES[index % len(LINE_STYLES)], label=name)
        axes.set(xlabel="step", title=title)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
    handles, labels = axes_grid[0, 0].get_legend_handles_labels()
    legend_axes = axes_grid[1, 2]
    legend_axes.axis("off")
    legend_axes.legend(handles, labels, loc="center")
    figure.suptitle(f"Closed loop on the {config.loop.world} world: top-{config.loop.top_n}, explore = {config.loop.explore}")
    return _png(figure)


def render(outcome: dict, config: FedrecConfig) -> str:
    loop, world = config.loop, outcome["world"]
    train = "  ".join(f"{name} {seconds:.1f} s" for name, seconds in outcome["train_seconds"].items())
    lines = [
        "# fedrec loop", "",
        f"World: {loop.world}, {world['n_users']} users, {world['n_items']} items, {world['start']} starting "
        f"interactions. {loop.steps} steps; each shows every user a top-{loop.top_n} list; users ignore a list "
        f"with probability {loop.no_response:g}, examine rank j with probability 1/(1+j)^{loop.position_bias:g} "
        f"and click an examined item with its true chance. Learning policies train {loop.warmup_rounds} rounds "
        f"before step 1 and {loop.rounds_per_step} after each step; exploration: {loop.explore}. "
        f"Finished {outcome['created']} in {outcome['wall_seconds']:.1f} s.", "",
        "## Summary", "", summary_table(outcome["policies"]), "",
        "`regret`: expected clicks per user the oracle would have earned from the same state minus the policy's, "
        "summed over steps. `NDCG`: of each list against the true click chances (the oracle's list scores 1). "
        "`coverage`: distinct items recommended in the step over the catalogue. `popular share`: share of all "
        "slots going to the 10% of items with the most starting interactions.", "",
        f"Training time: {train}.", "",
        "![metrics by step](loop.png)", "",
        "## Command", "", "```sh", outcome["command"], "```", "",
        "## Configuration", "", "```toml", toml_dump(config.model_dump(mode="json")).rstrip(), "```", "",
        "## Environment", "",
        format_table([{"name": k, "value": v} for k, v in {**library_versions(), **machine_facts()}.items()],
                     [("name", "item", ""), ("value", "value", "")], markdown=True),
        "",
    ]
    return "\n".join(lines)
