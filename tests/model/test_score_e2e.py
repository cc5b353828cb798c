"""Scoring end to end: a model trained and registered in a temporary MLflow store scores the simulated
business; the list, its drivers and groups are checked against the model and the simulator's truth."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from churnml import cli, io
from churnml.cli import app
from churnml.config import Config
from churnml.data.dataset import Dataset
from churnml.data.load import dataset_from_frames
from churnml.data.simulate import PRICE_COLUMNS, Simulation, price_change, simulate
from churnml.errors import ChurnmlError
from churnml.features.labels import make_label_times
from churnml.features.training_set import TrainingSet
from churnml.pipelines import review, score, train
from churnml.pipelines.archive import archive_key
from churnml.pipelines.train import TrainResult
from churnml.risk import drift
from churnml.risk import report as report_module
from churnml.risk.explain import Explainer
from churnml.risk.report import signal_importance
from churnml.risk.risk_list import cause_confusion, load_playbook, scored_frame, true_causes
from churnml.training.evaluate import ranking

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("score_e2e")]

# The conftest's training set is this simulation; one quick trial with fixed tree settings.
SIM = ["simulate.customers=1500", "simulate.months=9", "simulate.seed=7"]
QUICK = ["tune.n_trials=1", "model.params={max_depth: 4, learning_rate: 0.1}", "scoring.global_sample=600"]


@pytest.fixture(scope="session")
def sim() -> Simulation:
    return simulate(1500, 9, 7)


@pytest.fixture(scope="session")
def trained(
    tmp_path_factory: pytest.TempPathFactory, make_config: Callable[..., Config], training_set: TrainingSet
) -> tuple[Config, TrainResult]:
    config = make_config(tmp_path_factory.mktemp("score"), *SIM, *QUICK)
    return config, train.run(config, training_set=training_set)


@pytest.fixture(scope="session")
def first(trained: tuple[Config, TrainResult], sim: Simulation) -> score.ScoreResult:
    """A month before the end of the data, so the simulator's next renewal decisions are known."""
    config, _ = trained
    return score.run(config, as_of=sim.end - pd.DateOffset(months=1), dataset=sim.to_dataset())


@pytest.fixture(scope="session")
def second(
    trained: tuple[Config, TrainResult], sim: Simulation, first: score.ScoreResult
) -> score.ScoreResult:
    """At the end of the data (the default), a month after ``first``: the trend run."""
    config, _ = trained
    return score.run(config, dataset=sim.to_dataset())


def test_every_active_customer_listed_once_ranked_and_banded(
    first: score.ScoreResult, trained: tuple[Config, TrainResult], sim: Simulation
) -> None:
    config, result = trained
    risk_list = first.risk_list
    as_of = pd.Timestamp(first.summary["as_of"])
    eligible = make_label_times(sim.to_dataset(), config.labels, [as_of]).frame["customer_id"]
    assert sorted(risk_list["customer_id"]) == sorted(eligible)
    assert risk_list["rank"].tolist() == list(range(1, len(risk_list) + 1))
    assert risk_list["revenue_at_risk"].is_monotonic_decreasing
    p = risk_list["churn_probability"].to_numpy()
    expected_band = np.select([p >= 0.3, p >= 0.1], ["high", "medium"], "low")
    assert (risk_list["risk_band"].to_numpy() == expected_band).all()
    assert (risk_list["at_risk"] == (p >= config.risk.at_risk_threshold)).all()
    np.testing.assert_allclose(risk_list["revenue_at_risk"], p * risk_list["customer_value"])
    assert set(risk_list["segment"]) <= {"cancelled_past_due", "new", "inactive", "slipping_away", "active"}
    if result.model.kind == "xgboost":
        assert result.model.iteration_range == (0, result.model.info["best_iteration"] + 1)


def test_training_campaign_and_risk_list_value_a_customer_alike(trained: tuple[Config, TrainResult]) -> None:
    """On the same frame (the test cutoff), the value the training report's profit curve saves for each
    retained churner is the risk list's customer_value of that customer: one value, MRR x 12 months."""
    config, result = trained
    test, report = result.split.test, result.evaluation.model
    listed, basis = scored_frame(
        test, report.probability, np.zeros(len(test)), result.evaluated.specs, config
    )
    value = listed.sort_values("row")["customer_value"].to_numpy()
    assert basis == "mrr x 12 months" and f"customer value: {basis}" in result.evaluation.notes
    assert len(np.unique(value)) > 10  # each customer's own MRR, not one flat figure
    # The curve adds success_rate x value of each contacted churner, highest risk first.
    saved = np.diff(report.profit["retained_value"].to_numpy()) / config.campaign.success_rate
    churner = test["label"].to_numpy(dtype=bool)[ranking(report.score)]
    assert churner.sum() > 10
    np.testing.assert_allclose(saved, np.where(churner, value[ranking(report.score)], 0.0), atol=1e-6)


def test_files_written_and_csv_matches_parquet(second: score.ScoreResult) -> None:
    names = {p.name for p in second.out_dir.iterdir()}
    expected = {"risk_list.csv", "risk_list.parquet", "risk_groups.csv", "risk_report.html", "summary.json"}
    assert expected <= names
    assert not [p for p in second.out_dir.parent.iterdir() if p.name.startswith(".score")]
    parquet = pd.read_parquet(second.out_dir / "risk_list.parquet")
    csv = pd.read_csv(second.out_dir / "risk_list.csv")
    assert (
        csv["customer_id"].tolist()
        == parquet["customer_id"].tolist()
        == second.risk_list["customer_id"].tolist()
    )
    np.testing.assert_allclose(csv["churn_probability"], parquet["churn_probability"])


def test_contributions_add_up_to_the_score(
    first: score.ScoreResult, trained: tuple[Config, TrainResult]
) -> None:
    _, result = trained
    model, explained = result.model, first.explained
    np.testing.assert_allclose(
        explained.contributions.sum(axis=1), model.margin(explained.features), atol=1e-4
    )
    listed = first.risk_list.set_index("customer_id").loc[explained.customers["customer_id"]]
    np.testing.assert_allclose(
        listed["churn_probability"], model.predict_proba(explained.features), rtol=1e-6
    )


def test_drivers_and_groups_where_needed(
    first: score.ScoreResult, trained: tuple[Config, TrainResult]
) -> None:
    config, result = trained
    risk_list = first.risk_list
    at_risk = risk_list["at_risk"]
    assert at_risk.any() and (~at_risk).any()
    assert risk_list.loc[at_risk, "risk_group"].notna().all()
    assert risk_list.loc[~at_risk, "risk_group"].isna().all()
    assert (risk_list["play"].notna() == risk_list["risk_group"].notna()).all()
    head = risk_list.head(config.scoring.explain_top)
    assert head["driver_1"].notna().mean() > 0.9  # the head of the list always has reasons
    # Reasons agree with the sign of the contributions: each driver's signal adds risk for that customer.
    explained = first.explained
    explainer = Explainer.of(result.model, {})
    rows = explained.customers["explained"].to_numpy()
    drivers = explainer.drivers(explained.features[rows], explained.contributions[rows], config.risk.top_k)
    texts = first.risk_list.set_index("customer_id").loc[explained.customers["customer_id"][rows]]
    for found, (_, listed) in zip(drivers, texts.iterrows(), strict=True):
        assert all(d.contribution > 0 for d in found)
        assert [d.contribution for d in found] == sorted((d.contribution for d in found), reverse=True)
        assert sum(isinstance(listed[f"driver_{k + 1}"], str) for k in range(3)) == len(found)
    assert "retained customers:" in risk_list["driver_1"].dropna().iloc[0]


def test_drivers_recover_the_simulators_truth(
    first: score.ScoreResult, trained: tuple[Config, TrainResult], sim: Simulation
) -> None:
    config, result = trained
    playbook = load_playbook()
    as_of = pd.Timestamp(first.summary["as_of"])
    causes = true_causes(sim.truth, as_of, config.labels.horizon_days)
    table, matched, compared = cause_confusion(first.risk_list, causes, playbook)
    print(f"\nassigned group vs true cause ({compared} at-risk customers, {matched:.0%} match):\n{table}")
    assert compared >= 40
    assert matched > 0.5
    importance = signal_importance(first.explained, Explainer.of(result.model, {}), playbook)
    top_groups = set(importance.head(6)["risk_group"])
    print(importance.head(10).to_string())
    assert {"fading_usage", "failed_payments"} <= top_groups


def test_scoring_is_an_mlflow_run_with_the_outputs(
    first: score.ScoreResult, trained: tuple[Config, TrainResult]
) -> None:
    config, result = trained
    client = MlflowClient(tracking_uri=config.tracking.uri)
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.experiment_id == client.get_run(result.run_id).info.experiment_id
    assert run.data.tags["churnml.stage"] == "score"
    assert run.data.params["model_version"] == str(result.version)
    assert run.data.metrics["customers_at_risk"] == first.risk_list["at_risk"].sum()
    artifacts = {a.path for a in client.list_artifacts(first.run_id, "scoring")}
    assert {"scoring/risk_list.csv", "scoring/risk_list.parquet", "scoring/risk_report.html"} <= artifacts


def test_trend_against_the_previous_run(first: score.ScoreResult, second: score.ScoreResult) -> None:
    assert second.summary["previous_as_of"][:10] == first.summary["as_of"][:10]
    before = first.risk_list.set_index("customer_id")
    now = second.risk_list.set_index("customer_id")
    common = now.index.intersection(before.index)
    assert len(common) > 0.8 * len(now)
    np.testing.assert_allclose(
        now.loc[common, "previous_probability"], before.loc[common, "churn_probability"]
    )
    np.testing.assert_allclose(
        now.loc[common, "probability_change"],
        now.loc[common, "churn_probability"] - before.loc[common, "churn_probability"],
    )
    was = before["at_risk"].reindex(now.index, fill_value=False).astype(bool)
    assert (now["newly_at_risk"] == (now["at_risk"] & ~was)).all()
    history = pd.read_csv(second.out_dir / "history.csv")
    assert len(history) == 2 and history["as_of"].is_monotonic_increasing


def test_lists_hold_out_a_share_and_are_archived_by_as_of(
    trained: tuple[Config, TrainResult], first: score.ScoreResult, second: score.ScoreResult
) -> None:
    """Each at-risk customer is contacted or (about risk.holdout_fraction of them, per risk group) held
    out, never twice in a row; every run's list stays under history/<as_of>/."""
    config, _ = trained
    for result in (first, second):
        listed = result.risk_list
        at_risk = listed["at_risk"].astype(bool)
        assert listed.loc[~at_risk, "action"].isna().all()
        assert set(listed.loc[at_risk, "action"]) <= {"contact", "holdout"}
        held = (listed["action"] == "holdout").sum()
        assert held == result.summary["customers_held_out"] > 0
        assert abs(held - config.risk.holdout_fraction * at_risk.sum()) <= listed["risk_group"].nunique() + 1
    before = set(first.risk_list.loc[first.risk_list["action"] == "holdout", "customer_id"])
    after = set(second.risk_list.loc[second.risk_list["action"] == "holdout", "customer_id"])
    assert not before & after
    archive = second.out_dir / "history"
    folders = {p.name for p in archive.iterdir()}
    assert folders >= {archive_key(pd.Timestamp(r.summary["as_of"])) for r in (first, second)}
    for result in (first, second):
        kept = pd.read_parquet(
            archive / archive_key(pd.Timestamp(result.summary["as_of"])) / "risk_list.parquet"
        )
        assert kept["customer_id"].tolist() == result.risk_list["customer_id"].tolist()
        assert kept["action"].tolist() == result.risk_list["action"].tolist()


def test_scoring_a_date_again_or_an_earlier_date_later_gives_the_same_list(
    trained: tuple[Config, TrainResult],
    sim: Simulation,
    first: score.ScoreResult,
    second: score.ScoreResult,
    tmp_path: Path,
) -> None:
    """Holdouts and trend compare with the run before the as-of date (from the archive), not with the
    last list written: a rerun or a backfill reproduces the list that was sent out."""
    config, _ = trained
    out = tmp_path / "score"
    shutil.copytree(second.out_dir, out)
    copy = config.model_copy(update={"scoring": config.scoring.model_copy(update={"out_dir": str(out)})})
    columns = ["customer_id", "action", "previous_probability", "newly_at_risk"]
    for earlier in (second, first, second):  # the last date again, then a backfill, then the last again
        again = score.run(copy, as_of=pd.Timestamp(earlier.summary["as_of"]), dataset=sim.to_dataset())
        pd.testing.assert_frame_equal(again.risk_list[columns], earlier.risk_list[columns])


def test_as_of_after_the_data_is_a_clear_error(trained: tuple[Config, TrainResult], sim: Simulation) -> None:
    config, _ = trained
    with pytest.raises(ChurnmlError, match="after the end of the data"):
        score.run(config, as_of=sim.end + pd.Timedelta(days=1), dataset=sim.to_dataset())


def test_missing_model_is_a_clear_error(trained: tuple[Config, TrainResult], sim: Simulation) -> None:
    config, _ = trained
    # registry.resolve names the model, the alias and the store, and how to get one.
    with pytest.raises(ChurnmlError, match=r"no-such-model(.|\n)*champion(.|\n)*churnml train"):
        score.run(config, model_uri="models:/no-such-model@champion", dataset=sim.to_dataset())


def test_failed_run_leaves_previous_outputs_intact(
    trained: tuple[Config, TrainResult],
    sim: Simulation,
    second: score.ScoreResult,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config, _ = trained

    def files() -> dict[str, bytes]:  # every file, the archive of earlier lists included
        return {
            str(p.relative_to(second.out_dir)): p.read_bytes()
            for p in second.out_dir.rglob("*")
            if p.is_file()
        }

    before = files()
    assert any(name.startswith("history/") for name in before)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full while writing the report")

    monkeypatch.setattr(report_module, "write_report", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        score.run(config, dataset=sim.to_dataset())
    assert files() == before
    assert not [p for p in second.out_dir.parent.iterdir() if p.name.startswith(".score")]


def test_cli_scores_and_prints_the_top_of_the_list(
    trained: tuple[Config, TrainResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, _ = trained
    monkeypatch.setattr(cli.console, "width", 80)  # a narrow terminal: ids and reasons still print whole
    runner = CliRunner()
    common = [*SIM, *QUICK, f"output.dir={config.output.dir}", f"tracking.uri={config.tracking.uri}"]
    result = runner.invoke(app, ["score", "--out", str(tmp_path / "cli"), "--top", "10", *common])
    assert result.exit_code == 0, result.output
    assert "risk_report.html" in result.output and "top 10 by revenue at risk" in result.output
    assert "drift since training (test cutoff" in " ".join(result.output.split())
    listed = pd.read_csv(tmp_path / "cli" / "risk_list.csv")
    assert all(customer in result.output for customer in listed["customer_id"].head(10))
    assert listed["customer_id"].iloc[10] not in result.output
    words = " ".join(result.output.split())  # reasons wrap at 80 columns
    assert " ".join(str(listed["driver_1"].iloc[0]).split()) in words
    error = runner.invoke(app, ["score", "--as-of", "2031-01-01", "--out", str(tmp_path / "cli"), *common])
    assert error.exit_code == 2 and "after the end of the data" in error.output
    assert "Traceback" not in error.output


def test_every_json_written_is_strict(trained: tuple[Config, TrainResult], second: score.ScoreResult) -> None:
    """NaN is not JSON: the first run's summary (no previous run to compare with), MLflow's input
    example and every other JSON under the outputs and the artifact store parse as strict JSON."""
    config, _ = trained

    def refuse(constant: str) -> None:
        raise AssertionError(f"non-JSON constant {constant}")

    files = [p for p in Path(config.output.dir).rglob("*.json") if p.is_file()]
    assert any(p.name == "input_example.json" for p in files)
    assert sum(p.name == "summary.json" for p in files) >= 2  # the scoring dir and each run's artifacts
    for path in files:
        json.loads(path.read_text(), parse_constant=refuse)


def test_ids_that_look_like_formulas_are_neutralised_in_the_csv_and_exact_in_parquet(
    trained: tuple[Config, TrainResult], sim: Simulation, tmp_path: Path
) -> None:
    """A customer id such as ``=HYPERLINK(...)`` runs when a retention manager opens risk_list.csv in a
    spreadsheet: every CSV written for people quotes it (OWASP), the Parquet keeps it exact. The ids
    also end in mathtext (``$^$``), which once failed the report's waterfall plots."""
    config, _ = trained
    starts = ['=HYPERLINK("http://x.example","', "+", "-", "@", "\t", "\r"]
    ids = sim.to_dataset().customers["customer_id"]
    renamed = {c: f"{starts[k % len(starts)]}{c}$^$" for k, c in enumerate(ids)}
    tables = {
        name: frame.assign(customer_id=frame["customer_id"].map(renamed))
        for name, frame in sim.to_dataset().tables.items()
    }
    dataset = Dataset(tables=tables, end=sim.end)
    elsewhere = config.model_copy(update={"output": config.output.model_copy(update={"dir": str(tmp_path)})})
    result = score.run(elsewhere, dataset=dataset)
    assert "$^$" in (result.out_dir / "risk_report.html").read_text()  # the report was written, ids shown
    exact = pd.read_parquet(result.out_dir / "risk_list.parquet")["customer_id"]
    assert set(exact) <= set(renamed.values()) and exact.str.startswith(tuple(starts)).all()
    with (result.out_dir / "risk_list.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["customer_id"] for row in rows] == ["'" + c for c in exact]
    for name in ("risk_list.csv", "risk_groups.csv"):
        with (result.out_dir / name).open(newline="") as handle:
            reader = csv.reader(handle)
            next(reader)
            text_cells = [cell for row in reader for cell in row if not _is_number(cell)]
        assert not [cell for cell in text_cells if cell.startswith(io.FORMULA_STARTS)], name


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def test_score_advance_the_data_review_matches_a_hand_count(
    trained: tuple[Config, TrainResult], sim: Simulation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Score a list on the data as it was, let the data run past its horizon, review: who churned comes
    from the simulator's renewal log, who was contacted from a contacts table written here."""
    config, _ = trained
    out = tmp_path / "score"
    copy = config.model_copy(
        update={
            "scoring": config.scoring.model_copy(update={"out_dir": str(out)}),
            "review": config.review.model_copy(update={"min_arm": 1}),  # a small business: judge every play
        }
    )
    as_of = pd.Timestamp("2025-08-01")  # the data ends 2025-10-01: horizon and grace observed
    listed = score.run(copy, as_of=as_of, dataset=dataset_from_frames(sim.tables, end=as_of)).risk_list
    plan = listed.loc[listed["action"].notna()]
    skipped = plan.loc[plan["action"] == "contact", "customer_id"].head(3)
    done = plan.loc[~plan["customer_id"].isin(skipped)]
    contacts = pd.DataFrame(
        {
            "customer_id": done["customer_id"],
            "contacted_at": as_of + pd.Timedelta(hours=10),
            "play": done["play"],
            "arm": np.where(done["action"] == "contact", "treatment", "holdout"),
            "cost": 12.5,
        }
    )
    full = dataset_from_frames({**sim.tables, "contacts": contacts})
    result = review.run(copy, dataset=full)
    assert [r.as_of for r in result.reviews] == [as_of] and not result.waiting
    reviewed = result.reviews[0]

    truth = sim.truth
    window = (truth["renewal_at"] >= as_of) & (truth["renewal_at"] < as_of + pd.Timedelta(days=30))
    churners = set(truth.loc[truth["churned"] & window, "customer_id"]) & set(listed["customer_id"])
    churned = reviewed.customers.set_index("customer_id")["churned"]
    assert churned.notna().all() and set(churned.index[churned == 1]) == churners
    plays = reviewed.plays.set_index("play")
    for play, rows in done.groupby("play"):
        treated, held = rows.loc[rows["action"] == "contact"], rows.loc[rows["action"] == "holdout"]
        row = plays.loc[play]
        assert (row["contacted"], row["held_out"]) == (len(treated), len(held))
        assert row["cost"] == pytest.approx(12.5 * len(treated))
        if len(treated) and len(held):
            rate_t = treated["customer_id"].isin(churners).mean()
            rate_h = held["customer_id"].isin(churners).mean()
            assert row["effect"] == pytest.approx(rate_h - rate_t)
            assert row["revenue_saved"] == pytest.approx((rate_h - rate_t) * treated["customer_value"].sum())
    assert any(note.startswith("3 customers the list said to contact") for note in reviewed.notes)
    assert not any("other data" in note for note in reviewed.notes)
    m = reviewed.model
    assert m["churners"] == len(churners) and 0.5 < m["roc_auc"] <= 1.0

    folder = out.parent / "review" / "2025-08-01"
    for name in ("review.html", "review_plays.csv", "review_breakdown.csv", "summary.json"):
        assert (folder / name).stat().st_size > 0, name
    json.loads((folder / "summary.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    measured = json.loads((out.parent / "review" / "measured_effect.json").read_text())
    assert measured["lists"] == [as_of.isoformat()]
    assert "Did it work?" in (folder / "review.html").read_text()
    run = MlflowClient(config.tracking.uri).get_run(result.run_ids[0])
    assert run.data.tags["churnml.stage"] == "review"
    assert run.data.metrics["model_churners"] == len(churners)

    # Nothing due (the data as it was at the list): the earlier review stays as it is.
    before = sorted(p.name for p in (out.parent / "review").iterdir())
    nothing = review.run(copy, dataset=dataset_from_frames(sim.tables, end=as_of + pd.Timedelta(days=20)))
    assert (
        not nothing.reviews
        and nothing.waiting
        and sorted(p.name for p in (out.parent / "review").iterdir()) == before
    )
    # A date finds the list; text that is not a date is a clear error; other data is named in a note.
    other = copy.model_copy(update={"simulate": copy.simulate.model_copy(update={"seed": 8})})
    again = review.run(other, as_of="2025-08-01", dataset=full)
    assert [r.as_of for r in again.reviews] == [as_of]
    assert again.reviews[0].notes[0].startswith("this list was scored on other data")
    with pytest.raises(ChurnmlError, match="not a date"):
        review.run(copy, as_of="2025-13-01", dataset=full)

    # The command line: this data has no contacts table, so the arms are the list's plan.
    monkeypatch.setattr(cli.console, "width", 80)
    common = [*SIM, *QUICK, f"output.dir={config.output.dir}", f"tracking.uri={config.tracking.uri}"]
    runner = CliRunner()
    printed = runner.invoke(app, ["review", *common, f"scoring.out_dir={out}"])
    assert printed.exit_code == 0, printed.output
    assert "arms from the list" in printed.output and "review.html" in printed.output
    error = runner.invoke(app, ["review", "--as-of", "2025-09-01", *common, f"scoring.out_dir={out}"])
    assert error.exit_code == 2 and "no archived risk list as of 2025-09-01" in error.output


# ---------------------------------------------------------------------------------------------------
# Drift against the training reference.


def test_drift_is_written_logged_and_reported(
    trained: tuple[Config, TrainResult], second: score.ScoreResult
) -> None:
    config, result = trained
    reference = drift.Reference.from_dict(result.model.reference)
    assert reference is not None and reference.source.startswith("test cutoff")
    assert set(reference.features) == set(result.model.feature_names) and reference.score is not None
    assert (train.train_dir(config) / "model" / "reference_profile.json").exists()
    table = pd.read_csv(second.out_dir / "drift.csv")
    assert table["feature"].tolist() == ["churn_probability", *result.model.feature_names]
    summary = json.loads((second.out_dir / "summary.json").read_text())["drift"]
    assert summary["reference"] == reference.source
    assert summary["warning"] == bool(table["flagged"].any())
    assert summary["flagged"] == table.loc[table["flagged"] & (table["kind"] != "score"), "feature"].tolist()
    assert len(summary["top"]) == config.drift.top and summary["score"]["psi"] >= 0
    html = (second.out_dir / "risk_report.html").read_text()
    assert 'id="drift-table"' in html and (('id="drift-warning"' in html) == summary["warning"])
    run = MlflowClient(tracking_uri=config.tracking.uri).get_run(second.run_id)
    by = table.set_index("feature")
    for feature in ("churn_probability", result.model.feature_names[0]):
        assert run.data.metrics[f"drift.psi.{feature}"] == pytest.approx(by.loc[feature, "psi"])
    assert run.data.metrics["drift.flagged"] == len(summary["flagged"])
    artifacts = {
        a.path
        for a in MlflowClient(tracking_uri=config.tracking.uri).list_artifacts(second.run_id, "scoring")
    }
    assert "scoring/drift.csv" in artifacts


def test_a_pricing_change_is_flagged_on_the_money_features_only(
    trained: tuple[Config, TrainResult], sim: Simulation, tmp_path: Path
) -> None:
    """Prices up 50% four months before the end: against the same run without the change, the features
    newly flagged are money features (payments, MRR), and no other feature moves at all."""
    config, result = trained
    quiet = config.model_copy(update={"scoring": config.scoring.model_copy(update={"log_to_mlflow": False})})
    runs = {}
    for name, dataset in (
        ("control", sim.to_dataset()),
        ("shifted", price_change(sim.to_dataset(), sim.end - pd.DateOffset(months=4), 1.5)),
    ):
        settings = quiet.model_copy(
            update={"scoring": quiet.scoring.model_copy(update={"out_dir": str(tmp_path / name)})}
        )
        scored = score.run(settings, dataset=dataset)
        runs[name] = pd.read_csv(scored.out_dir / "drift.csv").set_index("feature")
    money = {s.name for s in result.model.specs if s.column in PRICE_COLUMNS}
    control, shifted = runs["control"], runs["shifted"]
    newly = set(shifted.index[shifted["flagged"] & ~control["flagged"]])
    print(
        f"\nflagged by the change: {sorted(newly)}; flagged in both: {sorted(set(control.index[control['flagged']]))}"
    )
    assert newly and newly <= money
    assert {"mrr", "payments_amount_90d"} <= set(shifted.index[shifted["flagged"]])
    others = shifted.index.difference([*money, "churn_probability"])
    np.testing.assert_allclose(shifted.loc[others, "psi"], control.loc[others, "psi"])


def test_a_model_without_a_reference_still_scores(
    trained: tuple[Config, TrainResult], sim: Simulation, tmp_path: Path
) -> None:
    config, _ = trained
    model_dir = tmp_path / "old_model"
    shutil.copytree(train.train_dir(config) / "model", model_dir)
    (model_dir / "reference_profile.json").unlink()  # as models saved before drift was recorded
    settings = config.model_copy(
        update={
            "scoring": config.scoring.model_copy(
                update={"out_dir": str(tmp_path / "out"), "log_to_mlflow": False}
            )
        }
    )
    result = score.run(settings, model_uri=str(model_dir), dataset=sim.to_dataset())
    assert result.summary["drift"]["reference"] is None and "no reference" in result.summary["drift"]["note"]
    assert not (result.out_dir / "drift.csv").exists()
    assert "No reference" in result.report_path.read_text()
