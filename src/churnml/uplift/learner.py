"""Uplift models per play: an offset, X- or T-learner on XGBoost, or the play's measured average effect.

Why meta-learners on churnml's own booster code rather than causalml: causalml 0.18 pulls black,
lightgbm, graphviz, pathos, forestci, statsmodels and seaborn in at run time, and its models are
pickled; a meta-learner is a few boosters whose outputs are combined, and here every booster is fitted,
cast (categoricals with the training categories) and saved as JSON exactly like the churn model's.

- **Offset learner** (the default): a churn model without contact (``mu0``, shared by every play with
  ``uplift.controls: all``), set to the level of the play's own randomised holdouts (``baseline``), then
  how a contact moves the log-odds: the play's average shift plus trees.
- **T-learner**: a churn model for the contacted and one for the held out; uplift = the difference.
  Simple, but each model spends its trees on the risk both arms share, so the difference is noisy.
- **X-learner** (Kunzel, Sekhon, Bickel & Yu, PNAS 2019): from those two models, impute each
  customer's own effect (a contacted customer: the held-out model's churn minus what happened; a
  held-out one: what happened minus the contacted model's churn), fit a regression of the imputed
  effects per arm, and weight the two by the share contacted. It was designed for arms of very
  different sizes, which a 20% holdout is: the small arm's effect model leans on the large arm's churn
  model.

Uplift here is the *reduction* in churn probability within the horizon: positive, the contact keeps the
customer; negative, a "sleeping dog" whom the contact pushes out. With fewer than ``min_treated``
contacted or ``min_held_out`` held-out customers a play gets no model: a warning names the play and its
counts, and every customer gets the play's measured average effect (holdout minus contacted churn, with
Newcombe's interval, ``churnml.risk.review.difference_interval``, the same figure ``churnml review``
reports); with a shared no-contact model, as the odds ratio it implies on each customer's own risk.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from churnml import io
from churnml.config import UpliftConfig
from churnml.errors import DataValidationError
from churnml.features import FeatureSpec
from churnml.risk.review import difference_interval
from churnml.training.candidates import robust_params
from churnml.training.model import ChurnModel, FeatureColumn
from churnml.training.split import customer_fraction

log = logging.getLogger(__name__)

MODEL_FILE = "uplift_model.json"
FORMAT_VERSION = 2  # 2: a play's ``baseline`` and ``scale``, shared boosters once (2026-12-06); 1 loads
FORMATS = (1, 2)
SHARED = "_shared"  # boosters several plays share; a play's slug never starts with "_"
LEARNERS = ("x", "t", "offset")
AVERAGE = "average"  # a play without a model: its measured average effect


@dataclass(frozen=True)
class PlayModel:
    """One play's uplift: its boosters (``mu0`` held out, ``mu1`` contacted, X-learner ``tau0``/``tau1``)
    or, for ``method == "average"``, only its measured average effect."""

    play: str
    method: str  # "offset", "x", "t" or "average"
    treated: int
    held_out: int
    churn_treated: float
    churn_held_out: float
    average_effect: float  # held-out churn minus contacted churn (the review's measured effect)
    effect_low: float
    effect_high: float
    propensity: float  # share contacted: the X-learner's weight of the held-out arm's effect model
    shift: float = 0.0  # offset learner: the play's average change in log-odds, the trees add to it
    baseline: float = 0.0  # offset learner: the play's held out's log-odds beside the shared mu0's
    # A play without a model: its average effect as one difference in churn for everyone ("probability",
    # models saved before 2026-12-06) or, with a shared no-contact model, as the odds ratio ``shift`` on
    # each customer's own risk ("log-odds").
    scale: str = "probability"
    boosters: dict[str, xgb.Booster] = field(default_factory=dict)

    def effect(
        self, x: pd.DataFrame | xgb.DMatrix, margins: dict[tuple[int, int], np.ndarray] | None = None
    ) -> np.ndarray:
        """Reduction in churn probability from a contact with this play, per row of prepared features
        (or their :func:`feature_matrix`, which every play can share). ``margins``: the no-contact
        margins of that matrix already computed, by booster, for plays that share the model."""
        if self.method == AVERAGE and self.scale != "log-odds":
            value = self.average_effect if math.isfinite(self.average_effect) else 0.0
            return np.full(x.num_row() if isinstance(x, xgb.DMatrix) else len(x), value)
        matrix = x if isinstance(x, xgb.DMatrix) else feature_matrix(x)
        if self.method == AVERAGE:
            base = self._no_contact_margin(matrix, margins) + self.baseline
            return _sigmoid(base) - _sigmoid(base + self.shift)
        if self.method == "t":
            return _predict(self.boosters["mu0"], matrix) - _predict(self.boosters["mu1"], matrix)
        if self.method == "offset":
            base = self._no_contact_margin(matrix, margins) + self.baseline
            shift = self.shift + (
                _predict(self.boosters["shift"], matrix, margin=True) if "shift" in self.boosters else 0.0
            )
            return _sigmoid(base) - _sigmoid(base + shift)
        g = self.propensity
        return g * _predict(self.boosters["tau0"], matrix) + (1 - g) * _predict(self.boosters["tau1"], matrix)

    def _no_contact_margin(
        self, matrix: xgb.DMatrix, margins: dict[tuple[int, int], np.ndarray] | None
    ) -> np.ndarray:
        booster = self.boosters["mu0"]
        if margins is None:
            return _predict(booster, matrix, margin=True)
        key = (id(booster), id(matrix))  # both alive for the whole call that owns ``margins``
        if key not in margins:
            margins[key] = _predict(booster, matrix, margin=True)
        return margins[key]

    def churn_without(self, x: pd.DataFrame) -> np.ndarray:
        """Churn probability if not contacted (the held-out arm's model; NaN for an average play without
        a shared no-contact model)."""
        if "mu0" not in self.boosters:
            return np.full(len(x), np.nan)
        if self.baseline:
            return _sigmoid(_predict(self.boosters["mu0"], feature_matrix(x), margin=True) + self.baseline)
        return _predict(self.boosters["mu0"], feature_matrix(x))

    def summary(self) -> dict[str, Any]:
        return {
            "play": self.play,
            "method": self.method,
            "treated": self.treated,
            "held_out": self.held_out,
            "churn_treated": self.churn_treated,
            "churn_held_out": self.churn_held_out,
            "average_effect": self.average_effect,
            "effect_low": self.effect_low,
            "effect_high": self.effect_high,
            "propensity": self.propensity,
            "shift": self.shift,
            "baseline": self.baseline,
            "scale": self.scale,
            "rounds": {name: b.num_boosted_rounds() for name, b in self.boosters.items()},
        }


def feature_matrix(x: pd.DataFrame) -> xgb.DMatrix:
    """Prepared features (``ChurnModel.prepare``) as a DMatrix built from one float32 array, categories
    as their training codes: the values XGBoost reads from the frame itself, without its per-column
    pandas handling, which cost tens of milliseconds a call and dominated serving one customer (the
    predictions are the same to the bit: tested)."""
    data = np.empty(x.shape, dtype=np.float32)
    types = []
    for k, name in enumerate(x.columns):
        column = x[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            codes = column.cat.codes.to_numpy().astype(np.float32)
            data[:, k] = np.where(codes < 0, np.nan, codes)
            types.append("c")
        else:
            data[:, k] = column.to_numpy(dtype=np.float32, na_value=np.nan)
            types.append("q")
    return xgb.DMatrix(
        data,
        feature_names=list(x.columns),
        feature_types=types,
        enable_categorical=True,
        missing=np.nan,
        nthread=1,  # starting XGBoost's thread team cost 12 ms for one row on a busy 2-core machine
    )


def _dmatrix(data: np.ndarray, columns: Sequence[FeatureColumn]) -> xgb.DMatrix:
    types = ["c" if c.dtype == "category" else "q" for c in columns]
    return xgb.DMatrix(
        data,
        feature_names=[c.name for c in columns],
        feature_types=types,
        enable_categorical=True,
        missing=np.nan,
        nthread=1,
    )


def _predict(booster: xgb.Booster, matrix: xgb.DMatrix, margin: bool = False) -> np.ndarray:
    # Boosters are refitted without early stopping: every tree is wanted, said explicitly all the same.
    # The matrix is always built from the model's own columns (feature_matrix): checking its 100-odd
    # names against the booster's on every call was a third of serving a customer's uplift.
    return booster.predict(
        matrix,
        output_margin=margin,
        iteration_range=(0, booster.num_boosted_rounds()),
        validate_features=False,
    )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class UpliftModel:
    """Every play's uplift model and the input specification they share (cast like the churn model's)."""

    inputs: ChurnModel  # columns and feature specs only: ``prepare`` casts features as in training
    plays: dict[str, PlayModel]
    info: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def effect(self, frame: pd.DataFrame, plays: Sequence[Any] | pd.Series) -> np.ndarray:
        """Each row's uplift for its own play (NaN for a play the model does not know)."""
        return self._by_play(frame, plays, PlayModel.effect)

    def churn_without(self, frame: pd.DataFrame, plays: Sequence[Any] | pd.Series) -> np.ndarray:
        """Each row's churn probability without a contact, by its play's model (NaN for an average play)."""
        return self._by_play(frame, plays, PlayModel.churn_without)

    def _by_play(
        self,
        frame: pd.DataFrame,
        plays: Sequence[Any] | pd.Series,
        method: Callable[[PlayModel, pd.DataFrame], np.ndarray],
    ) -> np.ndarray:
        plays = pd.Series(np.asarray(plays, dtype=object), index=frame.index)
        x = self.inputs.prepare(frame)
        out = np.full(len(frame), np.nan)
        for play, model in self.plays.items():
            mask = (plays == play).to_numpy()
            if mask.any():
                out[mask] = method(model, x.loc[mask])
        return out

    def effects(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Every play's uplift for every row: one column per play (one feature matrix for them all)."""
        x = feature_matrix(self.inputs.prepare(frame))
        # The shared no-contact model, predicted once for every play.
        margins: dict[tuple[int, int], np.ndarray] = {}
        return pd.DataFrame({play: m.effect(x, margins) for play, m in self.plays.items()}, index=frame.index)

    def effects_of_encoded(self, data: np.ndarray) -> pd.DataFrame:
        """:meth:`effects` of rows already encoded as :func:`feature_matrix` encodes them (float32, the
        model's columns in order, categories as training codes): the service's fast path has them."""
        x = _dmatrix(np.asarray(data, dtype=np.float32), self.inputs.columns)
        margins: dict[tuple[int, int], np.ndarray] = {}
        return pd.DataFrame({play: m.effect(x, margins) for play, m in self.plays.items()})

    def summary(self) -> pd.DataFrame:
        return pd.DataFrame([m.summary() for m in self.plays.values()])

    def save(self, directory: str | Path) -> Path:
        """Each booster as JSON under ``<play slug>/`` (one that several plays share, the no-contact model
        of ``controls: all``, once under ``_shared/``), the rest in ``uplift_model.json``: nothing pickled."""
        directory = Path(directory)
        plays = []
        slugs = [slug(play) for play in self.plays]
        if len(set(slugs)) < len(slugs):  # two plays in one folder would load with each other's trees
            clash = sorted(p for p, s in zip(self.plays, slugs, strict=True) if slugs.count(s) > 1)
            raise DataValidationError(
                "contacts", "play", f"plays {clash} differ only in case or punctuation; name them apart"
            )
        uses = Counter(id(b) for m in self.plays.values() for b in m.boosters.values())
        written: dict[int, str] = {}
        for play, model in self.plays.items():
            files = {}
            for name, booster in model.boosters.items():
                if id(booster) not in written:
                    folder = SHARED if uses[id(booster)] > 1 else slug(play)
                    relative, k = f"{folder}/{name}.json", 1
                    while relative in written.values():  # two shared boosters of one name
                        k += 1
                        relative = f"{folder}/{name}-{k}.json"
                    written[id(booster)] = relative
                    _write_booster(directory / written[id(booster)], booster)
                files[name] = written[id(booster)]
            plays.append({**{k: v for k, v in model.summary().items() if k != "rounds"}, "boosters": files})
        document = {
            "format_version": FORMAT_VERSION,
            "columns": [
                {"name": c.name, "dtype": c.dtype, "categories": c.categories} for c in self.inputs.columns
            ],
            "features": [spec.to_dict() for spec in self.inputs.specs],
            "plays": plays,
            "info": self.info,
            "notes": list(self.notes),
        }
        io.write_json(directory / MODEL_FILE, document)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> UpliftModel:
        directory = Path(directory)
        document = json.loads((directory / MODEL_FILE).read_text())
        if document.get("format_version") not in FORMATS:
            raise ValueError(
                f"{directory}: unsupported uplift model format {document.get('format_version')!r}"
            )
        columns = tuple(
            FeatureColumn(c["name"], c["dtype"], None if c["categories"] is None else tuple(c["categories"]))
            for c in document["columns"]
        )
        specs = tuple(FeatureSpec.from_dict(s) for s in document["features"])
        plays = {}
        loaded: dict[str, xgb.Booster] = {}  # a file several plays name is one booster again
        for entry in document["plays"]:
            boosters = {}
            for name, relative in entry.pop("boosters").items():
                if relative not in loaded:
                    loaded[relative] = xgb.Booster()
                    loaded[relative].load_model(bytearray((directory / relative).read_bytes()))
                boosters[name] = loaded[relative]
            plays[entry["play"]] = PlayModel(**{k: _number(v) for k, v in entry.items()}, boosters=boosters)
        inputs = ChurnModel(booster=None, columns=columns, specs=specs)
        return cls(inputs, plays, document.get("info", {}), tuple(document.get("notes", ())))


def _write_booster(path: Path, booster: xgb.Booster) -> None:
    raw = bytes(booster.save_raw("json"))
    io.write_with(path, lambda tmp: tmp.write_bytes(raw))


def _number(value: Any) -> Any:
    return math.nan if value is None else value  # JSON wrote NaN as null


def slug(play: str) -> str:
    """A play's name as a file name."""
    return re.sub(r"[^a-z0-9]+", "-", play.casefold()).strip("-") or "play"


# ---------------------------------------------------------------------------------------------------
# Fitting.


def fit_uplift(
    rows: pd.DataFrame,
    specs: Sequence[FeatureSpec],
    config: UpliftConfig,
    seed: int,
    nthread: int = 2,
    controls: pd.DataFrame | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> UpliftModel:
    """One uplift model per play of labeled ``rows`` (customer_id, cutoff, play, treated, label and the
    features of ``specs``); plays with too few customers in an arm get their measured average effect.

    ``controls`` (labeled rows of customers not contacted at a list date, features of ``specs``): the
    churn model without a contact (``mu0``) is then one model for every play, fitted on the held out and
    these, instead of on each play's held out alone (see ``uplift.controls``). ``params``: per play, the
    XGBoost settings tuned for its own boosters (``churnml.uplift.tune``) over the robust ones."""
    if config.learner not in LEARNERS:
        raise ValueError(f"uplift.learner must be one of {LEARNERS}, got {config.learner!r}")
    rows = rows.loc[rows["label"].notna()].reset_index(drop=True)
    inputs = ChurnModel.untrained(rows, specs)
    x_all = inputs.prepare(rows)
    y_all = rows["label"].to_numpy(dtype=np.float64)
    treated_all = rows["treated"].to_numpy(dtype=bool)
    valid_all = customer_fraction(rows["customer_id"], seed) < config.validation_share
    plays: dict[str, PlayModel] = {}
    notes: list[str] = []
    tuned = {play: dict(p) for play, p in (params or {}).items() if p}
    shared = None if controls is None else no_contact_model(rows, controls, inputs, config, seed, nthread)
    for play in sorted(rows["play"].dropna().astype(str).unique()):
        mask = (rows["play"] == play).to_numpy()
        x, y, treated, valid = x_all.loc[mask], y_all[mask], treated_all[mask], valid_all[mask]
        n_t, n_h = int(treated.sum()), int((~treated).sum())
        k_t, k_h = float(y[treated].sum()), float(y[~treated].sum())
        effect, low, high = difference_interval(k_h, n_h, k_t, n_t)
        measured = {
            "play": play,
            "treated": n_t,
            "held_out": n_h,
            "churn_treated": k_t / n_t if n_t else math.nan,
            "churn_held_out": k_h / n_h if n_h else math.nan,
            "average_effect": effect,
            "effect_low": low,
            "effect_high": high,
            "propensity": n_t / (n_t + n_h),
        }
        if n_t < config.min_treated or n_h < config.min_held_out:
            note = (
                f"{play}: {n_t} contacted and {n_h} held-out customers (an uplift model needs at least "
                f"{config.min_treated} and {config.min_held_out}); every customer gets the play's measured "
                f"average effect, {_pp(effect)} (95% CI {_pp(low)} to {_pp(high)})"
            )
            if shared is not None and n_t and n_h:
                note += ", as the odds ratio it implies on each customer's own churn risk"
            log.warning("uplift: %s", note)
            notes.append(note)
            if shared is None or not (n_t and n_h):
                # Without both arms there is no measured effect to turn into an odds ratio (it is 0).
                plays[play] = PlayModel(
                    method=AVERAGE, boosters={} if shared is None else {"mu0": shared}, **measured
                )
                continue
            # The shared no-contact model gives these customers a churn risk, and the measured effect
            # becomes the odds ratio it implies on each one's risk (shrunk by the prior): never more than
            # a low-risk customer's own churn probability.
            baseline, shift = average_odds(_margin(shared, x), y, treated)
            plays[play] = PlayModel(
                method=AVERAGE,
                boosters={"mu0": shared},
                shift=shift,
                baseline=baseline,
                scale="log-odds",
                **measured,
            )
            continue
        boosters, shift, baseline = fit_learner(
            x, y, treated, valid, config, seed, nthread, shared, tuned.get(play)
        )
        plays[play] = PlayModel(
            method=config.learner,
            boosters=boosters,
            shift=shift,
            baseline=baseline,
            scale="log-odds" if config.learner == "offset" else "probability",
            **measured,
        )
    info = {
        "learner": config.learner,
        "shift_trees": config.shift_trees if config.learner == "offset" else None,
        "rows": len(rows),
        "controls": 0 if controls is None else int(controls["label"].notna().sum()),
        "seed": seed,
        "tuned_params": {play: p for play, p in tuned.items() if play in plays},
    }
    return UpliftModel(inputs, plays, info, tuple(notes))


def no_contact_model(
    rows: pd.DataFrame,
    controls: pd.DataFrame,
    inputs: ChurnModel,
    config: UpliftConfig,
    seed: int,
    nthread: int,
) -> xgb.Booster:
    """The churn model without a contact shared by every play (``uplift.controls: all``): fitted on the
    held-out rows and the labeled ``controls``, with the robust settings."""
    untreated = pd.concat(
        [rows.loc[~rows["treated"].to_numpy(dtype=bool)], controls.loc[controls["label"].notna()]],
        ignore_index=True,
    )
    return _fit_booster(
        inputs.prepare(untreated),
        untreated["label"].to_numpy(dtype=np.float64),
        customer_fraction(untreated["customer_id"], seed) < config.validation_share,
        _classifier_params(int(untreated["label"].sum()), seed, nthread),
        config,
        nthread,
    )


def factual_log_loss(model: PlayModel, x: pd.DataFrame, y: np.ndarray, treated: np.ndarray) -> float:
    """How well a play's model predicts what happened to each customer in the arm they were in: churn
    without a contact (``mu0``) for the held out, that minus the uplift for the contacted; log loss.
    For the offset and T-learners this is exactly their own likelihood; the X-learner's contacted churn
    is clipped into (0, 1)."""
    p0 = model.churn_without(x)
    p = np.where(treated, p0 - model.effect(x), p0)
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def _pp(value: float) -> str:
    return f"{100 * value:+.1f} pp" if math.isfinite(value) else "unknown"


def fit_learner(
    x: pd.DataFrame,
    y: np.ndarray,
    treated: np.ndarray,
    valid: np.ndarray,
    config: UpliftConfig,
    seed: int,
    nthread: int,
    shared: xgb.Booster | None = None,
    tuned: Mapping[str, Any] | None = None,
) -> tuple[dict[str, xgb.Booster], float, float]:
    """The play's boosters (``shared``: the no-contact model fitted on more than this play's holdouts)
    and, for the offset learner, the play's average shift in log-odds (0 for the others). ``tuned``:
    XGBoost settings over the robust ones for the play's own boosters."""
    classify = {**_classifier_params(int(y.sum()), seed, nthread), **(tuned or {})}
    own = shared is None
    mu0 = (
        _fit_booster(x.loc[~treated], y[~treated], valid[~treated], classify, config, nthread)
        if shared is None
        else shared
    )
    boosters = {"mu0": mu0}
    treated_x = x.loc[treated]
    if config.learner == "offset":
        # A model shared by every play can be off for one play's customers (it learnt mostly from
        # customers on no list): the play's own randomised holdouts set its level (``baseline``), so the
        # shift is the contacted arm against them, not against the shared model's bias. The play's own
        # no-contact model is fitted on those holdouts already.
        margin = _margin(mu0, x)  # once, for the level, the average shift and the trees' offset
        baseline, average = average_odds(margin, y, treated, level=not own)
        # The contacted customers' churn with the no-contact log-odds as a fixed offset: the trees learn
        # only how the contact moves the log-odds (base_score 0.5 = a margin of 0 beside the offset).
        if config.shift_trees:  # without them: one odds ratio for the play (uplift.shift_trees)
            offset = baseline + margin[treated]
            params = {**classify, "base_score": 0.5}
            boosters["shift"] = _fit_booster(
                treated_x, y[treated], valid[treated], params, config, nthread, offset + average
            )
        return boosters, average, baseline
    boosters["mu1"] = _fit_booster(treated_x, y[treated], valid[treated], classify, config, nthread)
    if config.learner == "t":
        return boosters, 0.0, 0.0
    regress = {**classify, "objective": "reg:squarederror", "eval_metric": "rmse"}
    everyone = xgb.DMatrix(x, enable_categorical=True, missing=np.nan)
    p0, p1 = _predict(boosters["mu0"], everyone), _predict(boosters["mu1"], everyone)
    imputed = np.where(treated, p0 - y, y - p1)  # each customer's own effect, the missing arm imputed
    for name, arm in (("tau0", ~treated), ("tau1", treated)):
        boosters[name] = _fit_booster(x.loc[arm], imputed[arm], valid[arm], regress, config, nthread)
    return boosters, 0.0, 0.0


def average_odds(
    margin: np.ndarray, y: np.ndarray, treated: np.ndarray, level: bool = True
) -> tuple[float, float]:
    """A play's average effect as log-odds beside a no-contact model's ``margin`` per row: the level of
    its held out (``baseline``; 0 without ``level``) and the contacted arm's shift from it. Both with a
    standard normal prior, so that a handful of customers, or an arm without a churner, gives a finite
    and modest odds ratio rather than the infinite one maximum likelihood would; with hundreds of
    customers the prior hardly moves it."""
    baseline = offset_shift(margin[~treated], y[~treated], prior_sd=1.0) if level else 0.0
    shift = offset_shift(baseline + margin[treated], y[treated], prior_sd=1.0)
    return baseline, shift


def _margin(booster: xgb.Booster, x: pd.DataFrame) -> np.ndarray:
    return _predict(booster, xgb.DMatrix(x, enable_categorical=True, missing=np.nan), margin=True)


def offset_shift(offset: np.ndarray, y: np.ndarray, steps: int = 25, prior_sd: float | None = None) -> float:
    """The one log-odds shift that best explains ``y`` beside a fixed ``offset`` per row (maximum
    likelihood by Newton's method, or the posterior mode under a normal prior of ``prior_sd`` around
    no shift): the play's average effect on the log-odds scale."""
    shift = 0.0
    precision = 0.0 if prior_sd is None else 1.0 / prior_sd**2
    for _ in range(steps):
        p = _sigmoid(offset + shift)
        hessian = float((p * (1 - p)).sum()) + precision
        if hessian <= 0:
            break
        step = (float((y - p).sum()) - precision * shift) / hessian
        shift += float(np.clip(step, -1.0, 1.0))
        if abs(step) < 1e-8:
            break
    return shift


def _classifier_params(churners: int, seed: int, nthread: int) -> dict[str, Any]:
    """The churn model's robust settings (shallow, heavy-leaved, subsampled trees): an effect is a small
    difference of two probabilities, and deep trees would fit the noise of each."""
    return {
        **robust_params(churners),
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "tree_method": "hist",
        "seed": seed,
        "nthread": nthread,
    }


def _fit_booster(
    x: pd.DataFrame,
    target: np.ndarray,
    valid: np.ndarray,
    params: dict[str, Any],
    config: UpliftConfig,
    nthread: int,
    offset: np.ndarray | None = None,
) -> xgb.Booster:
    """Rounds by early stopping on the validation customers, then refitted on every row with as many
    rounds (scaled by the rows): no consumer can use trees the choice did not see. ``offset``: a fixed
    log-odds per row the trees add to."""
    rounds = _rounds(x, target, valid, params, config, nthread, offset)
    scaled = int(min(max(round(rounds * len(x) / max(int((~valid).sum()), 1)), 1), config.max_rounds))
    matrix = xgb.DMatrix(
        x, label=target, base_margin=offset, enable_categorical=True, missing=np.nan, nthread=nthread
    )
    booster = xgb.train(params, matrix, num_boost_round=scaled)
    booster.set_param({"nthread": nthread, "device": "cpu"})
    return booster


def _rounds(
    x: pd.DataFrame,
    target: np.ndarray,
    valid: np.ndarray,
    params: dict[str, Any],
    config: UpliftConfig,
    nthread: int,
    offset: np.ndarray | None = None,
) -> int:
    """Best number of rounds on the validation customers (a classifier needs both classes on each side;
    without them, or without validation rows, a quarter of ``max_rounds``)."""
    fallback = max(config.max_rounds // 4, 1)
    fit, check = ~valid, valid
    binary = params["objective"].startswith("binary")
    if not check.any() or not fit.any():
        return fallback
    if binary and (len(np.unique(target[fit])) < 2 or len(np.unique(target[check])) < 2):
        return fallback
    margins = (None, None) if offset is None else (offset[fit], offset[check])
    train = xgb.DMatrix(
        x.loc[fit], label=target[fit], base_margin=margins[0], enable_categorical=True, missing=np.nan
    )
    test = xgb.DMatrix(
        x.loc[check], label=target[check], base_margin=margins[1], enable_categorical=True, missing=np.nan
    )
    booster = xgb.train(
        params,
        train,
        num_boost_round=config.max_rounds,
        evals=[(test, "validation")],
        early_stopping_rounds=config.early_stopping_rounds,
        verbose_eval=False,
    )
    return int(booster.best_iteration) + 1
