"""Features pipeline: customer history → label times → point-in-time features → training set on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from churnml.config import Config
from churnml.data.dataset import Dataset
from churnml.data.load import dataset_from_frames, load_dataset
from churnml.data.simulate import simulate
from churnml.features.training_set import TrainingSet, build_training_set, write_training_set


@dataclass(frozen=True)
class FeaturesResult:
    dataset: Dataset
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
    """Where the data comes from (the simulator's settings, or the configured files), so a later run can
    tell whether it reads the same business; the end of the data is left out (it moves)."""
    if config.data.dir is None and not config.data.tables:
        return {"simulate": config.simulate.model_dump(mode="json")}
    tables = {name: source.path for name, source in sorted(config.data.tables.items())}
    return {"dir": config.data.dir, "tables": tables}


def training_set_dir(config: Config) -> Path:
    return Path(config.output.dir) / config.name / "training_set"


def run(config: Config, base_dir: Path | None = None) -> FeaturesResult:
    dataset = load_data(config, base_dir)
    training_set = build_training_set(dataset, config.labels, config.features)
    path = write_training_set(training_set, training_set_dir(config))
    return FeaturesResult(dataset=dataset, training_set=training_set, path=path)
