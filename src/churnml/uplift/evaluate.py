"""How well a ranking finds the customers a contact saves: Qini and uplift curves, their areas, uplift
at a contact budget, and the same against a known true effect.

Why these and not ROC-AUC: no customer is both contacted and not, so whether one customer was saved is
never observed. On a randomised period (contacted and held-out customers drawn from the same people) a
ranking is judged by the groups it forms: among its top k, churn of the held out minus churn of the
contacted. Outcomes here are churn (1 = left), so a positive uplift is churn prevented.

- **Qini curve** (Radcliffe 2007): customers kept among the contacted in the top k,
  ``churn_held_out(k) * n_contacted(k) / n_held_out(k) - churn_contacted(k)`` (counts).
- **Uplift curve** (Rzepakowski & Jaroszewicz 2012): the top k's uplift times its size,
  ``(churn rate held out(k) - churn rate contacted(k)) * k``.
- **Qini coefficient**: the area between the Qini curve and the straight line of a random ranking (to
  the same end point), over the share targeted, divided by the customers: comparable across data sets
  only as a ratio (to an oracle's, in the simulator). **AUUC**: the area under the uplift curve, same units.
- **Against the truth** (the simulator knows each customer's effect): the gain curve is the cumulative
  true effect of the top k; the *true* Qini coefficient is its area above the random line, and the
  oracle's is the same with the customers ranked by their true effect.

All functions are pure and rank stably: ties keep the input order.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _order(score: np.ndarray) -> np.ndarray:
    return np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")


def _area_above_random(fraction: np.ndarray, curve: np.ndarray) -> float:
    """Trapezoid area between a curve starting at (0, 0) and the line to its last point."""
    x = np.concatenate([[0.0], fraction])
    y = np.concatenate([[0.0], curve])
    random = x * y[-1]
    return float(np.trapezoid(y - random, x))


def qini_curve(churned: np.ndarray, treated: np.ndarray, score: np.ndarray) -> pd.DataFrame:
    """Per depth k (customers ranked by ``score``, highest first): ``fraction`` targeted, ``qini``
    (customers kept among the contacted, counts) and ``uplift`` (uplift curve: churn-rate difference x k)."""
    order = _order(score)
    y = np.asarray(churned, dtype=np.float64)[order]
    t = np.asarray(treated, dtype=bool)[order]
    n_t, n_c = np.cumsum(t), np.cumsum(~t)
    k_t, k_c = np.cumsum(y * t), np.cumsum(y * ~t)
    with np.errstate(divide="ignore", invalid="ignore"):
        qini = np.where(n_c > 0, k_c * n_t / n_c, 0.0) - k_t
        rate_c = np.where(n_c > 0, k_c / n_c, 0.0)
        rate_t = np.where(n_t > 0, k_t / n_t, 0.0)
    depth = np.arange(1, len(y) + 1)
    uplift = np.where((n_c > 0) & (n_t > 0), rate_c - rate_t, 0.0) * depth
    return pd.DataFrame({"fraction": depth / max(len(y), 1), "qini": qini, "uplift": uplift})


def qini_coefficient(churned: np.ndarray, treated: np.ndarray, score: np.ndarray) -> float:
    """Area between the Qini curve and a random ranking's line, per customer (0 = no better than random)."""
    curve = qini_curve(churned, treated, score)
    return _area_above_random(curve["fraction"].to_numpy(), curve["qini"].to_numpy()) / max(len(curve), 1)


def auuc(churned: np.ndarray, treated: np.ndarray, score: np.ndarray) -> float:
    """Area under the uplift curve, per customer."""
    curve = qini_curve(churned, treated, score)
    x = np.concatenate([[0.0], curve["fraction"].to_numpy()])
    y = np.concatenate([[0.0], curve["uplift"].to_numpy()])
    return float(np.trapezoid(y, x)) / max(len(curve), 1)


def uplift_at_budget(churned: np.ndarray, treated: np.ndarray, score: np.ndarray, budget: float) -> float:
    """Churn of the held out minus churn of the contacted among the top ``budget`` share (NaN where the
    top has no customer of an arm)."""
    order = _order(score)[: max(round(budget * len(score)), 1)]
    y = np.asarray(churned, dtype=np.float64)[order]
    t = np.asarray(treated, dtype=bool)[order]
    if t.all() or not t.any():
        return float("nan")
    return float(y[~t].mean() - y[t].mean())


def ranking_table(
    churned: np.ndarray, treated: np.ndarray, scores: Mapping[str, np.ndarray], budget: float
) -> pd.DataFrame:
    """Per ranking of the same randomised customers: Qini coefficient, AUUC and uplift at ``budget``
    (a share), beside the customers, contacted and held out they are judged on."""
    treated = np.asarray(treated, dtype=bool)
    return pd.DataFrame(
        [
            {
                "ranking": name,
                "customers": len(treated),
                "contacted": int(treated.sum()),
                "held_out": int((~treated).sum()),
                "qini": qini_coefficient(churned, treated, score),
                "auuc": auuc(churned, treated, score),
                "uplift_at_budget": uplift_at_budget(churned, treated, score, budget),
            }
            for name, score in scores.items()
        ]
    )


def gain_curve(effect: np.ndarray, score: np.ndarray) -> pd.DataFrame:
    """Cumulative true effect (customers saved, in expectation) of the top k by ``score``."""
    gained = np.cumsum(np.asarray(effect, dtype=np.float64)[_order(score)])
    return pd.DataFrame({"fraction": np.arange(1, len(gained) + 1) / max(len(gained), 1), "saved": gained})


def true_qini(effect: np.ndarray, score: np.ndarray) -> float:
    """Area of the true gain curve above a random ranking's line, per customer."""
    curve = gain_curve(effect, score)
    return _area_above_random(curve["fraction"].to_numpy(), curve["saved"].to_numpy()) / max(len(curve), 1)


def top(score: np.ndarray, budget: int) -> np.ndarray:
    """Mask of the ``budget`` highest scores (stable: ties keep the input order)."""
    chosen = np.zeros(len(score), bool)
    chosen[_order(score)[: max(int(budget), 0)]] = True
    return chosen


def policy_outcome(
    chosen: np.ndarray,
    effect: np.ndarray,
    value: np.ndarray | float,
    cost: np.ndarray | float,
    sleeping_dog: np.ndarray | None = None,
) -> dict[str, float]:
    """What contacting the ``chosen`` customers does, given each one's effect (a true one, or a model's
    expectation): customers saved, revenue saved (effect x value), contact cost and profit; where known,
    how many sleeping dogs (contact hurts) were contacted."""
    chosen = np.asarray(chosen, dtype=bool)
    effect = np.asarray(effect, dtype=np.float64)[chosen]
    costs = np.broadcast_to(np.asarray(cost, dtype=np.float64), chosen.shape)[chosen]
    values = np.broadcast_to(np.asarray(value, dtype=np.float64), chosen.shape)[chosen]
    revenue = float((effect * values).sum())
    outcome = {
        "contacted": int(chosen.sum()),
        "saved": float(effect.sum()),
        "revenue_saved": revenue,
        "cost": float(costs.sum()),
        "profit": revenue - float(costs.sum()),
    }
    if sleeping_dog is not None:
        outcome["sleeping_dogs"] = int(np.asarray(sleeping_dog, dtype=bool)[chosen].sum())
    return outcome


def compare_policies(
    scores: Mapping[str, np.ndarray],
    budget: int,
    effect: np.ndarray,
    value: np.ndarray | float,
    cost: np.ndarray | float,
    sleeping_dog: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per targeting policy (a score ranking the same customers): its outcome at ``budget``
    contacts and the true Qini coefficient of its whole ranking."""
    rows = []
    for name, score in scores.items():
        outcome = policy_outcome(top(score, budget), effect, value, cost, sleeping_dog)
        rows.append({"policy": name, **outcome, "true_qini": true_qini(effect, score)})
    return pd.DataFrame(rows)


def save_qini_plot(curves: Mapping[str, pd.DataFrame], path: Path, title: str, column: str = "saved") -> Path:
    """Gain (or Qini) curves of several rankings and the random line, as a PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    end: Any = None
    for name, curve in curves.items():
        x = np.concatenate([[0.0], curve["fraction"].to_numpy()])
        y = np.concatenate([[0.0], curve[column].to_numpy()])
        ax.plot(100 * x, y, label=name)
        end = y[-1]
    if end is not None:
        ax.plot([0, 100], [0, end], ls=":", c="grey", label="random")
    ax.set(xlabel="customers contacted (% of the scored, best first)", ylabel="customers saved", title=title)
    ax.legend(loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
