"""`churnml uplift` end to end on a small simulated programme: files written, JSON only, an MLflow run
beside the churn model's, and an evaluation on the latest lists that never trained the model."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow import MlflowClient

from churnml.config import Config
from churnml.data.simulate import simulate
from churnml.pipelines import uplift
from churnml.uplift.learner import UpliftModel


def test_uplift_pipeline_writes_logs_and_evaluates_out_of_time(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    config = make_config(tmp_path, "uplift.min_treated=150", "uplift.min_held_out=60")
    sim = simulate(2000, 8, 5, programme=True, exploration=0.1)
    result = uplift.run(config, dataset=sim.to_dataset())

    assert result.test_lists == ["2025-06-01", "2025-07-01"]
    out = result.out_dir
    for name in ("uplift_evaluation.csv", "uplift_plays.csv", "qini.png", "summary.json"):
        assert (out / name).exists(), name
    assert not list(out.rglob("*.pkl"))
    loaded = UpliftModel.load(out / "model")
    assert set(loaded.plays) == set(result.model.plays)
    # Some plays have enough customers for a model, the rarest fall back to their measured average.
    methods = {p: m.method for p, m in result.model.plays.items()}
    assert "offset" in methods.values() and "average" in methods.values()
    assert len(result.model.notes) == sum(m == "average" for m in methods.values())
    evaluation = result.evaluation
    overall = evaluation.loc[evaluation["play"] == "all plays"].set_index("ranking")
    assert {"uplift", "risk", "random"} <= set(overall.index)
    assert overall["customers"].nunique() == 1 and np.isfinite(overall["qini"]).all()
    # The evaluated model never saw the test lists; the shipped one was refitted on every list.
    assert result.evaluated.info["rows"] < result.model.info["rows"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_lists"] == result.test_lists and summary["notes"] == list(result.model.notes)

    client = MlflowClient(tracking_uri=config.tracking.uri)
    run = client.get_run(result.run_id)
    assert run.data.tags["churnml.stage"] == "uplift" and run.data.params["uplift.learner"] == "offset"
    assert "qini_uplift" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "uplift")}
    assert "uplift/model" in artifacts and "uplift/uplift_evaluation.csv" in artifacts
    assert set(pd.read_csv(out / "uplift_plays.csv")["play"]) == set(result.model.plays)
