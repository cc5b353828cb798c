"""Drift between the data a model learnt from and each scoring run: has the population moved?

Training stores a **reference profile** beside the model (``reference_profile.json``: plain numbers, read
without unpickling anything): per feature its quantile bins and their shares, its cumulative distribution
at its percentiles, its missing share and categories, and the same for the churn probability. Scoring
compares the scored customers with it, per feature:

- **PSI** (population stability index), ``sum((a - e) * ln(a / e))`` over the reference's decile bins
  (right-closed; tied deciles merged, so a count that is 0 for 60% of customers has one bin for 0), one
  bin for missing values and, for a categorical feature, one per training category plus one for unseen
  values. An empty bin counts as 1e-4 of the rows, so a value never seen gives a large, finite PSI.
- **KS**, the largest gap between the two cumulative distributions (numeric features): computed at the
  reference's percentiles (values and left limits), so it is never above the exact two-sample statistic
  and at most ~1/100 below it (a test checks it against scipy), without storing the training rows. It
  compares present values only, so it counts only above the 1% level of chance for those numbers
  (``ks_noise``): on a feature 95% of customers lack, 60 values a side differ by 0.3 by chance.
- **missing share** in the reference and in the run, and for categorical features the **unseen share**:
  customers whose raw data hold a value of the feature's column the model never saw (the features read
  it as missing, so only the raw tables show it).
- **score shift**: PSI and KS of the calibrated churn probability.

**Which reference.** One snapshot: the test cutoff, the latest fully labeled cutoff, one row per active
customer like a scoring run. Pooling every training cutoff would count long-lived customers once per
month and mix an older business in, and the population's plain ageing would read as drift. The score's
reference is the *out-of-time* probabilities on that snapshot (the model the test figures describe,
before it saw those labels): in-sample scores of the shipped model are sharper than any score it gives
to new data, so every run would show a shift that is only overfitting.

**Why numpy, not a library.** PSI and KS are a few lines each; what matters here is the stored profile
(scoring never sees the training rows) and that is churnml's own format either way. evidently (the
obvious candidate) pulls telemetry, a web framework, nltk and plotly into every install and wants both
frames in memory; scipy's ``ks_2samp`` needs the training rows too (it serves as the tests' reference).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any, Literal

import numpy as np
import pandas as pd

from churnml import io
from churnml.config import DriftConfig
from churnml.data.dataset import Dataset
from churnml.features.catalogue import FeatureSpec, raw_category_columns

FORMAT_VERSION = 1
PSI_BINS = 10  # deciles: the usual PSI resolution, stable on a few hundred customers
CDF_POINTS = 100  # percentiles: KS to within ~1/100
EPSILON = 1e-4  # share an empty bin counts as
KS_CRITICAL = 1.628  # sqrt(-ln(0.01 / 2) / 2): the two-sample KS test's 1% level, times sqrt((n+m)/nm)
SCORE = "churn_probability"  # the score's row in the drift table
DIGITS = 6  # shares rounded in the stored profile (compact JSON; far below any sampling error)


@dataclass(frozen=True)
class Profile:
    """One variable in the reference: bin layout and shares, missing share, and (numeric) its CDF.

    Bins of a value, in order: numeric, ``len(edges) + 1`` right-closed bins cut at ``edges``;
    categorical, one per category then one for unseen values; last, one bin for missing values.
    ``shares`` are shares of all rows (missing included) per value bin.
    """

    kind: Literal["numeric", "categorical"]
    rows: int
    missing: float
    shares: tuple[float, ...] = ()  # empty: a categorical seen only missing in training
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()
    grid: tuple[float, ...] = ()  # numeric: the CDF's points (unique percentiles)
    cdf: tuple[float, ...] = ()  # share of present values <= each point
    cdf_below: tuple[float, ...] = ()  # share of present values < each point

    @property
    def bins(self) -> int:
        return len(self.shares) + (1 if self.kind == "categorical" else 0) + 1

    def expected(self) -> np.ndarray:
        """The reference's share per bin (unseen: 0 for a categorical)."""
        unseen = [0.0] if self.kind == "categorical" else []
        return np.array([*self.shares, *unseen, self.missing])

    def bin_index(self, values: Any) -> np.ndarray:
        """Bin of each value (see the class docstring for the layout)."""
        if self.kind == "numeric":
            x = np.asarray(values, dtype=float)
            index = np.searchsorted(np.asarray(self.edges, dtype=float), x, side="left")
            return np.where(np.isfinite(x), index, self.bins - 1)
        text = _text(values)
        known = pd.Index(self.categories).get_indexer(pd.Index(text))
        index = np.where(known >= 0, known, len(self.categories))
        return np.where(pd.isna(text), self.bins - 1, index)

    def counts(self, values: Any) -> np.ndarray:
        """How many of ``values`` fall in each bin."""
        return np.bincount(self.bin_index(values), minlength=self.bins)

    def actual(self, values: Any) -> np.ndarray:
        """Share of ``values`` per bin."""
        counts = self.counts(values)
        return counts / max(counts.sum(), 1)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if v != ()}

    @classmethod
    def from_dict(cls, fields: Mapping[str, Any]) -> Profile:
        lists = {k: tuple(v) for k, v in fields.items() if isinstance(v, list)}
        return cls(fields["kind"], int(fields["rows"]), float(fields["missing"]), **lists)


def _text(values: Any) -> pd.Series:
    series = pd.Series(values).astype(object)
    return series.where(series.isna(), series.astype(str))


def _rounded(shares: np.ndarray) -> tuple[float, ...]:
    return tuple(float(s) for s in np.round(shares, DIGITS))


def numeric_profile(values: Any) -> Profile:
    """Decile bins, percentile CDF and missing share of a numeric variable (infinite counts as missing)."""
    x = np.asarray(values, dtype=float)
    present = np.sort(x[np.isfinite(x)])
    rows = len(x)
    missing = 1 - len(present) / rows if rows else 0.0
    if not len(present):
        return Profile("numeric", rows, missing, (0.0,))
    edges = np.unique(np.quantile(present, np.linspace(0, 1, PSI_BINS + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, present, side="left"), minlength=len(edges) + 1)
    grid = np.unique(np.quantile(present, np.linspace(0, 1, CDF_POINTS + 1)))
    return Profile(
        "numeric",
        rows,
        round(missing, DIGITS),
        _rounded(counts / rows),
        edges=tuple(float(e) for e in edges),
        grid=tuple(float(g) for g in grid),
        cdf=_rounded(np.searchsorted(present, grid, side="right") / len(present)),
        cdf_below=_rounded(np.searchsorted(present, grid, side="left") / len(present)),
    )


def categorical_profile(values: Any, categories: Sequence[str]) -> Profile:
    """Share of each training category and of missing values."""
    text = _text(values)
    rows = len(text)
    counts = pd.Index(list(categories)).get_indexer(pd.Index(text))
    shares = np.bincount(counts[counts >= 0], minlength=len(categories)) / max(rows, 1)
    missing = float(text.isna().mean()) if rows else 0.0
    return Profile(
        "categorical", rows, round(missing, DIGITS), _rounded(shares), categories=tuple(categories)
    )


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins (empty bins count as EPSILON)."""
    e = np.clip(np.asarray(expected, dtype=float), EPSILON, None)
    a = np.clip(np.asarray(actual, dtype=float), EPSILON, None)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_statistic(profile: Profile, values: Any) -> float:
    """Largest gap between the reference CDF and that of ``values`` (present values of each), evaluated at
    the reference's percentiles and just below them; NaN when either side has no values.

    Both CDFs are monotone and the reference has at most ~1/100 of its mass strictly between two
    neighbouring points, so this is at most that much below the exact statistic, and never above it.
    """
    if profile.kind != "numeric" or not profile.grid:
        return float("nan")
    x = np.asarray(values, dtype=float)
    present = np.sort(x[np.isfinite(x)])
    if not len(present):
        return float("nan")
    grid = np.asarray(profile.grid)
    at = np.searchsorted(present, grid, side="right") / len(present)
    below = np.searchsorted(present, grid, side="left") / len(present)
    return float(
        max(np.abs(at - np.asarray(profile.cdf)).max(), np.abs(below - np.asarray(profile.cdf_below)).max())
    )


# ---------------------------------------------------------------------------------------------------
# The reference profile.


@dataclass(frozen=True)
class Reference:
    """Every feature's profile and the score's, with where they came from (``source``)."""

    source: str
    features: dict[str, Profile]
    score: Profile | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "source": self.source,
            "features": {name: p.to_dict() for name, p in self.features.items()},
            "score": None if self.score is None else self.score.to_dict(),
        }

    @classmethod
    def from_dict(cls, document: Mapping[str, Any] | None) -> Reference | None:
        """The reference a model carries; None when it has none (older models) or one of another format."""
        if not document or document.get("format_version") != FORMAT_VERSION:
            return None
        score = document.get("score")
        return cls(
            str(document.get("source", "")),
            {name: Profile.from_dict(p) for name, p in document["features"].items()},
            None if score is None else Profile.from_dict(score),
        )


def reference_profile(
    frame: pd.DataFrame,
    columns: Sequence[Any],
    probability: np.ndarray | None,
    source: str,
) -> Reference:
    """The reference of ``frame``'s rows for the model inputs ``columns`` (``FeatureColumn``s: name, dtype,
    categories) and their out-of-time ``probability``."""
    features = {
        c.name: categorical_profile(frame[c.name], c.categories or ())
        if c.dtype == "category"
        else numeric_profile(frame[c.name])
        for c in columns
    }
    return Reference(source, features, None if probability is None else numeric_profile(probability))


# ---------------------------------------------------------------------------------------------------
# Comparing a run with the reference.

TABLE_COLUMNS = [
    "feature",
    "kind",
    "psi",
    "ks",
    "ks_noise",
    "missing_reference",
    "missing_scored",
    "unseen_share",
    "flagged",
]


def unseen_shares(
    dataset: Dataset, customers: np.ndarray, as_of: pd.Timestamp, specs: Sequence[FeatureSpec]
) -> dict[str, float]:
    """Per categorical feature: the share of ``customers`` whose rows before ``as_of`` (their customer
    record, any time) hold a value of a column the feature reads that is not a training category."""
    return flagged_shares(unseen_flags(dataset, customers, as_of, specs))


def flagged_shares(flags: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Per feature, the share of customers flagged (:func:`unseen_flags`, or a scoring run's gathered)."""
    return {name: float(values.mean()) for name, values in flags.items()}


def unseen_flags(
    dataset: Dataset, customers: np.ndarray, as_of: pd.Timestamp, specs: Sequence[FeatureSpec]
) -> dict[str, np.ndarray]:
    """:func:`unseen_shares` per customer of ``customers`` (distinct ids): whether it holds such a value;
    what partitions compute for their own customers, the client then takes the shares of the whole."""
    from churnml.contract import TABLES

    scored = pd.Index(pd.unique(np.asarray(customers, dtype=object)))
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        sources = raw_category_columns(spec)
        if not sources or not len(scored):
            continue
        known = set(spec.categories or ())
        unseen: set[Any] = set()
        for table, column in sources:
            rows = dataset.get(table)
            if rows is None or column not in rows.columns:
                continue
            if table != "customers":
                rows = rows.loc[rows[TABLES[table].time_column] < as_of]
            values = _text(rows[column].to_numpy())
            odd = values.notna().to_numpy() & ~values.isin(known).to_numpy()
            unseen |= set(rows["customer_id"].to_numpy()[odd])
        out[spec.name] = np.asarray(scored.isin(list(unseen)), dtype=bool)
    return out


def compare(
    reference: Reference,
    frame: pd.DataFrame,
    probability: np.ndarray | None,
    settings: DriftConfig,
    unseen: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """The drift table: one row per feature of the reference that ``frame`` has, and one for the score
    (``churn_probability``, first), each flagged when PSI, KS or the unseen share reaches its threshold
    (KS only when it is also above ``ks_noise``: on a feature most customers lack, a few dozen values
    on each side differ by chance alone)."""
    rows = []
    profiles = {SCORE: reference.score} if reference.score is not None and probability is not None else {}
    for name, profile in {**profiles, **reference.features}.items():
        if profile is None or (name != SCORE and name not in frame.columns):
            continue
        values = probability if name == SCORE else frame[name]
        counts = profile.counts(values)
        actual, present = counts / max(counts.sum(), 1), counts[:-1].sum()
        rows.append(
            {
                "feature": name,
                "kind": "score" if name == SCORE else profile.kind,
                "psi": psi(profile.expected(), actual),
                "ks": ks_statistic(profile, values),
                "ks_noise": ks_noise(round(profile.rows * (1 - profile.missing)), present)
                if profile.kind == "numeric"
                else np.nan,
                "missing_reference": profile.missing,
                "missing_scored": float(actual[-1]),
                "unseen_share": (unseen or {}).get(name, np.nan) if profile.kind == "categorical" else np.nan,
            }
        )
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS[:-1])
    table["flagged"] = (
        (table["psi"] >= settings.psi_warn)
        | ((table["ks"] >= settings.ks_warn) & (table["ks"] > table["ks_noise"]))
        | (table["unseen_share"] >= settings.unseen_warn)
    )
    return table


def ks_noise(n: float, m: float) -> float:
    """The KS statistic chance alone exceeds 1% of the time between samples of ``n`` and ``m`` values
    (the two-sample test's asymptotic critical value, c(0.01) = 1.628): where ``n`` or ``m`` is small,
    a KS above the threshold says nothing."""
    if n < 1 or m < 1:
        return float("nan")
    return float(KS_CRITICAL * np.sqrt((n + m) / (n * m)))


def movers(table: pd.DataFrame, n: int) -> pd.DataFrame:
    """The features that moved most: flagged first, then by PSI (the score's row excluded)."""
    features = table.loc[table["kind"] != "score"]
    return features.sort_values(["flagged", "psi"], ascending=False, kind="stable").head(n)


def summary(table: pd.DataFrame | None, reference: Reference | None, settings: DriftConfig) -> dict[str, Any]:
    """summary.json's ``drift``: the reference, thresholds, the score's shift, flagged features, top movers
    and ``warning`` (any feature or the score flagged)."""
    thresholds = {
        "psi_warn": settings.psi_warn,
        "ks_warn": settings.ks_warn,
        "unseen_warn": settings.unseen_warn,
    }
    if table is None or reference is None:
        return {
            "reference": None,
            "note": "no reference: the model carries no reference profile (trained before drift was recorded)",
            "warning": False,
            "thresholds": thresholds,
            "score": None,
            "flagged": [],
            "top": [],
        }
    score = table.loc[table["kind"] == "score"]
    flagged = table.loc[table["flagged"] & (table["kind"] != "score"), "feature"].tolist()
    return {
        "reference": reference.source,
        "warning": bool(table["flagged"].any()),
        "thresholds": thresholds,
        "score": io.strict(score.drop(columns=["feature", "kind", "unseen_share"]).iloc[0].to_dict())
        if len(score)
        else None,
        "flagged": flagged,
        "features_compared": int((table["kind"] != "score").sum()),
        "top": io.strict(movers(table, settings.top).drop(columns="kind").to_dict(orient="records")),
    }


def warning_text(drift: Mapping[str, Any]) -> str | None:
    """One line for the terminal and the report's banner; None when nothing reached a threshold."""
    if not drift.get("warning"):
        return None
    parts = []
    if drift["flagged"]:
        shown = ", ".join(drift["flagged"][:5]) + (
            f" and {len(drift['flagged']) - 5} more" if len(drift["flagged"]) > 5 else ""
        )
        parts.append(f"{len(drift['flagged'])} feature(s) moved past the thresholds ({shown})")
    score = drift.get("score") or {}
    if score.get("flagged"):
        parts.append(f"the score distribution shifted (PSI {score['psi']:.2f}, KS {score['ks']:.2f})")
    limits = drift["thresholds"]
    return (
        f"drift since training ({drift['reference']}): "
        + "; ".join(parts)
        + f" [PSI ≥ {limits['psi_warn']:g}, KS ≥ {limits['ks_warn']:g} or unseen ≥ {limits['unseen_warn']:g}]"
    )


def metrics(table: pd.DataFrame) -> dict[str, float]:
    """Every finite figure of the drift table as MLflow metrics: ``drift.psi.<feature>``, ``drift.ks.``,
    ``drift.missing.`` (scored share), ``drift.unseen.``, and ``drift.flagged`` (how many features)."""
    out: dict[str, float] = {}
    figures = {"psi": "psi", "ks": "ks", "missing": "missing_scored", "unseen": "unseen_share"}
    for key, column in figures.items():
        values = table[column].to_numpy(dtype=float)
        for feature, value in zip(table["feature"], values, strict=True):
            if np.isfinite(value):
                out[f"drift.{key}.{feature}"] = float(value)
    out["drift.flagged"] = float((table["flagged"] & (table["kind"] != "score")).sum())
    out["drift.warning"] = float(table["flagged"].any())
    return out


# ---------------------------------------------------------------------------------------------------
# Served scores.


class ScoreWindow:
    """The last ``size`` probabilities a service answered, kept as bins of the reference score profile:
    adding a batch and reading the PSI cost O(batch + bins), so it can run on every request.

    Thread-safe (BentoML runs synchronous endpoints in a thread pool).
    """

    def __init__(self, profile: Profile, size: int) -> None:
        self.profile, self.size = profile, size
        self.expected = profile.expected()
        self.ring = np.full(size, -1, dtype=np.int16)  # bin of each kept score, -1 = empty slot
        self.counts = np.zeros(profile.bins, dtype=np.int64)
        self.position = 0
        self.lock = threading.Lock()

    @property
    def filled(self) -> int:
        return int(self.counts.sum())

    def add(self, probability: np.ndarray) -> np.ndarray:
        """Keep these scores (the oldest drop out); returns how many fell in each bin."""
        index = self.profile.bin_index(probability)[-self.size :].astype(np.int16)
        added = np.bincount(index, minlength=self.profile.bins)
        with self.lock:
            slots = (self.position + np.arange(len(index))) % self.size
            old = self.ring[slots]
            self.counts -= np.bincount(old[old >= 0], minlength=self.profile.bins)
            self.ring[slots] = index
            self.counts += added
            self.position = int((self.position + len(index)) % self.size)
        return added

    def psi(self) -> float:
        with self.lock:
            counts = self.counts.copy()
        total = counts.sum()
        return psi(self.expected, counts / total) if total else float("nan")

    def bin_labels(self) -> list[str]:
        """Readable names of the probability bins for metric labels: ``0.031-0.052`` (right-closed),
        ``missing``."""
        bounds = ["0", *(f"{e:.3g}" for e in self.profile.edges), "1"]
        return [f"{low}-{high}" for low, high in pairwise(bounds)] + ["missing"]
