"""Out-of-time split: rolling-origin cross-validation folds before a test cutoff, purged label windows.

A label at cutoff ``c`` looks at ``[c, c + horizon + grace)``. A row whose label window reaches past a
later cutoff has seen that cutoff's future, so it is purged from whatever is fitted for that cutoff.

- **test**: the latest fully labeled cutoff (or ``split.test_cutoff``), untouched until the end.
- **development**: every labeled cutoff whose label window ends by the test cutoff. The model whose test
  figures are reported (and compared with the champion) is fitted on these rows.
- **folds** (``split.folds``, rolling origin): each of the last ``k`` development cutoffs is the
  validation cutoff of one fold, whose training rows are the development cutoffs with their label window
  complete by it. Tuning, early stopping, the choice of model and calibration read the *pooled*
  out-of-fold predictions of all folds: ``k`` cutoffs of churners decide, not half of one.
- **labeled**: every fully labeled cutoff, the test cutoff included; the shipped model is refitted on
  them once the test is done (``model.refit_on: all``).

The same customer may appear at several cutoffs: that is how the model is used, scoring existing
customers with what is known about them at each cutoff.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnml.config import SplitConfig
from churnml.errors import ChurnmlError


@dataclass(frozen=True)
class Fold:
    """One rolling-origin fold: training rows whose labels were complete by the validation cutoff."""

    train: pd.DataFrame
    validation: pd.DataFrame


@dataclass(frozen=True)
class Split:
    """Row subsets of a training frame (same columns), plus the boundaries that made them."""

    folds: tuple[Fold, ...]
    development: pd.DataFrame
    test: pd.DataFrame
    labeled: pd.DataFrame
    boundaries: dict[str, Any]

    def fit_rows(self, refit_on: str) -> pd.DataFrame:
        """Rows of the shipped model: every labeled cutoff (``all``) or the development cutoffs."""
        return self.labeled if refit_on == "all" else self.development

    @cached_property
    def out_of_fold(self) -> pd.DataFrame:
        """The folds' validation rows in fold order: the rows of pooled out-of-fold predictions."""
        return pd.concat([fold.validation for fold in self.folds], ignore_index=True)

    def params(self) -> dict[str, str]:
        """Boundaries flattened for logging as MLflow params."""
        return {
            f"split.{k}": ",".join(map(str, v)) if isinstance(v, list) else str(v)
            for k, v in self.boundaries.items()
            if not isinstance(v, dict) and k != "folds"
        }


@dataclass(frozen=True)
class PackedFolds:
    """Folds without repeated rows, to send elsewhere (a cluster worker's search): rolling-origin folds
    share most of their training cutoffs, so each cutoff's rows are held once (``rows``) and each fold is
    positions in them, from which :meth:`unpack` rebuilds the same rows in the same order."""

    rows: pd.DataFrame
    train: tuple[np.ndarray, ...]
    validation: tuple[np.ndarray, ...]

    def unpack(self) -> tuple[Fold, ...]:
        def take(positions: np.ndarray) -> pd.DataFrame:
            return self.rows.iloc[positions].reset_index(drop=True)

        return tuple(Fold(take(t), take(v)) for t, v in zip(self.train, self.validation, strict=True))


def pack_folds(folds: tuple[Fold, ...]) -> PackedFolds:
    """The folds as :class:`PackedFolds`. A fold's rows of one cutoff are that cutoff's rows of the
    training frame in the frame's order (``_rows``), the same in every fold: a row's position is its
    cutoff's offset plus its rank among its cutoff's rows in the fold."""
    blocks: dict[pd.Timestamp, pd.DataFrame] = {}
    for fold in folds:
        for part in (fold.train, fold.validation):
            for _, block in part.groupby("cutoff", sort=True):
                blocks.setdefault(pd.Timestamp(block["cutoff"].iloc[0]), block)
    cutoffs = sorted(blocks)
    sizes = np.array([len(blocks[c]) for c in cutoffs], dtype=np.int64)
    offsets = pd.Series(np.concatenate([[0], np.cumsum(sizes)[:-1]]), index=pd.DatetimeIndex(cutoffs))

    def positions(part: pd.DataFrame) -> np.ndarray:
        rank = part.groupby("cutoff", sort=False).cumcount().to_numpy(dtype=np.int64)
        return offsets.reindex(pd.DatetimeIndex(part["cutoff"])).to_numpy(dtype=np.int64) + rank

    rows = pd.concat([blocks[c] for c in cutoffs], ignore_index=True)
    return PackedFolds(
        rows=rows,
        train=tuple(positions(f.train) for f in folds),
        validation=tuple(positions(f.validation) for f in folds),
    )


def label_window_days(label_settings: dict[str, Any]) -> int:
    """How many days after a cutoff its label looks at (horizon plus the renewal grace period)."""
    return int(label_settings["horizon_days"]) + int(label_settings.get("grace_days") or 0)


def customer_fraction(customer_ids: pd.Series, seed: int) -> np.ndarray:
    """A stable pseudo-random number in [0, 1) per customer: same id and seed, same number, any row order."""
    key = f"churnml{seed:09d}"[-16:].rjust(16, "0")
    hashed = pd.util.hash_array(customer_ids.astype(str).to_numpy(dtype=object), hash_key=key)
    return (hashed >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def fully_labeled_cutoffs(frame: pd.DataFrame) -> list[pd.Timestamp]:
    """Cutoffs with at least one row whose every row has an observed label."""
    per_cutoff = frame.groupby("cutoff", sort=True)["label"].agg(["size", "count"])
    return [
        pd.Timestamp(c)
        for c in per_cutoff.index[(per_cutoff["count"] == per_cutoff["size"]) & (per_cutoff["size"] > 0)]
    ]


def _dates(cutoffs) -> list[str]:
    return [pd.Timestamp(c).date().isoformat() for c in cutoffs]


def _eligible(cutoffs: list[pd.Timestamp], by: pd.Timestamp, window: pd.Timedelta) -> list[pd.Timestamp]:
    """Cutoffs before ``by`` whose label window ends by it."""
    return [c for c in cutoffs if c < by and c + window <= by]


def _rows(frame: pd.DataFrame, cutoffs: list[pd.Timestamp]) -> pd.DataFrame:
    return frame.loc[frame["cutoff"].isin(cutoffs)].reset_index(drop=True)


def split_by_time(frame: pd.DataFrame, label_settings: dict[str, Any], config: SplitConfig) -> Split:
    """Split a training frame (customer_id, cutoff, label, features...) out of time; see the module doc."""
    labeled_cutoffs = fully_labeled_cutoffs(frame)
    if not labeled_cutoffs:
        raise ChurnmlError("the training set has no fully labeled cutoff: nothing to test on")
    if config.test_cutoff is None:
        test_cutoff = labeled_cutoffs[-1]
    else:
        test_cutoff = pd.Timestamp(config.test_cutoff)
        if test_cutoff not in labeled_cutoffs:
            raise ChurnmlError(
                f"split.test_cutoff={config.test_cutoff} is not a fully labeled cutoff of the training set; "
                f"labeled cutoffs: {', '.join(_dates(labeled_cutoffs))}"
            )
    window = pd.Timedelta(days=label_window_days(label_settings))
    keep = config.train_cutoffs or 0
    recent = (lambda cs: cs[-keep:]) if keep else (lambda cs: cs)
    # Labels of development cutoffs must be complete before the test cutoff: its future stays unseen.
    development = _eligible(labeled_cutoffs, test_cutoff, window)
    validation_cutoffs = development[-config.folds :]
    folds = [(recent(_eligible(development, v, window)), v) for v in validation_cutoffs]
    if len(development) < config.folds + 1:
        raise ChurnmlError(
            f"split.folds={config.folds} needs {config.folds + 1} labeled cutoffs whose label window "
            f"({window.days} days) ends by the test cutoff {test_cutoff.date()} (one to train on before "
            f"the first validation cutoff), found {len(development)} "
            f"({', '.join(_dates(development)) or 'none'}): simulate/collect more months, add cutoffs or "
            "lower split.folds"
        )
    if not folds[0][0]:
        raise ChurnmlError(
            f"the first fold's validation cutoff {validation_cutoffs[0].date()} has no earlier cutoff whose "
            f"label window ({window.days} days) ends by it, so nothing to train on: add earlier cutoffs or "
            "lower split.folds"
        )
    development = recent(development)
    labeled = recent([c for c in labeled_cutoffs if c <= test_cutoff])
    used = set(development) | {test_cutoff}
    gap = [c for c in labeled_cutoffs if development[0] <= c < test_cutoff and c not in used]

    fold_rows = tuple(Fold(_rows(frame, train), _rows(frame, [v])) for train, v in folds)
    for number, fold in enumerate(fold_rows, 1):
        for name, part in (("training", fold.train), ("validation", fold.validation)):
            if part["label"].nunique() < 2:
                raise ChurnmlError(
                    f"cross-validation fold {number} ({folds[number - 1][1].date()}): its {name} rows "
                    f"({len(part)}) do not hold both labels: more customers or cutoffs are needed"
                )
    development_rows = _rows(frame, development)
    test = frame.loc[frame["cutoff"] == test_cutoff].reset_index(drop=True)
    if test["label"].nunique() < 2:
        raise ChurnmlError(
            f"the test cutoff {test_cutoff.date()} ({len(test)} rows) does not hold both labels, so no model "
            "can be judged on it: choose another split.test_cutoff or collect more customers"
        )
    labeled_rows = _rows(frame, labeled)
    boundaries = {
        "label_window_days": window.days,
        "train_cutoffs": _dates(development),
        "validation_cutoffs": _dates(validation_cutoffs),
        "folds": [
            {"train_cutoffs": _dates(train), "validation_cutoff": v.date().isoformat()} for train, v in folds
        ],
        "test_cutoff": test_cutoff.date().isoformat(),
        "purged_cutoffs": _dates(gap),
        "labeled_cutoffs": _dates(labeled),
        "train_rows": len(development_rows),
        "validation_rows": sum(len(f.validation) for f in fold_rows),
        "validation_churners": int(sum(f.validation["label"].sum() for f in fold_rows)),
        "test_rows": len(test),
        "labeled_rows": len(labeled_rows),
        "train_churn_rate": round(float(development_rows["label"].mean()), 5),
        "test_churn_rate": round(float(test["label"].mean()), 5),
    }
    return Split(
        folds=fold_rows, development=development_rows, test=test, labeled=labeled_rows, boundaries=boundaries
    )


# ---------------------------------------------------------------------------------------------------
# Cross-validation on a sample of customers (``split.cv_customers``).

CV_SAMPLE_SEED = 2  # added to the seed: seed itself and seed + 1 already draw other customer samples


def sample_share(customers: int, wanted: int | None) -> float:
    """The share of customers to cross-validate on: about ``wanted`` of ``customers`` (None: all)."""
    if wanted is None or customers <= wanted:
        return 1.0
    return wanted / customers


def in_sample(customer_ids: pd.Series, share: float, seed: int) -> np.ndarray:
    """Whether each row's customer is in the cross-validation sample: a hash of the id and seed, so any
    part of the data (a worker's partition) draws the same customers without seeing the others."""
    if share >= 1.0:
        return np.ones(len(customer_ids), dtype=bool)
    return customer_fraction(customer_ids, seed + CV_SAMPLE_SEED) < share


def cross_validation_rows(
    frame: pd.DataFrame, share: float, seed: int, test_cutoff: pd.Timestamp
) -> pd.DataFrame:
    """``frame``'s rows of the sampled customers, and every row of the test cutoff (the test is never
    sampled): what the client holds when the boosters' rows stay elsewhere."""
    keep = in_sample(frame["customer_id"], share, seed) | (frame["cutoff"] == test_cutoff).to_numpy()
    return frame.loc[keep].reset_index(drop=True)


def cross_validation_part(path: Path, share: float, seed: int, test_cutoff: pd.Timestamp) -> pd.DataFrame:
    """:func:`cross_validation_rows` of a training-set part file, read where it runs (a worker)."""
    return cross_validation_rows(pd.read_parquet(path), share, seed, test_cutoff)


def sampled_split(
    frame: pd.DataFrame,
    full: dict[str, Any],
    label_settings: dict[str, Any],
    config: SplitConfig,
    share: float,
    seed: int,
) -> Split:
    """The split of ``frame`` (:func:`cross_validation_rows` of the training set) whose folds,
    development and labeled rows are the sampled customers' and whose test is every customer of the
    test cutoff; ``full`` are the whole training set's boundaries, which it keeps beside the sample's
    own validation counts and size. The sample must reach every cutoff the whole set's split uses."""
    test_cutoff = pd.Timestamp(full["test_cutoff"])
    hint = f"the cross-validation sample (split.cv_customers={config.cv_customers}) is too small"
    try:
        split = split_by_time(
            frame, label_settings, config.model_copy(update={"test_cutoff": test_cutoff.date()})
        )
    except ChurnmlError as exc:
        raise ChurnmlError(f"{hint}: {exc}") from None
    mine = split.boundaries
    for key in ("train_cutoffs", "validation_cutoffs", "folds", "labeled_cutoffs"):
        if mine[key] != full[key]:
            raise ChurnmlError(
                f"{hint}: its {key.replace('_', ' ')} are {mine[key]}, the whole training set's {full[key]}"
            )
    labeled = split.labeled.loc[in_sample(split.labeled["customer_id"], share, seed)].reset_index(drop=True)
    boundaries = {
        **full,
        "validation_rows": mine["validation_rows"],
        "validation_churners": mine["validation_churners"],
        "cross_validation": {
            "share": round(share, 6),
            "customers": int(labeled["customer_id"].nunique()),
            "rows": len(labeled),
        },
    }
    return Split(split.folds, split.development, split.test, labeled, boundaries)
