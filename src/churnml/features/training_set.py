"""Training sets: label times joined with point-in-time features, saved with everything that made them.

The Parquet file carries its own metadata (feature specifications and dtypes, label settings, data
fingerprint), so a model trained from it can validate inputs and explain itself later.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from churnml import __version__, io
from churnml.config import FeatureConfig, LabelConfig
from churnml.data.dataset import Dataset
from churnml.engine import Engine, LocalEngine, concat_in_order
from churnml.engine.sources import Partitions
from churnml.errors import ChurnmlError
from churnml.features import FeatureSpec, build_features, feature_catalogue
from churnml.features.labels import LabelTimes, cutoff_dates, label_settings, make_label_times

TRAINING_SET_FILE = "training_set.parquet"
LABEL_TIMES_FILE = "label_times.parquet"
SUMMARY_FILE = "training_set.json"


@dataclass(frozen=True)
class TrainingSet:
    """``frame``: customer_id, cutoff, label, then one column per feature spec, in catalogue order."""

    frame: pd.DataFrame
    specs: tuple[FeatureSpec, ...]
    label_settings: dict[str, Any]
    fingerprint: str

    @property
    def feature_names(self) -> list[str]:
        return [spec.name for spec in self.specs]

    @property
    def labeled(self) -> pd.DataFrame:
        return self.frame.loc[self.frame["label"].notna()]

    def metadata(self) -> dict[str, Any]:
        return _metadata(self.fingerprint, self.label_settings, self.specs, len(self.frame))

    def summary(self) -> pd.DataFrame:
        return LabelTimes(self.frame[["customer_id", "cutoff", "label"]], self.label_settings).summary()


def _metadata(
    fingerprint: str, settings: dict[str, Any], specs: Sequence[FeatureSpec], rows: int | None
) -> dict[str, Any]:
    """What a training set file carries about itself (``read_training_set`` reads it back)."""
    return {
        "churnml_version": __version__,
        "data_fingerprint": fingerprint,
        "labels": settings,
        "features": [spec.to_dict() for spec in specs],
        "rows": rows,
    }


def build_training_set(
    dataset: Dataset, labels: LabelConfig, features: FeatureConfig, engine: Engine | None = None
) -> TrainingSet:
    """Label every eligible (customer, cutoff) and compute its features from rows before the cutoff.

    What depends on the whole data (the cutoff schedule, which starts from the earliest activity; the
    catalogue, whose event types and category levels are counted over every customer) is settled here
    once; labels and features are per customer, so ``engine`` may build them on customer partitions
    (:func:`labeled_features`), and the rows come back in the label times' order: cutoff, customer.
    """
    cutoffs = cutoff_dates(dataset, labels.cutoffs)
    specs = tuple(feature_catalogue(dataset, features))
    engine = engine or LocalEngine()
    # The fingerprint (a hash of every row) runs beside the build: both are mostly numpy and Arrow
    # loops that release the GIL, so a second core hides it (0.6 s of 4 for 7 M events).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fingerprint") as pool:
        fingerprint = pool.submit(dataset.fingerprint)
        parts = engine.map(
            labeled_features, engine.split(dataset), labels, features, cutoffs, specs, name="training-set"
        )
        return TrainingSet(
            frame=concat_in_order(parts, ["cutoff", "customer_id"]),
            specs=specs,
            label_settings=label_settings(labels, cutoffs, dataset.end),
            fingerprint=fingerprint.result(),
        )


def build_training_set_on_workers(
    held: Partitions, labels: LabelConfig, features: FeatureConfig, engine: Engine
) -> TrainingSet:
    """:func:`build_training_set` of the data the workers read themselves (``churnml.engine.sources``):
    the schedule and the catalogue come from the partitions' merged summaries, the same as from the
    whole data, and only the training rows come back."""
    cutoffs, specs = _held_plan(held, labels, features)
    parts = engine.map(
        labeled_partition, held.parts, held, labels, features, cutoffs, specs, name="training-set"
    )
    return TrainingSet(
        frame=concat_in_order(parts, ["cutoff", "customer_id"]),
        specs=specs,
        label_settings=label_settings(labels, cutoffs, held.end),
        fingerprint=held.fingerprint,
    )


def _held_plan(
    held: Partitions, labels: LabelConfig, features: FeatureConfig
) -> tuple[list[pd.Timestamp], tuple[FeatureSpec, ...]]:
    """The cutoff schedule and the catalogue of data the workers hold, from the partitions' merged
    summaries (the same as from the whole data)."""
    return cutoff_dates(held.stand_in, labels.cutoffs), tuple(
        feature_catalogue(held.stand_in, features, held.kinds)
    )


@dataclass(frozen=True)
class _PartPlan:
    """What each partition's step needs to build its training rows (the schedule and catalogue of the
    data the workers hold) and to write them as ``part-<k>.parquet`` into ``folder``."""

    held: Partitions
    labels: LabelConfig
    features: FeatureConfig
    cutoffs: list[pd.Timestamp]
    specs: tuple[FeatureSpec, ...]
    settings: dict[str, Any]
    folder: Path | None = None

    @classmethod
    def of(cls, held: Partitions, labels: LabelConfig, features: FeatureConfig) -> _PartPlan:
        cutoffs, specs = _held_plan(held, labels, features)
        return cls(held, labels, features, cutoffs, specs, label_settings(labels, cutoffs, held.end))

    def rows(self, k: int) -> pd.DataFrame:
        """Partition ``k``'s training rows, written when the plan has a folder."""
        frame = labeled_partition(k, self.held, self.labels, self.features, self.cutoffs, self.specs)
        if self.folder is not None:
            _write_part(
                self.folder, k, frame, _metadata(self.held.fingerprint, self.settings, self.specs, None)
            )
        return frame


@dataclass(frozen=True)
class TrainingParts:
    """A training set left on the workers (out of core): one part per customer partition, each a future of
    the part's rows with the features as float32 (what XGBoost reads; half the memory), on the worker that
    built it. ``labels`` is the whole set's cutoff and label columns, gathered: enough to split it out of
    time (``churnml.training.split``) without the features. ``written``: the partitioned Parquet copy."""

    parts: list[Any]
    specs: tuple[FeatureSpec, ...]
    label_settings: dict[str, Any]
    fingerprint: str
    labels: pd.DataFrame
    written: Path | None = None

    @property
    def feature_names(self) -> list[str]:
        return [spec.name for spec in self.specs]


def keep_training_set_on_workers(
    held: Partitions,
    labels: LabelConfig,
    features: FeatureConfig,
    engine: Any,
    out_dir: str | Path | None = None,
) -> TrainingParts:
    """:func:`build_training_set_on_workers`, but the rows stay on the workers (``engine.keep``): the
    client holds the cutoff and label columns only. With ``out_dir`` each worker also writes its parts
    as ``part-<k>.parquet`` (full precision, with the training set's metadata), swapped in as one
    directory: the partitioned training set a cluster job reads back (``dd.read_parquet``)."""
    plan = _PartPlan.of(held, labels, features)
    with ExitStack() as stack:
        if out_dir is not None:
            plan = dataclasses.replace(plan, folder=stack.enter_context(io.atomic_dir(Path(out_dir))))
        parts = engine.keep(kept_partition, held.parts, plan, name="training-set")
        columns = engine.map(_label_columns, parts, name="labels")
    return TrainingParts(
        parts=parts,
        specs=plan.specs,
        label_settings=plan.settings,
        fingerprint=held.fingerprint,
        labels=pd.concat(columns, ignore_index=True),
        written=None if out_dir is None else Path(out_dir),
    )


def kept_partition(k: int, plan: _PartPlan) -> pd.DataFrame:
    """Partition ``k``'s training rows (written when the plan has a folder), with float32 features."""
    numbers = [spec.name for spec in plan.specs if spec.dtype == "float64"]
    return plan.rows(k).astype(dict.fromkeys(numbers, "float32"))


@dataclass(frozen=True)
class WrittenParts:
    """A training set the workers built and wrote per partition and keep nothing of (out of core):
    ``files`` (``part-<k>.parquet``, full precision, rows in (cutoff, customer) order, partitions without
    rows left out), the whole set's cutoff and label columns (``labels``, gathered: enough to split it
    out of time) and how many customers it has."""

    files: tuple[Path, ...]
    specs: tuple[FeatureSpec, ...]
    label_settings: dict[str, Any]
    fingerprint: str
    labels: pd.DataFrame
    customers: int


def write_training_set_on_workers(
    held: Partitions, labels: LabelConfig, features: FeatureConfig, engine: Any, out_dir: str | Path
) -> WrittenParts:
    """:func:`build_training_set_on_workers`, but each worker writes its parts to ``out_dir`` (swapped in
    as one directory, which the workers must reach: a LocalCluster's, or shared storage) and lets them
    go; only each part's cutoff and label columns and customer count come back. What
    ``churnml train`` reads again, part by part, when the client cannot hold the set."""
    plan = _PartPlan.of(held, labels, features)
    out_dir = Path(out_dir)
    with io.atomic_dir(out_dir) as folder:
        summaries = engine.map(
            written_partition, held.parts, dataclasses.replace(plan, folder=folder), name="training-set"
        )
    return WrittenParts(
        files=tuple(
            out_dir / f"part-{k:05d}.parquet" for k, (_, customers) in enumerate(summaries) if customers
        ),
        specs=plan.specs,
        label_settings=plan.settings,
        fingerprint=held.fingerprint,
        labels=pd.concat([columns for columns, _ in summaries], ignore_index=True),
        customers=sum(customers for _, customers in summaries),
    )


def written_partition(k: int, plan: _PartPlan) -> tuple[pd.DataFrame, int]:
    """Partition ``k``'s training rows written to the plan's folder: its cutoff and label columns and
    customer count (a part without customers is left out of ``WrittenParts.files``)."""
    frame = plan.rows(k)
    return frame[["cutoff", "label"]], int(frame["customer_id"].nunique())


def _write_part(folder: Path, k: int, frame: pd.DataFrame, metadata: dict[str, Any]) -> None:
    """Into the client's temp folder only: once the run failed and removed it, a task still running
    (cancelled, but a running task finishes) gets an error rather than making the folder again; a
    worker that cannot reach the folder at all is told so."""
    target = folder / f"part-{k:05d}.parquet"
    try:
        io.write_parquet(target, frame, metadata=metadata | {"rows": len(frame)}, make_parent=False)
    except (FileNotFoundError, PermissionError) as exc:
        raise ChurnmlError(
            f"a worker cannot write the training set to {folder.parent} ({exc}): the workers write it "
            "where the client's output.dir is, so on a remote cluster output.dir must be on storage they "
            "share"
        ) from None


def _label_columns(part: pd.DataFrame) -> pd.DataFrame:
    return part[["cutoff", "label"]]


def labeled_features(
    dataset: Dataset,
    labels: LabelConfig,
    features: FeatureConfig,
    cutoffs: list[pd.Timestamp],
    specs: Sequence[FeatureSpec],
) -> pd.DataFrame:
    """The training rows of ``dataset``'s customers (all of them, or one partition): label times at the
    given cutoffs joined with the given specs' features; customer_id, cutoff, label, then the features."""
    label_times = make_label_times(dataset, labels, cutoffs)
    built = build_features(dataset, label_times.frame[["customer_id", "cutoff"]], features, specs=specs)
    return pd.concat([label_times.frame.reset_index(drop=True), built[[spec.name for spec in specs]]], axis=1)


def labeled_partition(
    k: int,
    held: Partitions,
    labels: LabelConfig,
    features: FeatureConfig,
    cutoffs: list[pd.Timestamp],
    specs: Sequence[FeatureSpec],
) -> pd.DataFrame:
    """:func:`labeled_features` of partition ``k``, read by the worker that runs it."""
    return labeled_features(held.load(k), labels, features, cutoffs, specs)


def write_training_set(training_set: TrainingSet, out_dir: str | Path) -> Path:
    """Write the training set, its label times and a readable summary as one directory swap: a reader
    (or a killed run) never sees new label times beside an old training set."""
    out_dir = Path(out_dir)
    metadata = training_set.metadata()
    with io.atomic_dir(out_dir) as tmp:
        io.write_parquet(
            tmp / LABEL_TIMES_FILE,
            training_set.frame[["customer_id", "cutoff", "label"]],
            metadata={"labels": training_set.label_settings},
        )
        io.write_json(
            tmp / SUMMARY_FILE,
            {
                **{k: v for k, v in metadata.items() if k != "features"},
                "feature_names": training_set.feature_names,
                "per_cutoff": training_set.summary().to_dict(orient="records"),
            },
        )
        io.write_parquet(tmp / TRAINING_SET_FILE, training_set.frame, metadata=metadata)
    return out_dir / TRAINING_SET_FILE


def read_training_set(path: str | Path) -> TrainingSet:
    """Read a training set written by :func:`write_training_set` (a file or its directory), or the
    partitioned one the workers write (:func:`keep_training_set_on_workers`: its rows in the same
    order)."""
    path = Path(path)
    parts = sorted(path.glob("part-*.parquet")) if path.is_dir() else []
    if path.is_dir() and not (path / TRAINING_SET_FILE).exists() and parts:
        metadata = io.read_parquet_metadata(parts[0])
        frame = concat_in_order([pd.read_parquet(part) for part in parts], ["cutoff", "customer_id"])
    else:
        path = path / TRAINING_SET_FILE if path.is_dir() else path
        metadata = io.read_parquet_metadata(path)
        frame = pd.read_parquet(path)
    specs = tuple(FeatureSpec.from_dict(spec) for spec in metadata["features"])
    return TrainingSet(
        frame=frame, specs=specs, label_settings=metadata["labels"], fingerprint=metadata["data_fingerprint"]
    )
