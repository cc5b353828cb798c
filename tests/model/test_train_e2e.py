"""The training pipeline end to end on simulated data with a real MLflow SQLite store, and the behaviour
of the model it produces (input validation, reload, determinism, champion/challenger)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
import xgboost as xgb
from mlflow import MlflowClient
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from churnml.cli import app
from churnml.config import Config
from churnml.errors import DataValidationError
from churnml.features.training_set import TrainingSet
from churnml.pipelines import train
from churnml.pipelines.train import TrainResult, labels_end_of
from churnml.risk.explain import contributions
from churnml.training import registry
from churnml.training.candidates import choose, paired_standard_errors
from churnml.training.mlflow_model import input_frame, log_model
from churnml.training.model import ChurnModel, FeatureColumn, load_model
from churnml.training.tracking import child_runs, session
from churnml.training.tune import OptimisticPruner, ProgressReporter

# One group: the trained model is a module fixture, built once on whichever worker runs the group.
pytestmark = pytest.mark.xdist_group("train_e2e")

PLOTS = {"roc.png", "pr.png", "calibration.png", "lift_gain.png", "profit.png", "feature_importance.png"}


@pytest.fixture(scope="module")
def first(
    tmp_path_factory: pytest.TempPathFactory, make_config: Callable[..., Config], training_set: TrainingSet
) -> tuple[Config, TrainResult]:
    config = make_config(tmp_path_factory.mktemp("first"))
    return config, train.run(config, training_set=training_set)


def _client(config: Config) -> MlflowClient:
    return MlflowClient(tracking_uri=config.tracking.uri, registry_uri=config.tracking.uri)


@pytest.mark.slow
def test_parent_run_has_config_split_metrics_and_plots(first: tuple[Config, TrainResult]) -> None:
    config, result = first
    client = _client(config)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    params, metrics = run.data.params, run.data.metrics
    assert params["split.test_cutoff"] == result.split.boundaries["test_cutoff"]
    assert params["split.train_cutoffs"].count(",") == len(result.split.boundaries["train_cutoffs"]) - 1
    assert params["data_fingerprint"] and params["tune.n_trials"] == "4"
    assert params["calibration.chosen"] in {"isotonic", "sigmoid"}
    for name in ("test_roc_auc", "test_pr_auc", "test_log_loss", "test_brier", "test_ece", "test_lift_top10"):
        assert np.isfinite(metrics[name])
    for name in ("test_best_profit", "test_best_roi", "test_op_precision", "test_logreg_roc_auc"):
        assert name in metrics
    assert metrics["test_roc_auc"] == pytest.approx(result.evaluation.model.metrics["roc_auc"])
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "evaluation")}
    assert {f"evaluation/{p}" for p in PLOTS} <= artifacts
    assert {"config.json", "split.json"} <= {a.path for a in client.list_artifacts(result.run_id)}


@pytest.mark.slow
def test_each_trial_is_a_nested_run(first: tuple[Config, TrainResult]) -> None:
    config, result = first
    client = _client(config)
    experiment_id = client.get_run(result.run_id).info.experiment_id
    children = child_runs(client, experiment_id, result.run_id)
    assert len(children) == len(result.study.trials) == 4
    numbers = sorted(int(run.data.params["trial_number"]) for run in children)
    assert numbers == [0, 1, 2, 3]
    complete = [run for run in children if run.data.tags["optuna.state"] == "COMPLETE"]
    assert complete and all("valid_logloss" in run.data.metrics for run in complete)
    assert all("learning_rate" in run.data.params for run in children)


@pytest.mark.slow
def test_registered_as_champion_and_reloads_identically(first: tuple[Config, TrainResult]) -> None:
    config, result = first
    client = _client(config)
    name = config.tracking.registered_model
    assert result.decision is not None and result.decision.promoted
    champion = client.get_model_version_by_alias(name, "champion")
    assert str(champion.version) == result.version
    assert str(client.get_model_version_by_alias(name, "challenger").version) == result.version
    assert champion.tags["test_cutoff"] == result.split.boundaries["test_cutoff"]

    test = result.split.test
    expected = result.model.predict_proba(test)
    mlflow.set_tracking_uri(config.tracking.uri)
    try:
        pyfunc = mlflow.pyfunc.load_model(f"models:/{name}@champion")
        assert np.array_equal(pyfunc.predict(input_frame(result.model, test)), expected)
        assert np.array_equal(pyfunc.predict(test), expected)  # extra columns ignored, categories accepted
        reloaded = load_model(f"models:/{name}@champion")
    finally:
        mlflow.set_tracking_uri(None)
    assert np.array_equal(reloaded.predict_proba(test), expected)
    assert np.array_equal(ChurnModel.load(result.out_dir / "model").predict_proba(test), expected)
    assert reloaded.calibrator == result.model.calibrator
    assert (expected > 0).all() and (expected < 1).all()


@pytest.mark.slow
def test_saved_model_is_plain_json(first: tuple[Config, TrainResult]) -> None:
    _, result = first
    directory = result.out_dir / "model"
    scorer = "booster.json" if result.model.kind == "xgboost" else "linear.json"
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [scorer, "calibrator.json", "feature_spec.json", "reference_profile.json"]
    )
    json.loads((directory / "reference_profile.json").read_text())  # drift's reference: plain JSON too
    spec = json.loads((directory / "feature_spec.json").read_text())
    assert [c["name"] for c in spec["columns"]] == result.model.feature_names
    assert all(f["reason"] for f in spec["features"])  # reason templates travel with the model
    assert json.loads((directory / "calibrator.json").read_text())["method"] == result.model.calibrator.method
    metrics = json.loads((result.out_dir / "evaluation" / "metrics.json").read_text())["metrics"]
    assert set(metrics) >= {"model", "uncalibrated", "logreg", "recency"}


@pytest.mark.slow
def test_every_candidate_is_cross_validated_logged_and_the_best_ships(
    first: tuple[Config, TrainResult],
) -> None:
    config, result = first
    names = [c.name for c in result.candidates]
    assert names == ["xgboost_tuned", "xgboost_robust", "logreg"]
    chosen = result.model.info["candidate"]
    oof = result.split.out_of_fold["label"].to_numpy()
    customers = result.split.out_of_fold["customer_id"]
    expected = choose(list(result.candidates), "roc_auc", "one_se", oof, customers, config.seed)
    assert chosen == expected.name == result.evaluated.info["candidate"]
    best = max(result.candidates, key=lambda c: c.cv["roc_auc"])
    if chosen != best.name:  # a simpler candidate within one standard error of the leader
        errors = paired_standard_errors(best, list(result.candidates), oof, customers, "roc_auc", config.seed)
        assert best.cv["roc_auc"] - expected.cv["roc_auc"] <= errors[chosen]
    for candidate in result.candidates:
        assert len(candidate.margin) == len(oof)
        assert candidate.cv["roc_auc"] == pytest.approx(roc_auc_score(oof, candidate.margin))
    metrics = _client(config).get_run(result.run_id).data.metrics
    for name in names:
        assert metrics[f"candidate_{name}_cv_roc_auc"] == pytest.approx(
            result.candidates[names.index(name)].cv["roc_auc"]
        )
        assert metrics[f"candidate_{name}_test_roc_auc"] == pytest.approx(
            result.candidate_tests[name]["roc_auc"]
        )
    assert _client(config).get_run(result.run_id).data.params["model.chosen"] == chosen


@pytest.mark.slow
def test_shipped_model_is_refitted_on_every_label_and_the_test_describes_the_one_before(
    first: tuple[Config, TrainResult],
) -> None:
    _, result = first
    b = result.split.boundaries
    assert result.model.info["fit_rows"] == b["labeled_rows"] == len(result.split.labeled)
    assert result.evaluated.info["fit_rows"] == b["train_rows"] == len(result.split.development)
    assert result.split.labeled["cutoff"].max() == result.split.test["cutoff"].iloc[0]
    test = result.split.test
    y = test["label"].to_numpy(int)
    assert result.evaluation.model.metrics["roc_auc"] == pytest.approx(
        roc_auc_score(y, result.evaluated.predict_proba(test))
    )
    assert result.model.info["labels_end"] > b["test_cutoff"] >= result.evaluated.info["labels_end"]
    # The evaluated model travels with the shipped one, in the run's outputs and in MLflow.
    tested = load_model(result.out_dir / "model", evaluated=True)
    assert np.array_equal(tested.predict_proba(test), result.evaluated.predict_proba(test))
    if result.model.kind == "xgboost":
        assert result.model.booster.num_boosted_rounds() >= result.evaluated.booster.num_boosted_rounds()


@pytest.mark.slow
def test_a_regression_champion_trains_registers_reloads_and_explains(
    tmp_path: Path, make_config: Callable[..., Config], training_set: TrainingSet
) -> None:
    config = make_config(tmp_path, "model.candidates=[logreg]", "model.refit_on=development")
    result = train.run(config, training_set=training_set)
    assert result.study is None and result.model.kind == "logreg"
    # refit_on: development ships the tested model.
    assert result.model.linear == result.evaluated.linear
    assert result.model.info["fit_rows"] == result.evaluated.info["fit_rows"] == len(result.split.development)
    assert result.decision is not None and result.decision.promoted
    test = result.split.test
    mlflow.set_tracking_uri(config.tracking.uri)
    try:
        reloaded = load_model(f"models:/{config.tracking.registered_model}@champion")
    finally:
        mlflow.set_tracking_uri(None)
    assert reloaded.kind == "logreg"
    assert np.array_equal(reloaded.predict_proba(test), result.model.predict_proba(test))
    shap = contributions(reloaded, test)
    np.testing.assert_allclose(shap.sum(axis=1), reloaded.margin(test), rtol=1e-4, atol=1e-4)
    assert (result.out_dir / "evaluation" / "feature_importance.png").exists()


@pytest.mark.slow
def test_model_uses_only_its_best_trees(first: tuple[Config, TrainResult]) -> None:
    _, result = first
    boosted = [m for m in (result.model, result.evaluated) if m.kind == "xgboost"]
    for model in boosted:
        assert model.booster is not None
        assert model.booster.num_boosted_rounds() == model.info["best_iteration"] + 1
        assert model.iteration_range == (0, model.info["best_iteration"] + 1)


@pytest.mark.slow
def test_prepare_validates_and_casts_like_training(first: tuple[Config, TrainResult]) -> None:
    _, result = first
    model, test = result.model, result.split.test.head(50)
    category = next(c for c in model.columns if c.dtype == "category")
    numeric = next(c for c in model.columns if c.dtype == "float64")
    # Column order, extra columns and text categoricals (as JSON gives them) change nothing.
    as_json = input_frame(model, test)[list(reversed(model.feature_names))].assign(extra=1)
    assert np.array_equal(model.predict_proba(as_json), model.predict_proba(test))
    # An unseen category is treated as missing, not as an error or a wrong code.
    unseen = test.assign(**{category.name: "never-seen-before"})
    missing = test.assign(**{category.name: np.nan})
    assert model.prepare(unseen)[category.name].isna().all()
    assert np.array_equal(model.predict_proba(unseen), model.predict_proba(missing))
    # Integers (JSON numbers) are fine; text in a numeric column and missing columns are named errors.
    assert np.allclose(
        model.predict_proba(test.assign(**{numeric.name: test[numeric.name].fillna(0).astype(int)})),
        model.predict_proba(
            test.assign(**{numeric.name: test[numeric.name].fillna(0).astype(int).astype(float)})
        ),
    )
    with pytest.raises(DataValidationError, match=numeric.name):
        model.predict_proba(test.assign(**{numeric.name: "lots"}))
    with pytest.raises(DataValidationError, match="missing"):
        model.predict_proba(test.drop(columns=[numeric.name, category.name]))
    # A categorical in other categories, or in another order, is recoded by value, never by code.
    values = test[category.name].astype(object)
    reordered = pd.Categorical(values, categories=list(reversed(category.categories or ())))
    kept_levels = list(category.categories or ())[1:]
    fewer = pd.Categorical(values.where(values.isin(kept_levels)), categories=kept_levels)
    for dtype_case in (reordered, fewer):
        cast = model.prepare(test.assign(**{category.name: dtype_case}))[category.name]
        assert list(cast.cat.categories) == list(category.categories or ())
        kept = pd.Series(dtype_case, index=test.index).notna()
        assert (cast[kept].astype(object) == values[kept]).all() and cast[~kept].isna().all()
    # Prepared once, passed on: a prepared frame comes back as it is; anything else is converted.
    prepared = model.prepare(test)
    assert model.prepare(prepared) is prepared
    assert model.prepare(prepared.astype({numeric.name: "float32"})) is not prepared
    assert (
        model.prepare(prepared.assign(**{category.name: prepared[category.name].astype(object)}))
        is not prepared
    )


@pytest.mark.slow
def test_same_config_and_seed_give_the_same_model(
    first: tuple[Config, TrainResult],
    tmp_path: Path,
    make_config: Callable[..., Config],
    training_set: TrainingSet,
) -> None:
    _, result = first
    again = train.run(make_config(tmp_path), training_set=training_set)
    assert again.study.study_name == result.study.study_name  # derived from data, split and settings
    assert again.study.best_params == result.study.best_params
    assert [c.cv for c in again.candidates] == [c.cv for c in result.candidates]
    assert again.model.spec_document() == result.model.spec_document()
    if result.model.booster is not None:
        assert bytes(again.model.booster.save_raw("json")) == bytes(result.model.booster.save_raw("json"))
    assert again.model.linear == result.model.linear
    assert again.model.calibrator == result.model.calibrator
    assert again.evaluation.metrics() == result.evaluation.metrics()


@pytest.mark.slow
def test_worse_challenger_is_not_promoted_and_can_be_overridden(
    first: tuple[Config, TrainResult],
    tmp_path: Path,
    make_config: Callable[..., Config],
    training_set: TrainingSet,
) -> None:
    config, result = first
    shutil.copy(Path(config.output.dir) / "mlflow.db", tmp_path / "mlflow.db")  # the registry, with v1
    weak = make_config(
        tmp_path, "model.max_rounds=2", "model.params={max_depth: 1}", "model.candidates=[xgboost_tuned]"
    )
    worse = train.run(weak, training_set=training_set)
    name = weak.tracking.registered_model
    client = _client(weak)
    assert worse.decision is not None and not worse.decision.promoted
    assert worse.decision.champion_version == result.version
    assert worse.decision.champion == pytest.approx(result.evaluation.model.metrics["roc_auc"])
    assert worse.decision.challenger < worse.decision.champion
    assert str(client.get_model_version_by_alias(name, "champion").version) == result.version
    assert str(client.get_model_version_by_alias(name, "challenger").version) == worse.version
    tags = client.get_run(worse.run_id).data.tags
    assert tags["promotion.promoted"] == "false" and "does not beat" in tags["promotion.reason"]

    overrides = [f"output.dir={tmp_path}", f"tracking.uri={weak.tracking.uri}"]
    listed = CliRunner().invoke(app, ["models", *overrides])
    assert listed.exit_code == 0, listed.output
    assert f"│ {worse.version} " in listed.output
    with session(weak):
        aliases = {row["version"]: row["aliases"] for row in registry.versions(name)}
    assert aliases == {result.version: "champion", worse.version: "challenger"}
    promoted = CliRunner().invoke(app, ["promote", worse.version, *overrides])
    assert promoted.exit_code == 0, promoted.output
    assert str(client.get_model_version_by_alias(name, "champion").version) == worse.version
    with session(weak):
        assert {row["version"]: row["aliases"] for row in registry.versions(name)}[worse.version] == (
            "challenger, champion"
        )
    missing = CliRunner().invoke(app, ["promote", "99", *overrides])
    assert missing.exit_code == 2 and "cannot promote" in missing.output


@pytest.mark.slow
def test_champion_on_other_features_is_kept(tmp_path: Path, make_config: Callable[..., Config]) -> None:
    """A champion that cannot score the new test rows (different features) is not replaced automatically."""
    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "label": [0, 1, 0, 1]})
    booster = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(frame[["x"]], frame["label"]), 2)
    tiny = ChurnModel(booster, (FeatureColumn("x", "float64"),))

    def cannot_score(uri: str) -> float:
        raise DataValidationError("features", "y", "required feature column(s) missing")

    with session(make_config(tmp_path)), mlflow.start_run():
        uri = log_model(tiny, frame).model_uri
        first_version, decision = registry.register_and_decide(uri, "m", "roc_auc", 0.7, cannot_score)
        assert decision.promoted and first_version == "1"
        _, decision = registry.register_and_decide(uri, "m", "roc_auc", 0.9, cannot_score)
        assert not decision.promoted and "promote by hand" in decision.reason
        assert str(MlflowClient().get_model_version_by_alias("m", "champion").version) == first_version


def test_when_a_champions_labels_end_old_and_new_models() -> None:
    """Champion/challenger reads when a model's training labels were complete: the refit's labels_end,
    or for a model from before the refit its test cutoff; a model that says neither is not compared."""
    untrained = ChurnModel(None, (FeatureColumn("x", "float64"),))
    new = untrained.with_info(labels_end="2025-12-08T00:00:00", split={"test_cutoff": "2025-11-01"})
    assert labels_end_of(new) == pd.Timestamp("2025-12-08")
    assert labels_end_of(untrained.with_info(split={"test_cutoff": "2025-11-01"})) == pd.Timestamp(
        "2025-11-01"
    )
    with pytest.raises(DataValidationError, match="labels_end"):
        labels_end_of(untrained)


# --- tuning internals: the pruner and the pruning callback ---------------------------------------------

SLOW_BEST = {4: 0.191, 8: 0.184, 12: 0.181, 16: 0.1795, 20: 0.1786, 28: 0.1776, 40: 0.1766}
FAST_DEEP = {4: 0.186, 8: 0.180, 12: 0.179, 16: 0.1779, 20: 0.1776}


def _study(curves: list[dict[int, float]], startup: int = 2) -> optuna.Study:
    study = optuna.create_study(pruner=OptimisticPruner(n_startup_trials=startup, n_warmup_steps=4))
    for curve in curves:
        study.add_trial(
            optuna.trial.create_trial(
                value=min(curve.values()), intermediate_values=curve, params={}, distributions={}
            )
        )
    return study


@pytest.mark.parametrize(
    ("at_step_12", "pruned"),
    [
        (0.1805, False),  # behind the early leader, but could still beat the best (a median rule prunes it)
        (0.1812, True),  # would need to improve more than any finished trial did from here
        (0.19, True),
    ],
)
def test_optimistic_pruner_stops_only_hopeless_trials(at_step_12: float, pruned: bool) -> None:
    study = _study([FAST_DEEP, SLOW_BEST])
    trial = study.ask()
    trial.report(0.2, 8)
    trial.report(at_step_12, 12)
    assert trial.should_prune() is pruned


def test_optimistic_pruner_waits_for_warmup_and_startup_trials() -> None:
    trial = _study([FAST_DEEP, SLOW_BEST]).ask()
    trial.report(0.5, 3)
    assert not trial.should_prune()  # step 3 < warm-up 4
    lonely = _study([SLOW_BEST], startup=2).ask()
    lonely.report(0.5, 12)
    assert not lonely.should_prune()  # one finished trial < 2 startup trials


def test_progress_reporter_reports_at_equal_learning_progress() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.steps: list[tuple[int, int]] = []
            self.epoch = 0

        def report(self, value: float, step: int) -> None:
            self.steps.append((self.epoch, step))

        def should_prune(self) -> bool:
            return False

    def steps(learning_rate: float, rounds: int) -> list[tuple[int, int]]:
        recorder = Recorder()
        reporter = ProgressReporter(recorder, learning_rate, interval=0.25)  # type: ignore[arg-type]
        for epoch in range(rounds):
            recorder.epoch = epoch
            reporter(epoch, 0.5)
        return recorder.steps

    # Progress = rounds x learning rate: step k is reported once k x 0.25 is reached.
    assert steps(0.1, 10) == [(2, 1), (4, 2), (7, 3), (9, 4)]
    assert steps(0.025, 40) == [(9, 1), (19, 2), (29, 3), (39, 4)]


def test_progress_reporter_raises_when_the_pruner_says_stop() -> None:
    class Pruning:
        def report(self, value: float, step: int) -> None:
            pass

        def should_prune(self) -> bool:
            return True

    with pytest.raises(optuna.TrialPruned):
        ProgressReporter(Pruning(), 0.3, interval=0.25)(0, 0.5)  # type: ignore[arg-type]
