"""Drivers and risk groups: who gets reasons, their SHAP drivers, their playbook group.

Explaining costs ~100x scoring, so only the customers that need reasons are explained (the at-risk, or
everyone, and always the head of the ranking), plus a seeded random sample of everyone for the report's
global drivers; one ``pred_contribs`` pass covers both sets.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from churnml.config import Config
from churnml.engine import Engine, LocalEngine
from churnml.risk.explain import Explainer, contributions, model_typical_values, typical_values
from churnml.risk.report import Explained
from churnml.risk.risk_list import Playbook, assign_groups, driver_columns
from churnml.training.model import ChurnModel


def rows_to_explain(scored: pd.DataFrame, config: Config) -> np.ndarray:
    """Ranked positions that get drivers: the at-risk (or everyone) and the head of the ranking, in
    ranking order, capped at ``explain_max``."""
    settings = config.scoring
    if settings.explain == "all":
        chosen = np.arange(len(scored))
    else:
        head = np.arange(min(settings.explain_top, len(scored)))
        chosen = np.union1d(np.flatnonzero(scored["at_risk"].to_numpy(bool)), head)
    cap = settings.explain_max
    return chosen if cap is None else chosen[:cap]


def drivers_and_groups(
    scored: pd.DataFrame,
    frame: pd.DataFrame,
    model: ChurnModel,
    playbook: Playbook,
    config: Config,
    engine: Engine | None = None,
) -> tuple[pd.DataFrame, Explained, dict[str, Any], dict[str, Any]]:
    """Drivers and risk groups of the customers that need them, plus a random sample for global drivers.

    One ``pred_contribs`` pass covers both sets (on ``engine``'s workers, in pieces of rows: TreeSHAP is
    row by row). Returns the list with driver/group columns, the contributions (with the feature values
    behind them), the typical values used and counts.
    """
    engine = engine or LocalEngine(config.scoring.nthread)
    settings = config.scoring
    explain_pos = rows_to_explain(scored, config)
    rng = np.random.default_rng(config.seed)
    sample_size = min(settings.global_sample, len(scored))
    sample_pos = np.sort(rng.choice(len(scored), size=sample_size, replace=False))
    positions = np.union1d(explain_pos, sample_pos).astype(int)
    subset = frame.iloc[scored["row"].to_numpy()[positions]].reset_index(drop=True)
    started = time.perf_counter()
    pieces = engine.map(
        contributions_of,
        engine.row_parts(subset, settings.batch_size),
        model,
        settings.batch_size,
        settings.device,
        engine.threads,
        name="shap",
    )
    contribs = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
    contrib_seconds = time.perf_counter() - started

    typical = typical_reference(model, frame, scored)
    explainer = Explainer.of(model, typical["values"], config.risk.exclude_from_reasons)
    is_explained = np.isin(positions, explain_pos)
    local = np.flatnonzero(is_explained)
    inputs = explainer.values(subset.iloc[local])
    drivers = explainer.drivers_of_values(inputs, contribs[local], config.risk.top_k)
    per_signal = explainer.group_signals(inputs, contribs[local], config.risk.segments.new_days)
    groups = assign_groups(per_signal, explainer.signals, playbook)

    out = scored.copy()
    columns = driver_columns(drivers, config.risk.top_k)
    for name, values in columns.items():
        out[name] = pd.Series([None] * len(out), dtype=object)
        out.loc[positions[local], name] = pd.Series(values, index=positions[local], dtype=object)
    out["risk_group"] = pd.Series([None] * len(out), dtype=object)
    at_risk_local = out["at_risk"].to_numpy(bool)[positions[local]]
    out.loc[positions[local][at_risk_local], "risk_group"] = groups[at_risk_local]

    customers = pd.DataFrame(
        {
            "customer_id": scored["customer_id"].to_numpy()[positions],
            "rank": scored["rank"].to_numpy()[positions],
            "explained": is_explained,
            "sampled": np.isin(positions, sample_pos),
        }
    )
    explained = Explained(customers, contribs, model.prepare(subset))
    stats = {
        "customers_explained": len(explain_pos),
        "rows_contributions": len(positions),
        "contributions_seconds": contrib_seconds,
        "explain_device": settings.device,
        "trees": model.iteration_range[1] if model.linear is None else 0,
    }
    return out, explained, typical, stats


def contributions_of(
    frame: pd.DataFrame, model: ChurnModel, batch_size: int, device: str, nthread: int
) -> np.ndarray:
    """:func:`contributions` with the rows first, the shape of an engine step."""
    return contributions(model, frame, batch_size, device, nthread)


def typical_reference(model: ChurnModel, frame: pd.DataFrame, scored: pd.DataFrame) -> dict[str, Any]:
    """Typical values of retained customers: stored with the model (training label-0 rows), else the
    medians of this run's customers below the at-risk threshold (the predicted stayers)."""
    stored = model_typical_values(model)
    if stored:
        return {"source": "model (retained training customers)", "values": stored}
    low = scored.loc[~scored["at_risk"], "row"].to_numpy()
    reference = frame.iloc[low] if len(low) else frame
    values = typical_values(model.prepare(reference), model.feature_names)
    return {"source": f"scored customers below the at-risk threshold ({len(low):,})", "values": values}
