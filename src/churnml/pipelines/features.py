"""Features pipeline: customer history → label times → point-in-time features → training set on disk."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from churnml.config import Config
from churnml.data import database
from churnml.data.dataset import Dataset
from churnml.data.load import dataset_from_frames, load_dataset
from churnml.data.simulate import simulate
from churnml.engine import Engine, open_engine, sources
from churnml.features.training_set import (
    TrainingSet,
    build_training_set,
    build_training_set_on_workers,
    write_training_set,
)
from churnml.redact import mask_url


@dataclass(frozen=True)
class FeaturesResult:
    dataset: Dataset | None  # None when the workers read the data themselves (never in this process)
    training_set: TrainingSet
    path: Path


def load_data(config: Config, base_dir: Path | None = None) -> Dataset:
    """The configured data, or the bundled simulator's business when no data is configured."""
    if config.data.dir is None and not config.data.tables:
        sim = config.simulate
        simulated = simulate(
            sim.customers,
            sim.months,
            sim.seed,
            sim.start,
            signal=sim.signal,
            programme=sim.programme,
            exploration=sim.exploration if sim.programme else 0.0,
        )
        if config.data.end is None:
            return simulated.to_dataset()
        return dataset_from_frames(simulated.tables, end=config.data.end)  # the business as it was then
    return load_dataset(config.data, base_dir=base_dir)


def data_source(config: Config) -> dict[str, Any]:
    """Where the data comes from (the simulator's settings, or the configured files and databases), so a
    later run can tell whether it reads the same business; the end of the data is left out (it moves).
    Database URLs are recorded as configured (``${VAR}`` unexpanded), with any password masked."""
    if config.data.dir is None and not config.data.tables:
        return {"simulate": config.simulate.model_dump(mode="json")}
    tables: dict[str, Any] = {}
    for name, source in sorted(config.data.tables.items()):
        if not source.in_database:
            tables[name] = source.path
            continue
        url = source.url or config.data.url or f"${{{database.DATABASE_URL_ENV}}}"
        query = {"table": source.table} if source.table is not None else {"sql": source.sql}
        tables[name] = {**query, "url": mask_url(url)}
    return {"dir": config.data.dir, "tables": tables}


def read_on_workers(
    config: Config, base_dir: Path | None, engine: Engine, stack: ExitStack
) -> sources.Partitions | None:
    """On a Dask engine, Parquet data read by the workers (out of core), split by partition in a staging
    folder that ``stack`` removes; None: load it here."""
    if engine.kind != "dask":
        return None
    paths = sources.table_paths(config.data, base_dir)
    if paths is None:
        return None
    staging = sources.staging_folder(config.engine, stack)
    return sources.open_partitions(paths, config.data, engine, staging)


def training_set_dir(config: Config) -> Path:
    return Path(config.output.dir) / config.name / "training_set"


def run(
    config: Config,
    base_dir: Path | None = None,
    announce: Callable[[str], None] | None = None,
    engine: Engine | None = None,
    on_workers: bool = True,
) -> FeaturesResult:
    """Load, build and write the training set: on ``engine`` when a caller holds one open, else on
    ``config.engine`` opened for this run (``announce`` hears where). ``on_workers=False``: load the
    data here even where the workers could read it (a caller whose attempt came back empty)."""
    dataset = None
    with ExitStack() as stack:
        if engine is None:
            engine = stack.enter_context(open_engine(config.engine, config.model.nthread, announce))
        held = read_on_workers(config, base_dir, engine, stack) if on_workers else None
        if held is not None:
            training_set = build_training_set_on_workers(held, config.labels, config.features, engine)
        else:
            dataset = load_data(config, base_dir)
            training_set = build_training_set(dataset, config.labels, config.features, engine)
    path = write_training_set(training_set, training_set_dir(config))
    return FeaturesResult(dataset=dataset, training_set=training_set, path=path)
