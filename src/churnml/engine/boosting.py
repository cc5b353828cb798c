"""Boosting on the cluster: ``xgboost.dask`` on the training rows split by customer partition.

Each partition's rows are prepared (the model's input columns and dtypes) here, sent to one worker and
become one partition of a Dask DataFrame; XGBoost's collective then builds each tree from the workers'
histograms together. Same parameters, same rounds as the local fit; the distributed quantile sketch and
the order in which gradients are summed differ from one process's, so the trees agree within float
tolerance rather than bit for bit (``tests/code/test_engine.py`` measures it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from churnml.engine.cluster import DaskEngine
from churnml.engine.partition import split_frame
from churnml.training.model import ChurnModel


def train_on_cluster(
    engine: DaskEngine, untrained: ChurnModel, params: dict[str, Any], rounds: int, rows: pd.DataFrame
) -> xgb.Booster:
    """``rounds`` trees with ``params`` on ``rows`` (labeled training rows), trained by the workers."""
    import dask.dataframe as dd
    from xgboost import dask as dxgb

    client = engine.client
    x_parts, y_parts = [], []
    partitions = engine.partitions(rows["customer_id"].nunique())
    for k, part in enumerate(p for p in split_frame(rows, partitions) if len(p)):
        x, y = untrained.xy(part)
        worker = [engine.workers[k % len(engine.workers)]]
        x_parts.append(client.scatter([x], workers=worker, hash=False)[0])
        y_parts.append(client.scatter([pd.Series(y, name="label")], workers=worker, hash=False)[0])
    meta_x, _ = untrained.xy(rows.iloc[:0])
    features = dd.from_delayed(x_parts, meta=meta_x, verify_meta=False)
    labels = dd.from_delayed(y_parts, meta=pd.Series(np.empty(0, np.int64), name="label"), verify_meta=False)
    matrix = dxgb.DaskDMatrix(client, features, labels, enable_categorical=True, missing=np.nan)
    settings = {key: value for key, value in params.items() if key != "nthread"}  # workers' own threads
    return dxgb.train(client, settings, matrix, num_boost_round=rounds, verbose_eval=False)["booster"]
