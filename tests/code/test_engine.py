"""The Dask engine on a real LocalCluster of 2 worker processes gives the local engine's results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.metrics import roc_auc_score

from churnml.config import Config, load_config
from churnml.data.dataset import Dataset
from churnml.data.simulate import simulate
from churnml.engine import LocalEngine, open_engine
from churnml.engine.cluster import DaskEngine
from churnml.engine.partition import partition_count, partition_of, split_dataset
from churnml.errors import ConfigError
from churnml.features.training_set import build_training_set
from churnml.pipelines import score
from churnml.risk.drivers import contributions_of
from churnml.risk.explain import contributions
from churnml.risk.population import score_customers
from churnml.training.model import ChurnModel, load_model
from churnml.training.tune import fit_booster

pytest.importorskip("distributed")

CONFIG = Config()


@pytest.fixture(scope="module")
def business() -> Dataset:
    return simulate(600, 6, seed=3, programme=True).to_dataset()


def _with_partitions(engine: DaskEngine, partitions: int) -> DaskEngine:
    return DaskEngine(engine.client, engine.config.model_copy(update={"partitions": partitions}))


def test_partition_of_is_a_stable_hash_of_the_id_text() -> None:
    ids = ["C00001", "C00002", "C00003", "abc", "7"]
    # Fixed values: a partition must not change between processes, runs or releases of churnml.
    assert partition_of(ids, 4).tolist() == partition_of(pd.Series(ids, dtype="str"), 4).tolist()
    assert partition_of(ids, 4).tolist() == partition_of(np.array(ids, dtype=object), 4).tolist()
    assert partition_of(ids[::-1], 4).tolist() == partition_of(ids, 4).tolist()[::-1]
    assert partition_of([7], 4).tolist() == partition_of(["7"], 4).tolist()
    assert partition_of(ids, 4).tolist() == [1, 0, 1, 0, 0]


def test_partition_count_follows_customers_and_workers() -> None:
    assert partition_count(600, 2, None, 50_000) == 2
    assert partition_count(120_000, 2, None, 50_000) == 3
    assert partition_count(120_000, 2, 7, 50_000) == 7


def test_split_dataset_keeps_every_row_with_its_customer(business: Dataset) -> None:
    parts = split_dataset(business, 3)
    for name, frame in business.tables.items():
        assert sum(len(p.tables[name]) for p in parts) == len(frame)
        for k, part in enumerate(parts):
            assert (partition_of(part.tables[name]["customer_id"], 3) == k).all()
            assert list(part.tables[name].columns) == list(frame.columns)
            assert part.tables[name].dtypes.equals(frame.dtypes)
    assert all(p.end == business.end for p in parts)


def test_training_set_on_dask_equals_local_bit_for_bit(business: Dataset, engine: DaskEngine) -> None:
    local = build_training_set(business, CONFIG.labels, CONFIG.features)
    distributed = build_training_set(business, CONFIG.labels, CONFIG.features, engine)
    pd.testing.assert_frame_equal(distributed.frame, local.frame, check_exact=True)
    assert distributed.specs == local.specs
    assert distributed.label_settings == local.label_settings
    assert distributed.fingerprint == local.fingerprint
    assert local.frame["label"].notna().sum() > 1000 and local.frame["label"].sum() > 20
    memory = engine.worker_memory()  # each worker's own peak (not the client's, which spawned it)
    assert len(memory) == 2
    assert all(50 * 2**20 < peak < limit == 2 * 2**30 for peak, limit in memory.values())


def test_partitions_without_some_table_or_any_customer(business: Dataset, engine: DaskEngine) -> None:
    """Tickets only in partition 0 of 3 (the others have an empty tickets table); then a 3-customer
    business in 8 partitions (most have no customer at all). The catalogue and the cutoffs are the whole
    data's, so the partitions still build the same columns and rows."""
    owners = partition_of(business.customers["customer_id"], 3) == 0
    keep = set(business.customers["customer_id"][owners])
    tickets = business.tables["tickets"]
    tables = dict(
        business.tables, tickets=tickets.loc[tickets["customer_id"].isin(keep)].reset_index(drop=True)
    )
    few_tickets = Dataset(tables=tables, end=business.end)
    three = set(business.customers["customer_id"][:3])
    tiny = Dataset(
        tables={
            n: f.loc[f["customer_id"].isin(three)].reset_index(drop=True) for n, f in business.tables.items()
        },
        end=business.end,
    )
    for dataset, partitions in ((few_tickets, 3), (tiny, 8)):
        local = build_training_set(dataset, CONFIG.labels, CONFIG.features)
        distributed = build_training_set(
            dataset, CONFIG.labels, CONFIG.features, _with_partitions(engine, partitions)
        )
        pd.testing.assert_frame_equal(distributed.frame, local.frame, check_exact=True)
        assert distributed.specs == local.specs
    assert local.frame["customer_id"].nunique() == 3


def test_engine_is_configured_like_any_other_setting() -> None:
    config = load_config(None, ["engine.kind=dask", "engine.workers=4", "engine.memory_limit=3GiB"])
    assert (config.engine.kind, config.engine.workers, config.engine.memory_limit) == ("dask", 4, "3GiB")
    with pytest.raises(ConfigError, match=r"engine\.kind"):
        load_config(None, ["engine.kind=spark"])
    with pytest.raises(ConfigError, match=r"engine\.memory_limit.*'lots' is not an amount of memory"):
        load_config(None, ["engine.memory_limit=lots"])
    assert load_config(None, ["engine.memory_limit=1.5 GB"]).engine.memory_limit == "1.5 GB"
    with open_engine(Config().engine) as local:
        assert isinstance(local, LocalEngine)


def test_the_workers_peak_memory_is_told_against_their_limits(engine: DaskEngine) -> None:
    line = engine.describe_memory()
    peaks = [float(p.split(" of ")[0]) for p in line.split(": ", 1)[1].split(", ")]
    assert line.count(" of 2.00") == 2 and len(peaks) == 2 and all(0.05 < p < 2.0 for p in peaks)


@pytest.fixture(scope="module")
def model_dir(business: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real booster trained on the business's training set, saved as a model directory."""
    training = build_training_set(business, CONFIG.labels, CONFIG.features)
    labeled = training.labeled
    untrained = ChurnModel.untrained(labeled, training.specs)
    params = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "nthread": 1, "seed": 0}
    matrix = xgb.DMatrix(
        untrained.prepare(labeled), label=labeled["label"].astype(int), enable_categorical=True
    )
    model = untrained.with_booster(xgb.train(params, matrix, num_boost_round=30), best_iteration=29)
    return model.save(tmp_path_factory.mktemp("model") / "model")


def test_scoring_on_dask_equals_local(business: Dataset, engine: DaskEngine, model_dir: Path) -> None:
    """Features, probabilities and TreeSHAP contributions per partition on the workers; the risk list,
    drivers and groups equal the local run's, and the whole list is also written per partition."""
    model = load_model(model_dir)
    as_of = business.end.normalize()
    frame, probability = score_customers(LocalEngine(), business, model, as_of, CONFIG)
    frame_d, probability_d = score_customers(engine, business, model, as_of, CONFIG)
    pd.testing.assert_frame_equal(frame_d, frame, check_exact=True)
    np.testing.assert_allclose(probability_d, probability, rtol=1e-6, atol=1e-7)
    rows = frame.iloc[:250]
    pieces = engine.map(contributions_of, engine.row_parts(rows, 60), model, 100, "cpu", 1, name="shap")
    assert len(pieces) == 5
    np.testing.assert_allclose(np.concatenate(pieces), contributions(model, rows), rtol=1e-5, atol=1e-6)

    results = {}
    for kind in ("local", "dask"):
        config = load_config(
            None,
            [
                f"output.dir={model_dir.parent / kind}",
                "scoring.log_to_mlflow=false",
                "scoring.explain=all",
                f"engine.kind={kind}",
                "engine.workers=2",
                "engine.memory_limit=2GiB",
                "engine.partitions=3",
            ],
        )
        results[kind] = score.run(config, as_of=as_of, model_uri=str(model_dir), dataset=business)
    local, dask = results["local"].risk_list, results["dask"].risk_list
    assert len(local) == len(frame) and local["driver_1"].notna().all()
    text = [c for c in local.columns if local[c].dtype == object or str(local[c].dtype) == "str"]
    pd.testing.assert_frame_equal(dask[text], local[text], check_exact=True)  # ids, drivers, groups, plays
    pd.testing.assert_frame_equal(dask, local, check_exact=False, rtol=1e-6, atol=1e-7)
    parts = sorted((results["dask"].out_dir / score.PARTITIONED_DIR).glob("part-*.parquet"))
    assert len(parts) == 3
    whole = pd.concat([pd.read_parquet(p) for p in parts]).sort_values("rank").reset_index(drop=True)
    pd.testing.assert_frame_equal(whole, pd.read_parquet(results["dask"].out_dir / "risk_list.parquet"))
    assert not (results["local"].out_dir / score.PARTITIONED_DIR).exists()


def test_boosters_trained_on_dask_equal_local(business: Dataset, engine: DaskEngine) -> None:
    """xgboost.dask on the customer partitions: with bins that hold every distinct value (so both sketches
    are exact) the same trees, probabilities equal; with the default 256 bins the merged sketch cuts
    elsewhere, so only the ranking is close."""
    training = build_training_set(business, CONFIG.labels, CONFIG.features)
    rows = training.labeled
    y = rows["label"].to_numpy(int)
    untrained = ChurnModel.untrained(rows, training.specs)
    params = {"objective": "binary:logistic", "max_depth": 4, "eta": 0.1, "nthread": 1, "seed": 0}
    for bins, tolerance in ((4096, 1e-6), (256, None)):
        settings = {**params, "max_bin": bins}
        local = fit_booster(untrained, settings, 40, rows, 1)
        distributed = fit_booster(untrained, settings, 40, rows, 1, _with_partitions(engine, 4))
        p_local, p_distributed = local.predict_proba(rows), distributed.predict_proba(rows)
        if tolerance is not None:
            np.testing.assert_allclose(p_distributed, p_local, rtol=0, atol=tolerance)
        else:
            assert abs(roc_auc_score(y, p_distributed) - roc_auc_score(y, p_local)) < 0.02
            assert np.corrcoef(p_local, p_distributed)[0, 1] > 0.97
