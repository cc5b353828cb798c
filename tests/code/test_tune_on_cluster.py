"""Optuna trials in parallel on a real LocalCluster of 2 worker processes, on a real shared storage
(a SQLite file, and PostgreSQL), and the cluster's progress bars and dashboard line."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from churnml.config import Config, EngineConfig
from churnml.data.simulate import simulate
from churnml.engine import open_engine
from churnml.engine.cluster import DaskEngine, has_dashboard
from churnml.engine.tuning import shares
from churnml.features.training_set import build_training_set
from churnml.training.model import ChurnModel
from churnml.training.split import Split, pack_folds, split_by_time
from churnml.training.tune import (
    WORKER_ATTR,
    CVData,
    booster_params,
    cross_validate,
    fit_booster,
    scaled_rounds,
    tune,
)

pytest.importorskip("distributed")

PARTITIONS = "partitions: one per 50,000 customers, at least one per worker"
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


@pytest.fixture(scope="module")
def split() -> Split:
    business = simulate(600, 6, seed=3).to_dataset()
    training = build_training_set(business, Config().labels, Config().features)
    return split_by_time(training.frame, training.label_settings, Config().split)


@pytest.fixture(scope="module")
def specs() -> tuple[object, ...]:
    business = simulate(600, 6, seed=3).to_dataset()
    return tuple(build_training_set(business, Config().labels, Config().features).specs)


@pytest.fixture(scope="module")
def engine() -> Iterator[DaskEngine]:
    settings = EngineConfig(kind="dask", workers=2, memory_limit="2GiB", progress=False)
    with open_engine(settings) as opened:
        assert isinstance(opened, DaskEngine)
        yield opened


def _config(tmp_path: Path, **tune: object) -> Config:
    return Config.model_validate(
        {
            "seed": 7,
            "output": {"dir": str(tmp_path)},
            "tune": {"n_trials": 6, "startup_trials": 2, "progress_bar": False, **tune},
            "model": {"nthread": 1, "max_rounds": 300, "early_stopping_rounds": 20},
        }
    )


def test_packed_folds_rebuild_the_same_rows_in_the_same_order(split: Split) -> None:
    packed = pack_folds(split.folds)
    assert len(packed.rows) < sum(len(f.train) + len(f.validation) for f in split.folds)  # shared once
    for rebuilt, fold in zip(packed.unpack(), split.folds, strict=True):
        pd.testing.assert_frame_equal(rebuilt.train, fold.train, check_exact=True)
        pd.testing.assert_frame_equal(rebuilt.validation, fold.validation, check_exact=True)


def test_trial_budget_is_shared_by_the_workers() -> None:
    assert shares(6, 2) == [3, 3]
    assert shares(7, 3) == [3, 2, 2]
    assert shares(1, 2) == [1, 0]
    assert shares(None, 2) == [None, None]


def _tune_on_cluster(
    config: Config, split: Split, specs: tuple[object, ...], engine: DaskEngine
) -> tuple[optuna.Study, CVData, list[int]]:
    data = CVData.of(specs, split, config.model.nthread, config.tune.search_negatives, config.seed)
    seen: list[int] = []
    study, best = tune(config, data, "cluster-study", [lambda _, t: seen.append(t.number)], engine)
    trials = study.get_trials(deepcopy=False, states=FINISHED)
    assert len(trials) == config.tune.n_trials == len(study.trials)  # every trial recorded, none lost
    assert seen == sorted(t.number for t in study.trials)  # callbacks saw each new trial, in order
    assert {t.user_attrs[WORKER_ATTR] for t in trials} == {0, 1}  # both workers ran trials
    pids = {t.user_attrs["churnml.pid"] for t in trials}
    assert len(pids) == 2 and str(os.getpid()) not in pids  # in the workers' processes, not here

    # The best trial's params, cross-validated here, give the returned result exactly; the workers saw
    # the same folds (the trial's own score is the same number, searched on the whole small folds).
    params = booster_params(config.model, config.tune.metric, config.seed, study.best_trial.params)
    again = cross_validate(params, data, config.model)
    np.testing.assert_array_equal(again.margin, best.margin)
    assert again.best_iteration == best.best_iteration
    assert best.score == pytest.approx(study.best_value, rel=1e-9)
    return study, data, seen


def test_trials_run_in_parallel_on_the_workers_with_a_sqlite_file(
    split: Split, specs: tuple[object, ...], engine: DaskEngine, tmp_path: Path
) -> None:
    config = _config(tmp_path)
    study, data, _ = _tune_on_cluster(config, split, specs, engine)
    assert (tmp_path / config.name / "optuna.db").is_file()

    # The final booster from the best params is the same booster every time it is fitted.
    params = booster_params(config.model, config.tune.metric, config.seed, study.best_trial.params)
    best = cross_validate(params, data, config.model)
    rows = split.development
    rounds = scaled_rounds(best.best_iteration, data.train_rows, len(rows), config.model.max_rounds)
    untrained = ChurnModel.untrained(rows, list(specs))
    first, second = (fit_booster(untrained, params, rounds, rows, 1) for _ in range(2))
    assert first.booster.save_raw() == second.booster.save_raw()

    # The budget is the study's total: the same run again resumes it and has nothing left to do.
    resumed, _ = tune(config, data, "cluster-study", (), engine)
    assert len(resumed.trials) == config.tune.n_trials


def test_trials_run_in_parallel_on_the_workers_with_postgresql(
    split: Split,
    specs: tuple[object, ...],
    engine: DaskEngine,
    tmp_path: Path,
    postgres_database: Callable[[], str],
) -> None:
    config = _config(tmp_path, storage=postgres_database(), n_trials=4)
    _tune_on_cluster(config, split, specs, engine)
    assert not (tmp_path / config.name / "optuna.db").exists()


def test_progress_bars_show_and_switch_off(
    split: Split, engine: DaskEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = [split.development.iloc[:10], split.development.iloc[10:20]]
    shown = DaskEngine(engine.client, engine.config.model_copy(update={"progress": True}))
    assert shown.map(len, frames, name="counting") == [10, 10]
    out = capsys.readouterr().out
    assert "counting" in out and "2/2" in out
    assert engine.map(len, frames, name="counting") == [10, 10]  # progress=False
    assert capsys.readouterr().out == ""


def test_dashboard_address_is_printed(engine: DaskEngine, capsys: pytest.CaptureFixture[str]) -> None:
    """The line announced when a cluster starts, or when a running scheduler is connected to, holds the
    dashboard's address (a LocalCluster without bokeh says how to get one: its pages need it)."""
    address = engine.client.scheduler.address
    link = engine.client.dashboard_link
    assert link.startswith("http://") and link.endswith("/status")
    if has_dashboard():
        assert engine.describe().endswith(f"; dashboard {link}")
    else:
        assert engine.describe().endswith("; no dashboard (pip install bokeh)")
    settings = EngineConfig(kind="dask", scheduler=address, progress=False)
    with open_engine(settings, announce=print):
        pass
    out = capsys.readouterr().out
    assert out == f"engine: dask on {address}, 2 workers x 1 threads, {PARTITIONS}; dashboard {link}\n"
