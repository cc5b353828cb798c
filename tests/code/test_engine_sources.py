"""Out of core: with engine.kind=dask the workers read their own customers from the Parquet part files,
and the training set equals the local engine's (which loads every table here) bit for bit."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from churnml.config import Config, DataConfig
from churnml.data.dataset import Dataset
from churnml.data.load import load_dataset
from churnml.data.simulate import simulate_chunks, write_simulation_chunks
from churnml.engine import LocalEngine, sources
from churnml.engine.boosting import (
    keep_model_inputs,
    keep_rows,
    predict_parts,
    train_on_cluster,
    train_on_parts,
)
from churnml.engine.cluster import DaskEngine
from churnml.engine.partition import partition_of
from churnml.errors import ChurnmlError, DataValidationError
from churnml.features import FeatureSpec
from churnml.features.training_set import keep_training_set_on_workers
from churnml.pipelines import features, score
from churnml.risk import drift
from churnml.risk.population import score_with_context
from churnml.training.model import ChurnModel
from churnml.training.split import split_by_time
from churnml.training.tune import fit_booster

pytest.importorskip("distributed")

BLOCK = 120  # small blocks and chunks: the business spans several part files


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chunks = simulate_chunks(600, 6, seed=3, programme=True, chunk_customers=2 * BLOCK, block_customers=BLOCK)
    return write_simulation_chunks(chunks, tmp_path_factory.mktemp("ooc") / "sim")


def _config(data_dir: Path, tmp_path: Path, *overrides: str) -> Config:
    from churnml.config import load_config

    return load_config(None, [f"data.dir={data_dir}", f"output.dir={tmp_path}", *overrides])


def test_workers_read_their_partitions_and_build_the_local_training_set(
    data_dir: Path, engine: DaskEngine, tmp_path: Path
) -> None:
    assert len(list((data_dir / "events.parquet").iterdir())) == 3
    config = _config(data_dir, tmp_path)
    local = features.run(config, engine=None)
    on_workers = features.run(config, engine=engine)
    assert local.dataset is not None and on_workers.dataset is None  # never loaded in this process
    pd.testing.assert_frame_equal(on_workers.training_set.frame, local.training_set.frame, check_exact=True)
    assert on_workers.training_set.specs == local.training_set.specs
    assert on_workers.training_set.label_settings == local.training_set.label_settings
    assert on_workers.training_set.fingerprint == local.training_set.fingerprint
    assert local.training_set.frame["label"].notna().sum() > 1000
    # the written files too
    assert pq.read_metadata(on_workers.path).metadata == pq.read_metadata(local.path).metadata


def test_partitions_hold_the_loaders_rows_of_their_customers(data_dir: Path, engine: DaskEngine) -> None:
    config = _config(data_dir, Path("unused")).data
    paths = sources.table_paths(config, None)
    assert paths is not None
    held = sources.open_partitions(paths, config, engine)
    assert held is not None and held.count == 5
    whole = load_dataset(config)
    assert held.end == whole.end and held.fingerprint == whole.fingerprint()
    parts = [held.load(k) for k in held.parts]
    for name, frame in whole.tables.items():
        together = pd.concat([part.tables[name] for part in parts], ignore_index=True)
        keys = ["customer_id"] if name == "customers" else list(frame.columns)
        pd.testing.assert_frame_equal(
            together.sort_values(keys, kind="stable").reset_index(drop=True),
            frame.sort_values(keys, kind="stable").reset_index(drop=True),
            check_exact=True,
            obj=name,
        )


def test_a_configured_end_is_applied_on_the_workers(
    data_dir: Path, engine: DaskEngine, tmp_path: Path
) -> None:
    config = _config(data_dir, tmp_path, "data.end=2025-05-20")
    local = features.run(config, engine=None)
    on_workers = features.run(config, engine=engine)
    # rows after the end are dropped with warnings: the client loads the data to give the loader's own
    assert on_workers.dataset is not None and on_workers.dataset.warnings == local.dataset.warnings  # type: ignore[union-attr]
    pd.testing.assert_frame_equal(on_workers.training_set.frame, local.training_set.frame, check_exact=True)


def test_bad_data_gives_the_loaders_error(
    data_dir: Path, engine: DaskEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for table in data_dir.iterdir():
        if table.is_dir():
            (broken / table.name).symlink_to(table)
    customers = pd.read_parquet(data_dir / "customers.parquet")
    customers.loc[7, "customer_id"] = None
    (broken / "customers.parquet").unlink()
    customers.to_parquet(broken / "customers.parquet")
    config = _config(broken, tmp_path)
    with pytest.raises(DataValidationError) as local:
        features.run(config, engine=None)
    with (
        caplog.at_level(logging.INFO, logger="churnml.engine.sources"),
        pytest.raises(DataValidationError) as dask,
    ):
        features.run(config, engine=engine)
    assert str(dask.value) == str(local.value)


def test_stray_rows_give_the_loaders_error(data_dir: Path, engine: DaskEngine, tmp_path: Path) -> None:
    """One event a year after all other activity: the merged latest times find it, and the client's
    loader says so in its own words."""
    strayed = tmp_path / "strayed"
    strayed.mkdir()
    for table in data_dir.iterdir():
        if table.is_dir() and table.name != "events.parquet":
            (strayed / table.name).symlink_to(table)
    (strayed / "events.parquet").mkdir()
    for part in (data_dir / "events.parquet").iterdir():
        (strayed / "events.parquet" / part.name).symlink_to(part)
    stray = pd.read_parquet(next((data_dir / "events.parquet").iterdir())).iloc[:1].copy()
    stray["timestamp"] = load_dataset(DataConfig(dir=str(data_dir))).end + pd.Timedelta(days=400)
    stray.to_parquet(strayed / "events.parquet" / "part-99999.parquet")
    config = _config(strayed, tmp_path)
    paths = sources.table_paths(config.data, None)
    assert paths is not None and sources.open_partitions(paths, config.data, engine) is None
    with pytest.raises(DataValidationError) as local:
        features.run(config, engine=None)
    with pytest.raises(DataValidationError) as dask:
        features.run(config, engine=engine)
    assert "after all other activity" in str(local.value) and str(dask.value) == str(local.value)


def test_a_column_typed_by_its_nulls_is_read_on_the_client(
    data_dir: Path, engine: DaskEngine, tmp_path: Path
) -> None:
    """An extra customers column with one null: Arrow reads it as object in that customer's partition
    and bool in the others. The partitions disagree, so the client loads the data and the training set
    is the local engine's (the red-team case: per-partition types gave other features and fingerprint)."""
    typed = tmp_path / "typed"
    typed.mkdir()
    for table in data_dir.iterdir():
        if table.is_dir() and table.name != "customers.parquet":
            (typed / table.name).symlink_to(table)
    customers = pd.read_parquet(data_dir / "customers.parquet")
    vip = pd.Series([k % 3 == 0 for k in range(len(customers))], dtype=object)
    vip[11] = None
    customers["vip"] = vip
    customers.to_parquet(typed / "customers.parquet")
    config = _config(typed, tmp_path)
    paths = sources.table_paths(config.data, None)
    assert paths is not None and sources.open_partitions(paths, config.data, engine) is None
    local = features.run(config, engine=None)
    on_cluster = features.run(config, engine=engine)
    pd.testing.assert_frame_equal(on_cluster.training_set.frame, local.training_set.frame, check_exact=True)
    assert on_cluster.training_set.fingerprint == local.training_set.fingerprint
    assert any("vip" in spec.name for spec in local.training_set.specs)


def _partition_frames(held: sources.Partitions) -> list[dict[str, pd.DataFrame]]:
    return [dict(held.load(k).tables) for k in held.parts]


@pytest.mark.parametrize("layout", ["part files", "hive by event type", "small row groups"])
def test_staged_partitions_equal_the_scanned_ones(
    data_dir: Path, engine: DaskEngine, tmp_path: Path, layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One scan that splits the files by partition gives each partition the rows, order and types the
    scan of every file gives it, and the same summaries (end, fingerprint, catalogue); also when a file
    is split by several tasks (runs of row groups)."""
    source = data_dir
    if layout != "part files":
        source = tmp_path / "rewritten"
        source.mkdir()
        for table in data_dir.iterdir():
            if table.name != "events.parquet":
                (source / table.name).symlink_to(table)
        events = pd.read_parquet(data_dir / "events.parquet")
    if layout == "hive by event type":  # event_type comes from the folder names, not the files
        events.to_parquet(source / "events", partition_cols=["event_type"])
    if layout == "small row groups":  # one file, split by several tasks of 3 row groups each
        (source / "events.parquet").mkdir()
        pq.write_table(
            pa.Table.from_pandas(events), source / "events.parquet" / "all.parquet", row_group_size=997
        )
        monkeypatch.setattr(sources, "STAGE_TASK_ROWS", 3 * 997)
        assert (
            len({piece[1] for piece in sources._pieces("events", source / "events.parquet", DataConfig())})
            > 3
        )
    config = _config(source, tmp_path).data
    paths = sources.table_paths(config, None)
    assert paths is not None
    scanned = sources.open_partitions(paths, config, engine)
    staging = tmp_path / "staging"
    staged = sources.open_partitions(paths, config, engine, staging)
    assert scanned is not None and staged is not None and staged.staged == staging
    assert (staged.end, staged.fingerprint, staged.kinds) == (scanned.end, scanned.fingerprint, scanned.kinds)
    assert sorted(p.name for p in (staging / "events").iterdir()) == [f"part-{k:05d}" for k in range(5)]
    if layout == "small row groups":
        assert len(list((staging / "events" / "part-00000").iterdir())) > 3  # one file per task
    for by_stage, by_scan in zip(_partition_frames(staged), _partition_frames(scanned), strict=True):
        assert by_stage.keys() == by_scan.keys()
        for name in by_scan:
            pd.testing.assert_frame_equal(by_stage[name], by_scan[name], check_exact=True, obj=name)


def test_the_features_pipeline_stages_in_a_folder_it_removes(
    data_dir: Path, engine: DaskEngine, tmp_path: Path
) -> None:
    staging = tmp_path / "shared"
    config = _config(data_dir, tmp_path / "out", f"engine.staging_dir={staging}")
    local = features.run(config, engine=None)
    on_workers = features.run(config, engine=engine)
    assert on_workers.dataset is None  # read on the workers, not loaded here
    pd.testing.assert_frame_equal(on_workers.training_set.frame, local.training_set.frame, check_exact=True)
    assert staging.is_dir() and list(staging.iterdir()) == []  # the run's own subfolder is gone


def test_a_training_set_left_on_the_workers_trains_and_scores_as_the_local_one(
    data_dir: Path, engine: DaskEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of core end to end: the training set stays on the workers (and is written per partition), the
    booster is trained from it there, its test predictions come back as four columns, and the customers
    are scored from the partitions the workers read; each equals the local path's."""
    config = _config(data_dir, tmp_path)
    local = features.run(config, engine=None)
    assert local.dataset is not None
    paths = sources.table_paths(config.data, None)
    assert paths is not None
    held = sources.open_partitions(paths, config.data, engine)
    assert held is not None
    kept = keep_training_set_on_workers(held, config.labels, config.features, engine, tmp_path / "parts")
    frame = local.training_set.frame
    assert kept.specs == local.training_set.specs and kept.fingerprint == local.training_set.fingerprint
    assert kept.label_settings == local.training_set.label_settings
    written = sorted((tmp_path / "parts").glob("part-*.parquet"))
    assert len(written) == held.count == len(kept.parts)
    together = pd.concat([pd.read_parquet(p) for p in written], ignore_index=True)
    together = together.sort_values(["cutoff", "customer_id"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(together, frame, check_exact=True)
    pd.testing.assert_series_equal(
        kept.labels.groupby("cutoff")["label"].agg(["size", "count", "sum"]).stack(),
        frame.groupby("cutoff")["label"].agg(["size", "count", "sum"]).stack(),
    )

    split = split_by_time(frame, kept.label_settings, config.split)
    assert split_by_time(kept.labels, kept.label_settings, config.split).boundaries == split.boundaries
    development = [pd.Timestamp(c) for c in split.boundaries["train_cutoffs"]]
    test_cutoff = pd.Timestamp(split.boundaries["test_cutoff"])
    untrained = ChurnModel.untrained(split.development, kept.specs)
    params = {"objective": "binary:logistic", "max_depth": 4, "eta": 0.1, "seed": 0, "max_bin": 4096}
    from_client = train_on_cluster(engine, untrained, params, 30, split.development)
    inputs = keep_model_inputs(engine, untrained, kept.parts, development)
    on_workers = train_on_parts(engine, untrained, params, 30, inputs)
    model = untrained.with_booster(on_workers, best_iteration=29)
    expected = untrained.with_booster(from_client, best_iteration=29).predict_proba(split.test)
    predicted = predict_parts(engine, model, keep_rows(engine, kept.parts, [test_cutoff]), [test_cutoff])
    pd.testing.assert_frame_equal(predicted, predict_parts(engine, model, kept.parts, [test_cutoff]))
    pd.testing.assert_frame_equal(
        predicted[["customer_id", "cutoff", "label"]], split.test[["customer_id", "cutoff", "label"]]
    )
    np.testing.assert_allclose(predicted["probability"], expected, rtol=0, atol=1e-6)

    # Scoring, and what it reads beside the features (tenure, unseen categories, an uplift model's own
    # features): each partition read once on its worker, back in the scored order, as the client has it.
    as_of = held.end.normalize()
    extra = [spec for spec in kept.specs if spec.dtype == "category"][:2] + list(kept.specs[:3])
    _same_scores_and_context(engine, held, local.dataset, model, as_of, config, extra)

    # The scoring pipeline: the dask run reads the partitions (never the whole data) and lists the same.
    reference = drift.reference_profile(split.test, model.columns, predicted["probability"].to_numpy(), "t")
    model_dir = model.with_reference(reference.to_dict()).save(tmp_path / "model")
    lists = {}
    for kind in ("local", "dask"):
        settings = [
            f"engine.kind={kind}",
            "engine.workers=2",
            "engine.partitions=5",
            "scoring.log_to_mlflow=false",
        ]
        run_config = _config(data_dir, tmp_path / kind, *settings)
        if kind == "dask":
            with monkeypatch.context() as patched:
                patched.setattr(features, "load_data", _never)
                lists[kind] = score.run(run_config, model_uri=str(model_dir))
        else:
            lists[kind] = score.run(run_config, model_uri=str(model_dir))
    local_run, dask_run = lists["local"], lists["dask"]
    pd.testing.assert_frame_equal(dask_run.risk_list, local_run.risk_list, check_exact=False, rtol=1e-6)
    assert dask_run.summary["drift"] == local_run.summary["drift"]
    assert len(list((dask_run.out_dir / score.PARTITIONED_DIR).glob("part-*.parquet"))) == 5


def _never(*args: object, **kwargs: object) -> None:
    raise AssertionError("the data was loaded on the client")


def _small_model(frame: pd.DataFrame, specs: tuple[FeatureSpec, ...]) -> ChurnModel:
    import xgboost as xgb

    untrained = ChurnModel.untrained(frame, specs)
    x, y = untrained.xy(frame.loc[frame["label"].notna()])
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 2}, xgb.DMatrix(x, y, enable_categorical=True), 5
    )
    return untrained.with_booster(booster, best_iteration=4)


def _same_scores_and_context(
    engine: DaskEngine,
    held: sources.Partitions,
    dataset: Dataset,
    model: ChurnModel,
    as_of: pd.Timestamp,
    config: Config,
    extra: list[FeatureSpec],
) -> pd.DataFrame:
    """score_with_context of the partitions equals the local one's; returns the scored frame."""
    scored, probability, context = score_with_context(LocalEngine(), dataset, model, as_of, config, extra)
    scored_d, probability_d, context_d = score_with_context(engine, held, model, as_of, config, extra)
    pd.testing.assert_frame_equal(scored_d, scored, check_exact=True)
    np.testing.assert_allclose(probability_d, probability, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(context_d.tenure_days, context.tenure_days)
    assert context_d.unseen.keys() == context.unseen.keys() and context.unseen
    for name, flags in context.unseen.items():
        np.testing.assert_array_equal(context_d.unseen[name], flags)
    pd.testing.assert_frame_equal(context_d.extra, context.extra, check_exact=True)
    assert len(context.extra) == len(scored) and list(context.extra.columns) == [s.name for s in extra]
    return scored


def test_scoring_when_some_partitions_have_no_active_customer(
    data_dir: Path, engine: DaskEngine, tmp_path: Path
) -> None:
    """Early in the business few customers are active: partitions without any give empty pieces."""
    config = _config(data_dir, tmp_path)
    local = features.run(config, engine=None)
    assert local.dataset is not None
    ts = local.training_set
    paths = sources.table_paths(config.data, None)
    assert paths is not None
    held = sources.open_partitions(paths, config.data, engine)
    assert held is not None
    model = _small_model(ts.frame, ts.specs)
    as_of = local.dataset.customers["signup_at"].sort_values().iloc[8].normalize() + pd.Timedelta(days=1)
    extra = [s for s in ts.specs if s.dtype == "category"][:2] + list(ts.specs[:3])
    scored = _same_scores_and_context(engine, held, local.dataset, model, as_of, config, extra)
    assert 0 < len(set(partition_of(scored["customer_id"], held.count))) < held.count


@pytest.mark.parametrize(
    ("extra", "atol"),
    [
        ({"max_bin": 4096, "max_cat_to_onehot": 1}, 1e-6),
        ({"max_bin": 4096, "max_cat_to_onehot": 64}, 1e-6),
        # model.params may set tree_method (booster_params: the config's overrides last); approx trained
        # on dask before d19a427 (DaskDMatrix), its per-iteration sketch only close to the local one's
        ({"max_bin": 4096, "tree_method": "approx"}, None),
    ],
)
def test_train_on_cluster_honours_params_like_local(
    data_dir: Path, engine: DaskEngine, tmp_path: Path, extra: dict[str, Any], atol: float | None
) -> None:
    config = _config(data_dir, tmp_path)
    ts = features.run(config, engine=None).training_set
    rows = ts.frame.loc[ts.frame["label"].notna()].reset_index(drop=True)
    untrained = ChurnModel.untrained(rows, ts.specs)
    params = {"objective": "binary:logistic", "max_depth": 4, "eta": 0.1, "nthread": 1, "seed": 0, **extra}
    local = fit_booster(untrained, params, 20, rows, 1)
    dask = fit_booster(untrained, params, 20, rows, 1, engine)
    p_dask, p_local = dask.predict_proba(rows), local.predict_proba(rows)
    if atol is not None:
        np.testing.assert_allclose(p_dask, p_local, rtol=0, atol=atol)
    else:
        assert np.corrcoef(p_dask, p_local)[0, 1] > 0.99


def test_a_failed_kept_training_set_leaves_no_partial_folder_behind(
    data_dir: Path, engine: DaskEngine, tmp_path: Path
) -> None:
    """keep_training_set_on_workers(out_dir=...): one partition fails (its staged rows vanished); the
    previous directory stays, and no half-written temp sibling is left once the other tasks end."""
    config = _config(data_dir, tmp_path)
    paths = sources.table_paths(config.data, None)
    staging = tmp_path / "staging"
    staging.mkdir()
    held = sources.open_partitions(paths, config.data, engine, staging)
    assert held is not None and held.staged is not None
    out = tmp_path / "parts"
    out.mkdir()
    (out / "previous.txt").write_text("the previous training set")
    shutil.rmtree(held.staged / "customers" / "part-00000")  # partition 0 now fails at once
    with pytest.raises(AssertionError):
        keep_training_set_on_workers(held, config.labels, config.features, engine, out)
    time.sleep(10)  # a task already running on the other worker finishes (cancelled, its write refused)
    assert sorted(p.name for p in out.iterdir()) == ["previous.txt"]
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith(".parts")]
    assert left == [], (
        f"temp siblings left behind: {left} {[list(tmp_path.joinpath(n).iterdir()) for n in left]}"
    )


@pytest.mark.parametrize("kind", ["local", "dask"])
def test_an_as_of_after_the_data_creates_no_tracking_store(data_dir: Path, tmp_path: Path, kind: str) -> None:
    """`churnml score --as-of <after the end>`: refused with the as-of message before anything is set up
    (as before d19a427: the data and the as-of date were checked before the MLflow session opened)."""
    settings = [f"engine.kind={kind}", "engine.workers=2", "engine.partitions=5"]
    config = _config(data_dir, tmp_path / "out", *settings)
    with pytest.raises(ChurnmlError, match="is after the end of the data"):
        score.run(config, as_of="2030-01-01")
    created = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert created == [], created


def test_an_uplift_feature_named_tenure_days_does_not_clash_with_the_context_tenure(
    data_dir: Path, engine: DaskEngine, tmp_path: Path
) -> None:
    """The churn model leaves tenure_days out, the uplift model uses it (extra = [tenure_days]): the
    context's own tenure and the extra feature stay two things, on both paths."""
    config = _config(data_dir, tmp_path)
    local = features.run(config, engine=None)
    ts = local.training_set
    specs = tuple(s for s in ts.specs if s.name != "tenure_days")
    model = _small_model(ts.frame.drop(columns=["tenure_days"]), specs)
    extra = [s for s in ts.specs if s.name == "tenure_days"]
    paths = sources.table_paths(config.data, None)
    assert paths is not None and local.dataset is not None and extra
    held = sources.open_partitions(paths, config.data, engine)
    assert held is not None
    as_of = held.end.normalize()
    for data, on in ((local.dataset, LocalEngine()), (held, engine)):
        frame, _, context = score_with_context(on, data, model, as_of, config, extra)
        assert context.tenure_days.shape == (len(frame),)
        assert list(context.extra.columns) == ["tenure_days"]
        np.testing.assert_allclose(context.extra["tenure_days"], context.tenure_days, rtol=0, atol=1.0)


def test_training_on_a_customer_sample_leaves_the_training_set_on_the_workers(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``churnml train`` with ``split.cv_customers`` on a Dask engine reading Parquet never gathers the
    training set: the workers keep it (and write it per partition), the client cross-validates the
    sampled customers' rows and tests every customer of the test cutoff, and the boosters are fitted on
    every row by the workers. Same split, same cross-validation and, within float tolerance, the same
    models and test figures as the local engine, which holds every row."""
    from churnml.features.training_set import read_training_set
    from churnml.pipelines import train

    settings = [
        "split.cv_customers=250",
        "model.candidates=[xgboost_robust]",  # the regression is fitted on the sample alone
        # no row or column sampling (the workers draw their own) and fine bins (the sketch is distributed)
        "model.params={subsample: 1.0, colsample_bytree: 1.0, max_bin: 4096}",
        "tracking.register_model=false",
    ]
    results = {}
    for kind in ("local", "dask"):
        run_config = _config(
            data_dir,
            tmp_path / kind,
            f"engine.kind={kind}",
            "engine.workers=2",
            "engine.partitions=5",
            *settings,
        )
        with monkeypatch.context() as patched:
            if kind == "dask":
                # no training set built in, or gathered to, the client
                patched.setattr(features, "run", _never)
                patched.setattr(features, "load_data", _never)
            results[kind] = train.run(run_config)
    local, dask = results["local"], results["dask"]
    bounds = dask.split.boundaries
    assert bounds == local.split.boundaries
    assert 150 <= bounds["cross_validation"]["customers"] <= 350 < 600
    assert len(dask.split.test) == bounds["test_rows"] and dask.split.test["customer_id"].is_unique
    pd.testing.assert_frame_equal(dask.split.out_of_fold, local.split.out_of_fold, check_exact=True)
    pd.testing.assert_frame_equal(dask.split.test, local.split.test, check_exact=True)
    for mine, theirs in zip(dask.candidates, local.candidates, strict=True):
        assert mine.name == theirs.name
        np.testing.assert_array_equal(mine.margin, theirs.margin)  # the same rows, the same folds
    for name, figures in local.candidate_tests.items():
        assert dask.candidate_tests[name] == pytest.approx(figures, abs=1e-5)
    assert dask.model.info["candidate"] == local.model.info["candidate"]
    np.testing.assert_allclose(
        dask.evaluation.model.probability, local.evaluation.model.probability, rtol=0, atol=1e-5
    )
    test = local.split.test
    np.testing.assert_allclose(
        dask.model.predict_proba(test), local.model.predict_proba(test), rtol=0, atol=1e-5
    )
    for name in ("logreg", "recency"):  # the baselines, fitted on the sample's rows
        mine, theirs = dask.evaluation.reports[name].metrics, local.evaluation.reports[name].metrics
        assert mine == pytest.approx(theirs, rel=1e-9, abs=1e-12)
    assert dask.candidate_tests["xgboost_robust"]["roc_auc"] > 0.6
    # The booster saw every row: the evaluated one every development row, the shipped one every labeled.
    assert dask.model.info["candidate"] == "xgboost_robust"
    assert dask.evaluated.info["fit_rows"] == bounds["train_rows"]
    assert dask.model.info["fit_rows"] == bounds["labeled_rows"] > bounds["cross_validation"]["rows"]
    assert local.model.info["fit_rows"] == bounds["labeled_rows"]
    # The training set the workers wrote is the local one, row for row.
    written = read_training_set(features.training_set_dir(_config(data_dir, tmp_path / "dask")))
    expected = read_training_set(features.training_set_dir(_config(data_dir, tmp_path / "local")))
    pd.testing.assert_frame_equal(written.frame, expected.frame, check_exact=True)
    assert written.specs == expected.specs and written.fingerprint == expected.fingerprint
