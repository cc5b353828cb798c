"""``risk_report.html``: one self-contained file a churn prevention manager can open from an email.

Headline figures, the ranked table (searchable and sortable with a few lines of inline JavaScript),
risk groups with their plays, the global drivers (a SHAP summary beeswarm and contributions per
signal), a waterfall for each top customer, the score distribution, the trend and the drift since
training (a warning banner at the top when a feature or the score moved past the thresholds). Plots are PNGs
embedded as base64; nothing is loaded from the network. The beeswarm and the waterfalls are shap's own
(``shap.plots`` on the ``shap.Explanation``s of :mod:`churnml.risk.explain`); the other plots are drawn
with matplotlib's object API (no pyplot state, no display).
"""

from __future__ import annotations

import base64
import html
import io as bytes_io
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from churnml import io
from churnml.config import Config
from churnml.risk import drift
from churnml.risk.explain import Explainer, explanation, signal_explanation
from churnml.risk.risk_list import Playbook, group_membership
from churnml.risk.segments import SEGMENTS
from churnml.training.model import ChurnModel
from churnml.uplift.targeting import net_value_curve

TEMPLATE = "risk_report.html.j2"
BAND_COLOURS = ("#4c9a5b", "#e0a030", "#c8423b", "#7a1f1a", "#3f0d0a")
GROUP_COLOURS = ("#3b6ea5", "#c8423b", "#e0a030", "#4c9a5b", "#8e5ea2", "#5aa5a0", "#d17a2e", "#7f7f7f")


@dataclass(frozen=True)
class Explained:
    """SHAP contributions of the explained and sampled customers, with the feature values behind them."""

    customers: pd.DataFrame  # customer_id, rank, explained (drivers given), sampled (global sample)
    contributions: np.ndarray  # rows x (features + bias), log-odds
    features: pd.DataFrame  # the model's input columns for the same rows

    def global_rows(self) -> np.ndarray:
        """Rows of the random sample of all scored customers (every row if there is no sample): global
        drivers must not be judged on the at-risk customers alone."""
        sampled = self.customers["sampled"].to_numpy(bool)
        return np.flatnonzero(sampled) if sampled.any() else np.arange(len(self.customers))


def _figure(width: float = 7.0, height: float = 4.0):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained", dpi=96)
    return fig, fig.add_subplot()


def png(fig, tight: bool = False) -> str:
    """A figure as a data URI (base64 PNG). Every text is drawn literally: a ``$`` in a customer id or a
    play's label would start mathtext, and one such as ``x$^$`` failed the whole report. ``tight`` crops
    to the drawn content (shap's plots place labels outside their axes)."""
    from matplotlib.text import Text

    for text in fig.findobj(Text):
        text.set_parse_math(False)
    buffer = bytes_io.BytesIO()
    fig.savefig(buffer, format="png", **({"bbox_inches": "tight", "pad_inches": 0.1} if tight else {}))
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


@contextmanager
def shap_drawing(seed: int = 0) -> Iterator[None]:
    """Around a ``shap.plots`` call: numpy's global random state seeded and restored (the beeswarm
    shuffles its dots with it: same report for the same data, and no effect on the caller's draws), and
    pyplot's interactive mode restored (the waterfall switches it off for good)."""
    import matplotlib.pyplot as plt

    state = np.random.get_state()
    np.random.seed(seed)
    try:
        with plt.ioff():
            yield
    finally:
        np.random.set_state(state)


def _plain_tick_labels(axis, replace: Callable[[str], str]) -> None:
    """Re-set an axis's tick labels through ``replace`` (labels are regenerated from their formatter at
    draw time, so editing a label's Text would not last)."""
    axis.set_ticks(axis.get_ticklocs(), [replace(t.get_text()) for t in axis.get_ticklabels()])


CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def plot_text(text: str) -> str:
    """Text from the data (a customer id) without the control characters no font has a glyph for."""
    return CONTROL_CHARACTERS.sub(" ", text)


def _signal_label(signal: str) -> str:
    return signal.replace("_", " ")


# ---------------------------------------------------------------------------------------------------
# Plots.


def distribution_plot(risk_list: pd.DataFrame, bands: dict[str, float]) -> str:
    """Histogram of churn probability, bars coloured by band, thresholds marked."""
    fig, ax = _figure()
    p = risk_list["churn_probability"].to_numpy(float)
    edges = np.linspace(0, max(0.05, float(p.max()) if len(p) else 1.0), 41)
    counts, edges = np.histogram(p, bins=edges)
    lows = list(bands.values())
    names = list(bands)
    band = np.clip(np.searchsorted(lows, edges[:-1], side="right") - 1, 0, len(lows) - 1)
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=[BAND_COLOURS[b % 5] for b in band])
    for low, name in zip(lows[1:], names[1:], strict=True):
        ax.axvline(low, color="black", ls=":", lw=1)
        ax.text(low, ax.get_ylim()[1] * 0.95, f" {name} ≥ {low:g}", va="top", fontsize=8)
    ax.set(xlabel="churn probability (calibrated)", ylabel="customers", title="Score distribution")
    ax.set_yscale("symlog", linthresh=10)
    return png(fig)


def _group_colour(group: str, playbook: Playbook) -> str:
    names = list(playbook.groups)
    return GROUP_COLOURS[names.index(group) % len(GROUP_COLOURS)] if group in names else "#7f7f7f"


def group_plot(groups: pd.DataFrame, playbook: Playbook) -> str:
    """Revenue at risk and customers per risk group."""
    shown = groups.loc[groups["customers"] > 0].iloc[::-1]
    fig, ax = _figure(7.0, 0.45 * max(len(shown), 2) + 1.2)
    colours = [_group_colour(g, playbook) for g in shown["risk_group"]]
    ax.barh(shown["label"], shown["revenue_at_risk"], color=colours)
    for y, (revenue, n) in enumerate(zip(shown["revenue_at_risk"], shown["customers"], strict=True)):
        ax.text(revenue, y, f"  {n:,} customers", va="center", fontsize=8)
    ax.set(xlabel="expected revenue at risk", title="Risk groups")
    ax.margins(x=0.25)
    return png(fig)


def beeswarm_plot(explained: Explained, model: ChurnModel, max_display: int = 15) -> str:
    """SHAP summary (``shap.plots.beeswarm``) over the sampled customers: one row per feature, most
    important on top, each dot a customer, colour the feature value (low blue, high red)."""
    import shap

    sample = explained.global_rows()
    values = explanation(model, explained.features.iloc[sample], explained.contributions[sample])
    fig, ax = _figure(8.0, 0.32 * min(max_display, len(model.feature_names)) + 1.5)
    with shap_drawing():
        shap.plots.beeswarm(values, max_display=max_display, ax=ax, plot_size=None, show=False)
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlabel("SHAP value (log-odds of churn; > 0 raises risk)", fontsize=9)
    ax.set_title("Global drivers: SHAP summary")
    return png(fig)


def signal_importance(explained: Explained, explainer: Explainer, playbook: Playbook) -> pd.DataFrame:
    """Mean |SHAP| per signal (windows summed first) over the sampled customers, with its risk group."""
    per_signal = explainer.signals.sum(explained.contributions[explained.global_rows()])
    groups, membership = group_membership(explainer.signals, playbook)
    group = [groups[int(np.argmax(row))] for row in membership]
    table = pd.DataFrame(
        {
            "signal": explainer.signals.names,
            "family": explainer.signals.families,
            "risk_group": group,
            "mean_abs_shap": np.abs(per_signal).mean(axis=0) if len(per_signal) else 0.0,
            "mean_shap": per_signal.mean(axis=0) if len(per_signal) else 0.0,
        }
    )
    return table.sort_values("mean_abs_shap", ascending=False, kind="stable").reset_index(drop=True)


def signal_plot(importance: pd.DataFrame, playbook: Playbook, max_display: int = 15) -> str:
    top = importance.head(max_display).iloc[::-1]
    fig, ax = _figure(7.0, 0.32 * len(top) + 1.3)
    colours = [_group_colour(g, playbook) for g in top["risk_group"]]
    ax.barh([_signal_label(s) for s in top["signal"]], top["mean_abs_shap"], color=colours)
    for y, g in enumerate(top["risk_group"]):
        ax.text(top["mean_abs_shap"].iloc[y], y, f"  {playbook.groups[g].label}", va="center", fontsize=7)
    ax.margins(x=0.3)
    ax.tick_params(axis="y", labelsize=8)
    ax.set(xlabel="mean |SHAP| (log-odds), windows of a signal summed", title="Global drivers by signal")
    return png(fig)


def waterfall_plot(contribs: np.ndarray, explainer: Explainer, title: str, max_display: int = 9) -> str:
    """One customer (``shap.plots.waterfall``): from the average margin (bias) through the largest signal
    contributions to the customer's margin; the remaining signals are one bar."""
    import matplotlib.pyplot as plt
    import shap

    one = signal_explanation(explainer.signals, contribs, [_signal_label(n) for n in explainer.signals.names])
    bias, total = float(one.base_values), float(one.base_values + one.values.sum())
    with shap_drawing():
        fig = plt.figure(dpi=72)
        try:
            shap.plots.waterfall(one, max_display=max_display, show=False)
            ax, *marks = fig.axes
            # shap writes its E[f(X)] and f(x) marks in mathtext, which png() turns off for every text.
            for mark in marks:
                _plain_tick_labels(mark.xaxis, lambda text: text.replace("$", ""))
            _plain_tick_labels(ax.yaxis, lambda text: text.replace(" other features", " other signals"))
            ax.set_xlabel(
                f"log-odds of churn (uncalibrated): average customer {bias:+.2f} → this customer {total:+.2f}",
                labelpad=22,  # below shap's E[f(X)] mark
            )
            ax.set_title(title, pad=36)
            return png(fig, tight=True)
        finally:
            plt.close(fig)


def trend_plot(risk_list: pd.DataFrame, history: pd.DataFrame | None) -> str | None:
    """Change in probability since the previous run, and at-risk counts over runs."""
    change = risk_list["probability_change"].dropna().to_numpy(float)
    runs = history if history is not None and len(history) > 1 else None
    if len(change) == 0 and runs is None:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 3.6), layout="constrained", dpi=96)
    left, right = fig.subplots(1, 2)
    if len(change):
        left.hist(change, bins=40, color="#8e5ea2")
        left.axvline(0, color="black", lw=0.8)
        left.set_yscale("symlog", linthresh=10)
    left.set(
        xlabel="change in churn probability since the previous run",
        ylabel="customers",
        title="Probability change",
    )
    if runs is not None:
        dates = pd.to_datetime(runs["as_of"]).dt.strftime("%Y-%m-%d")
        right.plot(dates, runs["customers_at_risk"], marker="o", color="#c8423b")
        right.set(ylabel="customers at risk", title="At-risk customers per run")
        right.tick_params(axis="x", rotation=30, labelsize=7)
    else:
        right.text(0.5, 0.5, "one earlier run so far", ha="center", va="center")
        right.set_axis_off()
    return png(fig)


def net_value_plot(risk_list: pd.DataFrame, summary: dict[str, Any]) -> str:
    """The profit curve from measured uplift: customers contacted in the list's order against the
    cumulative expected net value (each one's best play: uplift x value - cost), beside the same
    customers in order of revenue at risk; the most profitable depth and the planned contacts marked."""
    with_uplift = risk_list.loc[risk_list["net_value"].notna()]
    fig, ax = _figure()
    orders = {f"this list's ranking ({summary['rank_by']})": with_uplift}
    if summary["rank_by"] != "revenue":
        orders["by revenue at risk"] = with_uplift.sort_values(
            ["revenue_at_risk", "customer_id"], ascending=[False, True], kind="stable"
        )
    for (label, ordered), colour in zip(orders.items(), ("#3b6ea5", "#c8423b"), strict=False):
        curve = net_value_curve(ordered["net_value"].to_numpy())
        ax.plot(curve["contacted"], curve["net_value"], label=label, color=colour)
    best, planned = summary["best_depth"], summary["customers_to_contact"]
    ax.axvline(best, color="black", ls=":", lw=1)
    ax.text(best, ax.get_ylim()[1], f" most profitable: {best:,} contacted", va="top", fontsize=8)
    ax.axhline(0, color="grey", lw=0.6)
    ax.set(
        xlabel=f"customers contacted ({int(planned):,} planned: the at-risk less holdouts)",
        ylabel="cumulative expected net value",
        title="Profit curve from measured uplift",
    )
    ax.legend(loc="lower left", fontsize=8)
    return png(fig)


# ---------------------------------------------------------------------------------------------------
# The document.


def _money(value: float) -> str:
    return f"{value:,.0f}"


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def table_rows(risk_list: pd.DataFrame, top_k: int, limit: int) -> list[dict[str, Any]]:
    """Rows of the HTML table: display text plus sort keys."""
    rows = []
    for record in risk_list.head(limit).to_dict(orient="records"):
        change = record["probability_change"]
        has_change = change is not None and not (isinstance(change, float) and math.isnan(change))
        rows.append(
            {
                "rank": record["rank"],
                "customer_id": record["customer_id"],
                "probability": record["churn_probability"],
                "probability_text": f"{record['churn_probability']:.1%}",
                "band": record["risk_band"],
                "revenue": record["revenue_at_risk"],
                "revenue_text": _money(record["revenue_at_risk"]),
                "segment": SEGMENTS.get(record["segment"], record["segment"]),
                "stage": _cell(record["lifecycle_stage"]),
                "group": _cell(record["risk_group"]),
                "drivers": [d for d in (record.get(f"driver_{k + 1}") for k in range(top_k)) if d],
                "play": _cell(record["play"]),
                "change": change if has_change else "",
                "change_text": f"{change:+.1%}" if has_change else "",
                "new": bool(record["newly_at_risk"]),
                **_uplift_cells(record),
            }
        )
    return rows


def _uplift_cells(record: Mapping[Any, Any]) -> dict[str, Any]:
    """The table's uplift cells (none without an uplift model): best play, uplift, net value, and
    whether a contact is expected to hurt."""
    if "best_play" not in record:
        return {}
    lift, net = record["uplift"], record["net_value"]
    return {
        "best_play": _cell(record["best_play"]),
        "uplift": "" if _missing(lift) else lift,
        "uplift_text": "" if _missing(lift) else f"{lift * 100:+.1f} pp",
        "net_value": "" if _missing(net) else net,
        "net_value_text": "" if _missing(net) else _money(net),
        "sleeping_dog": bool(record["sleeping_dog"]),
    }


def waterfalls(
    risk_list: pd.DataFrame, explained: Explained, explainer: Explainer, count: int
) -> list[dict[str, Any]]:
    """Waterfall plots of the top explained customers of the ranking."""
    chosen = explained.customers.loc[explained.customers["explained"]].sort_values("rank").head(count)
    by_id = risk_list.set_index("customer_id")
    out = []
    for position, row in chosen.iterrows():
        listed = by_id.loc[row["customer_id"]]
        title = (
            f"#{int(row['rank'])} {plot_text(str(row['customer_id']))}: "
            f"{listed['churn_probability']:.1%} churn probability, "
            f"{_money(listed['revenue_at_risk'])} at risk"
        )
        out.append(
            {
                "customer_id": row["customer_id"],
                "rank": int(row["rank"]),
                "group": _cell(listed["risk_group"]),
                "play": _cell(listed["play"]),
                "drivers": [
                    listed[c] for c in listed.index if c.startswith("driver_") and isinstance(listed[c], str)
                ],
                "image": waterfall_plot(explained.contributions[cast(int, position)], explainer, title),
            }
        )
    return out


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def environment() -> Environment:
    """The pages' Jinja environment (templates in ``churnml/risk/templates``, shared style in
    ``_style.css.j2``) with the number filters they share: a missing figure shows as a dash."""
    env = Environment(
        loader=PackageLoader("churnml.risk", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = lambda v: "–" if _missing(v) else _money(v)
    env.filters["pct"] = lambda v: "–" if _missing(v) else f"{v:.1%}"
    env.filters["pp"] = lambda v: "–" if _missing(v) else f"{v * 100:+.1f} pp"
    env.filters["num"] = lambda v, digits=2: "–" if _missing(v) else f"{v:,.{digits}f}"
    return env


def render(context: dict[str, Any]) -> str:
    return environment().get_template(TEMPLATE).render(**context)


def build_context(
    risk_list: pd.DataFrame,
    groups: pd.DataFrame,
    summary: dict[str, Any],
    explained: Explained,
    model: ChurnModel,
    playbook: Playbook,
    config: Config,
    history: pd.DataFrame | None = None,
) -> dict[str, Any]:
    settings = config.risk
    explainer = Explainer.of(model, {}, ())
    importance = signal_importance(explained, explainer, playbook)
    limit = settings.report.table_rows
    at_risk = risk_list.loc[risk_list["at_risk"]]
    shown = at_risk if len(at_risk) else risk_list
    uplift = "best_play" in risk_list.columns
    return {
        "uplift": uplift,
        "net_value_plot": net_value_plot(risk_list, summary) if uplift else None,
        "title": settings.report.title,
        "summary": summary,
        "generated_for": config.name,
        "bands": settings.bands,
        "band_names": list(settings.bands),
        "rows": table_rows(shown, settings.top_k, limit),
        "rows_total": len(shown),
        "rows_limit": limit,
        "groups": groups.loc[groups["customers"] > 0].to_dict(orient="records"),
        "all_groups": groups.to_dict(orient="records"),
        "group_plot": group_plot(groups, playbook) if (groups["customers"] > 0).any() else None,
        "distribution_plot": distribution_plot(risk_list, settings.bands),
        "beeswarm_plot": beeswarm_plot(explained, model),
        "signal_plot": signal_plot(importance, playbook),
        "importance": importance.head(10).to_dict(orient="records"),
        "playbook": playbook,
        "waterfalls": waterfalls(risk_list, explained, explainer, settings.report.waterfalls),
        "trend_plot": trend_plot(risk_list, history),
        "band_counts": risk_list["risk_band"]
        .value_counts()
        .reindex(list(settings.bands), fill_value=0)
        .to_dict(),
        "segment_counts": {
            SEGMENTS[str(k)]: int(v)
            for k, v in risk_list["segment"].value_counts().reindex(list(SEGMENTS), fill_value=0).items()
        },
        "drift_warning": drift.warning_text(summary["drift"]) if "drift" in summary else None,
        "escape": html.escape,
    }


def write_report(
    path: Path,
    risk_list: pd.DataFrame,
    groups: pd.DataFrame,
    summary: dict[str, Any],
    explained: Explained,
    model: ChurnModel,
    playbook: Playbook,
    config: Config,
    history: pd.DataFrame | None = None,
) -> Path:
    """Render the report to ``path`` (atomically)."""
    context = build_context(risk_list, groups, summary, explained, model, playbook, config, history)
    return io.write_text(path, render(context))


def top_table(risk_list: pd.DataFrame, n: int = 10, playbook: Playbook | None = None) -> list[Sequence[str]]:
    """The first ``n`` rows as short display strings (for the terminal); groups by their playbook label."""
    labels = {name: group.label for name, group in playbook.groups.items()} if playbook else {}
    rows: list[Sequence[str]] = []
    for record in risk_list.head(n).to_dict(orient="records"):
        rows.append(
            (
                str(record["rank"]),
                str(record["customer_id"]),
                f"{record['churn_probability']:.1%}",
                str(record["risk_band"]),
                _money(record["revenue_at_risk"]),
                SEGMENTS.get(record["segment"], record["segment"]),
                labels.get(record["risk_group"], _cell(record["risk_group"])),
                _cell(record.get("driver_1")),
                _cell(record["play"]),
            )
        )
    return rows
