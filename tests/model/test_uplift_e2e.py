"""`churnml uplift` end to end on a small simulated programme: files written, JSON only, an MLflow run
beside the churn model's, and an evaluation on the latest lists that never trained the model."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from churnml.config import Config
from churnml.data.simulate import simulate
from churnml.errors import ChurnmlError
from churnml.features.training_set import build_training_set
from churnml.pipelines import score, train, uplift
from churnml.training.tracking import child_runs
from churnml.uplift.learner import UpliftModel
from churnml.uplift.targeting import play_column


def test_uplift_pipeline_writes_logs_and_evaluates_out_of_time(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    config = make_config(
        tmp_path,
        # Low enough for the largest plays to be tuned on the lists before the last training list.
        "uplift.min_treated=60",
        "uplift.min_held_out=30",
        "uplift.tune.n_trials=3",
        "uplift.tune.startup_trials=2",
    )
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

    # Tuned out of time per modelled play (on the list before the test lists), the study in MLflow as
    # nested trial runs like the churn model's; the shipped boosters use what tuning kept.
    assert set(summary["tuning"]) == set(result.model.plays)
    studied = {p: t for p, t in result.tuning.items() if t.study is not None}
    assert studied and set(studied) <= {p for p, m in methods.items() if m != "average"}
    assert all(summary["tuning"][p]["trials"] == 3 for p in studied)
    trials = child_runs(client, run.info.experiment_id, result.run_id)
    assert len(trials) == 3 * len(studied)
    assert {t.data.tags["optuna.play"] for t in trials} == set(studied)
    assert all("valid_factual_logloss" in t.data.metrics for t in trials)
    kept = {p: t.params for p, t in studied.items() if t.params}
    assert result.model.info["tuned_params"] == kept
    for play, params in kept.items():
        key = play_column(play).removeprefix("uplift_")
        assert run.data.params[f"tuned.{key}.max_depth"] == str(params["max_depth"])


def test_score_ranks_by_net_value_with_the_registered_uplift_model(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    """train, then score (no uplift yet: the list of before), then `churnml uplift` (registered as
    champion), then score with risk.rank_by=net_value: the uplift columns, their arithmetic, the order,
    summary.json's totals and the report's profit curve."""
    sim = simulate(2000, 8, 5, programme=True, exploration=0.1)
    dataset = sim.to_dataset()
    config = make_config(
        tmp_path,
        "tune.n_trials=1",
        "tune.startup_trials=1",
        "uplift.min_treated=150",
        "uplift.min_held_out=60",
        "scoring.global_sample=300",
    )
    train.run(config, training_set=build_training_set(dataset, config.labels, config.features))

    before = score.run(config, dataset=dataset)
    assert "best_play" not in before.risk_list.columns and "uplift" not in before.summary
    assert before.summary["expected_saves_basis"].startswith("success rate")
    by_net_value = config.model_copy(update={"risk": config.risk.model_copy(update={"rank_by": "net_value"})})
    with pytest.raises(ChurnmlError, match="rank_by=net_value needs an uplift model") as refused:
        score.run(by_net_value, dataset=dataset)
    assert "churnml uplift" in str(refused.value)

    fitted = uplift.run(config, dataset=dataset)
    name = config.uplift_registered_model()
    assert name == "churn-model-uplift" and fitted.model_version == "1"
    client = MlflowClient(tracking_uri=config.tracking.uri)
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"

    result = score.run(by_net_value, dataset=dataset)
    listed = result.risk_list
    plays = list(fitted.model.plays)
    for column in ("best_play", "uplift", "expected_saves", "net_value", "sleeping_dog"):
        assert column in listed.columns, column
    assert {play_column(p) for p in plays} <= set(listed.columns)
    # Ranked by net value, highest first; customers without an applicable play (not at risk) last.
    net = listed["net_value"].to_numpy(float)
    known = ~np.isnan(net)
    assert known.sum() > 20 and not known[known.sum() :].any()
    assert (np.diff(net[known]) <= 1e-9).all()
    assert listed["rank"].tolist() == list(range(1, len(listed) + 1))
    # Only the play of the customer's risk group applies (uplift.plays: risk_group).
    chosen = listed.loc[known]
    group_play = chosen["play"].str.casefold()
    assert (chosen["best_play"].str.casefold() == group_play).all()
    assert listed.loc[~listed["at_risk"], "best_play"].isna().all()
    # net value = uplift x customer value - the contact cost (campaign.cost_per_contact, 20).
    np.testing.assert_allclose(chosen["net_value"], chosen["uplift"] * chosen["customer_value"] - 20.0)
    per_play = np.array([chosen.iloc[i][play_column(p)] for i, p in enumerate(chosen["best_play"])])
    np.testing.assert_allclose(chosen["uplift"], per_play)
    contacted = listed["action"].eq("contact").to_numpy()
    np.testing.assert_allclose(listed["expected_saves"], np.where(contacted, listed["uplift"].fillna(0), 0.0))
    dogs = listed["sleeping_dog"].to_numpy(bool)
    assert (listed.loc[dogs, "uplift"] < -config.uplift.sleeping_dog_tolerance).all()

    summary = json.loads((result.out_dir / "summary.json").read_text())
    assert summary["rank_by"] == "net_value" and summary["uplift"]["model_version"] == "1"
    assert summary["expected_saves"] == pytest.approx(listed["expected_saves"].sum())
    assert summary["expected_saves_basis"].startswith("uplift model")
    assert summary["expected_net_value"] == pytest.approx(listed.loc[contacted, "net_value"].sum())
    assert summary["sleeping_dogs"] == int(dogs.sum())
    assert summary["sleeping_dogs_to_contact"] == int((dogs & contacted).sum())
    assert summary["best_depth"] == summary["customers_positive_net_value"]  # ranked by net value
    assert set(summary["uplift"]["plays"]) == set(plays)
    on_disk = pd.read_parquet(result.out_dir / "risk_list.parquet")
    assert on_disk["best_play"].fillna("").tolist() == listed["best_play"].fillna("").tolist()
    np.testing.assert_array_equal(on_disk["net_value"], listed["net_value"])

    page = result.report_path.read_text()
    assert 'id="plot-net-value" alt="Profit curve from measured uplift"' in page
    assert 'id="uplift"' in page and "<th>Best play</th>" in page
    assert f"{summary['sleeping_dogs_to_contact']:,}" in page
    top = listed.iloc[0]
    assert f"{top['uplift'] * 100:+.1f} pp" in page and str(top["best_play"]) in page
