"""``review.html``: "Did it work?" for one past risk list, in the risk report's style and conventions
(one self-contained file, plots as embedded PNGs drawn with matplotlib's object API)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnml import io
from churnml.config import Config
from churnml.risk.report import _figure, environment, plot_text, png
from churnml.risk.review import PLAY_FIGURES, Review, json_ready, public_plays

TEMPLATE = "review.html.j2"


def effect_plot(plays: pd.DataFrame) -> str | None:
    """Effect per play (points) with its 95% interval (lines); right of zero = the play kept customers."""
    shown = plays.loc[np.isfinite(plays["effect"].to_numpy(float))]
    if shown.empty:
        return None
    fig, ax = _figure(7.0, 0.6 + 0.45 * len(shown))
    y = np.arange(len(shown))[::-1]
    effect = shown["effect"].to_numpy(float) * 100
    low, high = shown["effect_low"].to_numpy(float) * 100, shown["effect_high"].to_numpy(float) * 100
    colours = ["#1f2933" if p == "all plays" else "#3b6ea5" for p in shown["play"]]
    ax.hlines(y, low, high, colors=colours, lw=2)
    ax.scatter(effect, y, color=colours, zorder=3)
    ax.axvline(0, color="#c8423b", ls=":", lw=1)
    ax.set_yticks(y, [plot_text(str(p)) for p in shown["play"]])
    ax.set(xlabel="churn held out − churn contacted (percentage points, 95% CI)", title="Effect per play")
    return png(fig)


def calibration_plot(calibration: pd.DataFrame) -> str | None:
    """Predicted vs realised churn per band (customers not contacted), with the diagonal."""
    if calibration.empty:
        return None
    fig, ax = _figure(5.5, 4.0)
    predicted, realised = calibration["predicted"].to_numpy(float), calibration["realised"].to_numpy(float)
    top = float(np.nanmax([predicted.max(), realised.max(), 0.05])) * 1.1
    ax.plot([0, top], [0, top], color="#7f7f7f", ls=":", lw=1)
    ax.scatter(predicted, realised, s=20 + 200 * calibration["customers"] / calibration["customers"].max())
    for row in calibration.itertuples(index=False):
        ax.annotate(
            plot_text(str(row.risk_band)),
            (row.predicted, row.realised),
            fontsize=8,
            xytext=(4, 4),
            textcoords="offset points",
        )
    ax.set(
        xlim=(0, top),
        ylim=(0, top),
        xlabel="predicted churn (mean)",
        ylabel="realised churn",
        title="Calibration per band",
    )
    return png(fig)


def render(context: dict[str, Any]) -> str:
    return environment().get_template(TEMPLATE).render(**context)


def build_context(review: Review, config: Config) -> dict[str, Any]:
    plays = [json_ready(row) for row in public_plays(review.plays).to_dict(orient="records")]
    return {
        "s": json_ready(review.summary()),
        "horizon_days": config.labels.horizon_days,
        "total": plays[-1] if plays else dict.fromkeys(PLAY_FIGURES),
        "plays": plays,
        "notes": review.notes,
        "assumed": config.campaign.success_rate,
        "effect_plot": effect_plot(review.plays) if len(review.plays) else None,
        "calibration_plot": calibration_plot(review.calibration),
        "breakdowns": {
            by: [json_ready(r) for r in table.to_dict(orient="records")]
            for by, table in review.breakdowns.items()
        },
    }


def write_report(path: Path, review: Review, config: Config) -> Path:
    """Render the page to ``path`` (atomically)."""
    return io.write_text(path, render(build_context(review, config)))
