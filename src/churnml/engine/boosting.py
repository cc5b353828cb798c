"""Boosting on the cluster: ``xgboost.dask`` on the training rows split by customer partition.

Each partition's rows are prepared (the model's input columns and dtypes) on one worker and become one
partition of a Dask DataFrame; XGBoost's collective then builds each tree from the workers' histograms
together. Same parameters, same rounds as the local fit; the distributed quantile sketch and the order
in which gradients are summed differ from one process's, so the trees agree within float tolerance
rather than bit for bit (``tests/code/test_engine.py`` measures it).

The rows come from the client (:func:`train_on_cluster`: a training set it holds) or stay where the
workers built them (:func:`train_on_parts`: ``churnml.features.training_set.TrainingParts``). Either way
the matrix is a ``DaskQuantileDMatrix`` (for the ``hist`` method, the default): each worker quantises
its parts one at a time into the histogram index (a byte or so per value) instead of concatenating them
into a float matrix first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import xgboost as xgb

from churnml.engine import concat_in_order
from churnml.engine.cluster import DaskEngine
from churnml.engine.partition import split_frame
from churnml.errors import ChurnmlError
from churnml.training.model import ChurnModel
from churnml.training.tune import fitted

DEFAULT_MAX_BIN = 256  # XGBoost's


def train_on_cluster(
    engine: DaskEngine, untrained: ChurnModel, params: dict[str, Any], rounds: int, rows: pd.DataFrame
) -> xgb.Booster:
    """``rounds`` trees with ``params`` on ``rows`` (labeled training rows), trained by the workers."""
    client = engine.client
    inputs = []
    partitions = engine.partitions(rows["customer_id"].nunique())
    for k, part in enumerate(p for p in split_frame(rows, partitions) if len(p)):
        worker = [engine.workers[k % len(engine.workers)]]
        inputs.append(client.scatter([model_inputs(part, untrained)], workers=worker, hash=False)[0])
    return _boost(engine, untrained, params, rounds, inputs)


def keep_model_inputs(
    engine: DaskEngine,
    untrained: ChurnModel,
    parts: Sequence[Any],
    cutoffs: Sequence[pd.Timestamp],
    read: bool = False,
) -> list[Any]:
    """The model's inputs (:func:`model_inputs`) of the labeled rows at ``cutoffs`` of a training set the
    workers hold (``parts``: futures of its partitions' rows; with ``read``, the paths of the part files
    they wrote), left where they are made: futures of (features, labels), the partitions without such
    rows left out. Once they are made the caller may let the parts go (the workers then hold the inputs
    alone while XGBoost trains)."""
    return _counted_inputs(engine, untrained, parts, cutoffs, read)[0]


def _counted_inputs(
    engine: DaskEngine,
    untrained: ChurnModel,
    parts: Sequence[Any],
    cutoffs: Sequence[pd.Timestamp],
    read: bool,
) -> tuple[list[Any], int]:
    """:func:`keep_model_inputs`, and how many rows they hold."""
    wanted = [pd.Timestamp(c) for c in cutoffs]
    inputs = engine.keep(file_inputs if read else model_inputs, parts, untrained, wanted, name="model-inputs")
    sizes = engine.map(_rows_of, inputs, name="model-inputs-rows")
    return [future for future, rows in zip(inputs, sizes, strict=True) if rows], sum(sizes)


def keep_rows(engine: DaskEngine, parts: Sequence[Any], cutoffs: Sequence[pd.Timestamp]) -> list[Any]:
    """The labeled rows at ``cutoffs`` of a training set the workers hold (a test cutoff's, to predict
    after training), kept where they are: futures, one per partition."""
    wanted = [pd.Timestamp(c) for c in cutoffs]
    return engine.keep(_labeled_at, parts, wanted, name="rows")


def train_on_parts(
    engine: DaskEngine, untrained: ChurnModel, params: dict[str, Any], rounds: int, inputs: Sequence[Any]
) -> xgb.Booster:
    """:func:`train_on_cluster` of inputs the workers hold (:func:`keep_model_inputs`); nothing but the
    booster comes to the client."""
    return _boost(engine, untrained, params, rounds, list(inputs))


@dataclass(frozen=True)
class PartFiles:
    """Every labeled row at ``cutoffs`` of a training set the workers wrote per partition (``files``,
    ``part-<k>.parquet``), to fit boosters on when the client cross-validated a sample of its customers
    (``churnml.training.tune.BoosterRows``); ``rows``: how many there are. Each fit reads the files
    again where it runs, so that between fits the workers hold nothing of the training set."""

    engine: DaskEngine
    files: tuple[Path, ...]
    cutoffs: tuple[pd.Timestamp, ...]
    rows: int

    def fit(self, untrained: ChurnModel, params: dict[str, Any], rounds: int, nthread: int) -> ChurnModel:
        """The inputs read and made on the workers, the booster trained there, the inputs let go."""
        inputs, read = _counted_inputs(self.engine, untrained, self.files, self.cutoffs, read=True)
        if read != self.rows:
            raise ChurnmlError(
                f"the training set's part files hold {read:,} labeled rows at {len(self.cutoffs)} cutoffs where "
                f"its labels counted {self.rows:,}: was its folder changed during the run?"
            )
        booster = train_on_parts(self.engine, untrained, params, rounds, inputs)
        del inputs  # the last reference: the workers let them go
        return fitted(untrained, booster, rounds, params, nthread)


def file_inputs(
    path: Path, untrained: ChurnModel, cutoffs: Sequence[pd.Timestamp]
) -> tuple[pd.DataFrame, pd.Series]:
    """:func:`model_inputs` of a part file's rows at ``cutoffs``, reading only the model's columns."""
    columns = ["cutoff", "label", *untrained.feature_names]
    table = pq.read_table(path, columns=columns, filters=[("cutoff", "in", list(cutoffs))])
    return model_inputs(table.to_pandas(), untrained, cutoffs)


def _labeled_at(part: pd.DataFrame, cutoffs: Sequence[pd.Timestamp] | None) -> pd.DataFrame:
    """``part``'s labeled rows (at ``cutoffs`` when given), numbered from 0."""
    keep = part["label"].notna()
    if cutoffs is not None:
        keep &= part["cutoff"].isin(cutoffs)
    return part.loc[keep].reset_index(drop=True)


def model_inputs(
    part: pd.DataFrame, untrained: ChurnModel, cutoffs: Sequence[pd.Timestamp] | None = None
) -> tuple[pd.DataFrame, pd.Series]:
    """The model's input columns (numbers as float32, what XGBoost stores) and labels of ``part``'s
    labeled rows (at ``cutoffs`` when given)."""
    x, y = untrained.xy(_labeled_at(part, cutoffs))
    numbers = [column.name for column in untrained.columns if column.dtype != "category"]
    return x.astype(dict.fromkeys(numbers, np.float32)), pd.Series(y, name="label", index=x.index)


def _rows_of(inputs: tuple[pd.DataFrame, pd.Series]) -> int:
    return len(inputs[1])


def _first(pair: tuple[Any, Any]) -> Any:
    return pair[0]


def _second(pair: tuple[Any, Any]) -> Any:
    return pair[1]


def _head(pair: tuple[pd.DataFrame, pd.Series]) -> pd.DataFrame:
    return pair[0].iloc[:0]


def _boost(
    engine: DaskEngine, untrained: ChurnModel, params: dict[str, Any], rounds: int, inputs: list[Any]
) -> xgb.Booster:
    """The booster from ``inputs``: futures of (features, labels) pairs, one per non-empty partition."""
    import dask.dataframe as dd
    from xgboost import dask as dxgb

    if not inputs:
        raise ChurnmlError("no labeled training rows to train on (every partition is empty)")
    client = engine.client
    x_parts = [client.submit(_first, f, pure=False) for f in inputs]
    y_parts = [client.submit(_second, f, pure=False) for f in inputs]
    meta_x = client.submit(_head, inputs[0], pure=False).result()  # columns and dtypes, no rows
    features = dd.from_delayed(x_parts, meta=meta_x, verify_meta=False)
    labels = dd.from_delayed(y_parts, meta=pd.Series(np.empty(0, np.int64), name="label"), verify_meta=False)
    matrix: dxgb.DaskDMatrix
    if params.get("tree_method", "hist") == "hist":
        matrix = dxgb.DaskQuantileDMatrix(
            client,
            features,
            labels,
            enable_categorical=True,
            missing=np.nan,
            max_bin=int(params.get("max_bin", DEFAULT_MAX_BIN)),
        )
    else:  # ``approx`` and ``exact`` sketch the float values themselves (model.params may choose them)
        matrix = dxgb.DaskDMatrix(client, features, labels, enable_categorical=True, missing=np.nan)
    settings = {key: value for key, value in params.items() if key != "nthread"}  # workers' own threads
    return dxgb.train(client, settings, matrix, num_boost_round=rounds, verbose_eval=False)["booster"]


def predict_parts(
    engine: DaskEngine,
    model: ChurnModel,
    parts: Sequence[Any],
    cutoffs: Sequence[pd.Timestamp],
    columns: Sequence[str] = (),
) -> pd.DataFrame:
    """customer_id, cutoff, label, ``columns`` and the model's calibrated ``probability`` of the labeled
    rows at ``cutoffs`` of a training set the workers hold, in (cutoff, customer) order: the out-of-time
    test of a model trained by :func:`train_on_parts`, with only these columns coming to the client."""
    wanted = [pd.Timestamp(c) for c in cutoffs]
    pieces = engine.map(_predicted, parts, model, wanted, list(columns), name="predict")
    return concat_in_order(pieces, ["cutoff", "customer_id"])


def _predicted(
    part: pd.DataFrame, model: ChurnModel, cutoffs: list[pd.Timestamp], columns: list[str]
) -> pd.DataFrame:
    rows = _labeled_at(part, cutoffs)
    probability = model.predict_proba(rows) if len(rows) else np.empty(0)
    return rows[["customer_id", "cutoff", "label", *columns]].assign(probability=probability)
