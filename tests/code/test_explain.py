"""Explanations: SHAP contributions that add up to the score, drivers that agree with their sign, and
reasons a person can read."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from hypothesis import given, settings
from hypothesis import strategies as st

from churnml.features.catalogue import FeatureSpec, history_days
from churnml.risk.explain import (
    Explainer,
    Signals,
    contributions,
    excluded_features,
    explain_rows,
    explanation,
    feature_specs,
    render,
    signal_explanation,
    typical_values,
)
from churnml.risk.risk_list import assign_groups, load_playbook
from churnml.training.model import ChurnModel


def _spec(name: str, signal: str, family: str, reason: str, **kwargs) -> FeatureSpec:
    return FeatureSpec(
        name=name,
        family=family,
        table="events",
        aggregate="count",
        window_days=None,
        dtype=kwargs.pop("dtype", "float64"),
        reason=reason,
        signal=signal,
        **kwargs,
    )


SPECS = [
    _spec("days_since_last_login", "login_activity", "recency", "No login for {value:.0f} days"),
    _spec(
        "events_login_count_7d", "login_activity", "frequency", "{value:.0f} login events in the last 7 days"
    ),
    _spec(
        "events_login_count_30d",
        "login_activity",
        "frequency",
        "{value:.0f} login events in the last 30 days",
    ),
    _spec(
        "failed_payments_30d", "failed_payments", "billing", "{value:.0f} failed payments in the last 30 days"
    ),
    _spec("tenure_days", "tenure", "tenure", "Customer for {value:.0f} days", actionable=False),
    _spec(
        "plan",
        "plan",
        "billing",
        "On the {value} plan",
        dtype="category",
        categories=("basic", "free", "pro"),
    ),
]


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    quiet = rng.exponential(12, n)
    quiet[rng.random(n) < 0.05] = np.nan  # never logged in
    logins = rng.poisson(np.where(np.isnan(quiet), 0, 30 / (1 + np.nan_to_num(quiet))), n)
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(n)],
            "days_since_last_login": quiet,
            "events_login_count_7d": np.minimum(logins, rng.poisson(3, n)).astype(float),
            "events_login_count_30d": logins.astype(float),
            "failed_payments_30d": rng.poisson(0.2, n).astype(float),
            "tenure_days": rng.uniform(0, 800, n),
            "plan": pd.Categorical(
                rng.choice(["free", "basic", "pro"], n), categories=["basic", "free", "pro"]
            ),
        }
    )


@pytest.fixture(scope="module")
def model() -> ChurnModel:
    """A small real booster on data where churn follows login recency, failed payments and tenure."""
    frame = _frame(3000, 0)
    logit = (
        -3
        + 0.08 * np.nan_to_num(frame["days_since_last_login"], nan=60)
        + 1.2 * frame["failed_payments_30d"]
        + 1.0 * (frame["tenure_days"] < 60)
        + 0.5 * (frame["plan"] == "free")
    )
    y = (np.random.default_rng(1).random(len(frame)) < 1 / (1 + np.exp(-logit))).astype(int)
    untrained = ChurnModel.untrained(frame, SPECS)
    params = {"objective": "binary:logistic", "max_depth": 4, "eta": 0.2, "nthread": 2, "seed": 0}
    matrix = xgb.DMatrix(untrained.prepare(frame), label=y, enable_categorical=True)
    return untrained.with_booster(xgb.train(params, matrix, num_boost_round=40), best_iteration=39)


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return _frame(400, 2)


def test_contributions_sum_to_the_margin(model: ChurnModel, rows: pd.DataFrame) -> None:
    contribs = contributions(model, rows)
    assert contribs.shape == (len(rows), len(model.columns) + 1)
    np.testing.assert_allclose(contribs.sum(axis=1), model.margin(rows), atol=1e-4)


def test_contributions_equal_shap_tree_explainer(model: ChurnModel, rows: pd.DataFrame) -> None:
    shap = pytest.importorskip("shap")
    expected = shap.TreeExplainer(model.trained_booster).shap_values(
        xgb.DMatrix(model.prepare(rows), enable_categorical=True)
    )
    np.testing.assert_allclose(contributions(model, rows)[:, :-1], expected, atol=1e-5)


def test_explanation_is_shap_tree_explainers_on_a_sample(model: ChurnModel, rows: pd.DataFrame) -> None:
    """The shap.Explanation built from XGBoost's TreeSHAP holds shap's own values, base values and names."""
    import shap

    sample = rows.sample(120, random_state=3)
    ours = explanation(model, sample)
    theirs = shap.TreeExplainer(model.trained_booster)(
        xgb.DMatrix(model.prepare(sample), enable_categorical=True)
    )
    assert ours.values.shape == theirs.values.shape == (len(sample), len(model.columns))
    np.testing.assert_allclose(ours.values, theirs.values, atol=1e-5)
    np.testing.assert_allclose(ours.base_values, theirs.base_values, atol=1e-5)
    np.testing.assert_allclose(ours.values.sum(axis=1) + ours.base_values, model.margin(sample), atol=1e-4)
    assert ours.feature_names == list(model.feature_names)
    # Data for shap's colours: numbers, a category as its code and missing as NaN; display data as given.
    plan = list(model.feature_names).index("plan")
    codes = model.prepare(sample)["plan"].cat.codes.to_numpy(float)
    np.testing.assert_array_equal(ours.data[:, plan], codes)
    recency = list(model.feature_names).index("days_since_last_login")
    np.testing.assert_array_equal(ours.data[:, recency], sample["days_since_last_login"].to_numpy(float))
    assert np.isnan(ours.data[:, recency]).any()
    assert set(ours.display_data[:, plan]) <= {"basic", "free", "pro"}


def test_signal_explanation_sums_windows_and_keeps_the_margin(model: ChurnModel, rows: pd.DataFrame) -> None:
    contribs = contributions(model, rows)
    signals = Explainer.of(model).signals
    every = signal_explanation(signals, contribs)
    assert every.values.shape == (len(rows), len(signals.names))
    assert every.feature_names == list(signals.names)
    login = [k for k, s in enumerate(SPECS) if s.signal == "login_activity"]
    np.testing.assert_allclose(
        every.values[:, signals.names.index("login_activity")], contribs[:, login].sum(axis=1), atol=1e-5
    )
    np.testing.assert_allclose(every.values.sum(axis=1) + every.base_values, model.margin(rows), atol=1e-4)
    one = signal_explanation(signals, contribs[7], names=[n.upper() for n in signals.names])
    assert one.values.shape == (len(signals.names),) and one.feature_names[0] == signals.names[0].upper()
    assert float(one.base_values) == pytest.approx(float(contribs[7, -1]))


def test_the_linear_candidate_has_explanations_and_report_plots(
    model: ChurnModel, rows: pd.DataFrame
) -> None:
    """A logistic regression has no TreeSHAP: its exact linear SHAP values feed the same shap plots."""
    from churnml.risk.report import Explained, beeswarm_plot, waterfall_plot
    from churnml.training.linear import LinearModel

    y = (model.predict_proba(rows) > 0.3).astype(int)
    untrained = ChurnModel.untrained(rows, SPECS)
    linear = untrained.with_linear(LinearModel.fit(untrained.prepare(rows), y, ["plan"], 1.0))
    values = explanation(linear, rows)
    np.testing.assert_allclose(values.values.sum(axis=1) + values.base_values, linear.margin(rows), atol=1e-6)
    customers = pd.DataFrame({"customer_id": rows["customer_id"], "rank": range(len(rows))})
    explained = Explained(
        customers.assign(explained=True, sampled=True), contributions(linear, rows), linear.prepare(rows)
    )
    assert beeswarm_plot(explained, linear).startswith("data:image/png;base64,")
    title = "#1 x$^$ \\frac{1}{2}: 31% churn probability"  # a formula-looking id is drawn literally
    plot = waterfall_plot(explained.contributions[0], Explainer.of(linear), title)
    assert plot.startswith("data:image/png;base64,")


def test_contributions_use_only_the_models_trees(model: ChurnModel, rows: pd.DataFrame) -> None:
    """A booster with extra trees beyond the model's range must not change the explanation."""
    longer = model.trained_booster.copy()
    matrix = xgb.DMatrix(model.prepare(rows), enable_categorical=True)
    longer.update(xgb.DMatrix(model.prepare(rows), label=np.ones(len(rows)), enable_categorical=True), 40)
    cut = dataclasses.replace(model, booster=longer[: model.iteration_range[1]])
    np.testing.assert_allclose(contributions(cut, rows), contributions(model, rows), atol=1e-6)
    full = longer.predict(matrix, pred_contribs=True)
    assert not np.allclose(full, contributions(model, rows), atol=1e-3)


def test_batches_and_threads_give_the_same_values(model: ChurnModel, rows: pd.DataFrame) -> None:
    whole = contributions(model, rows)
    np.testing.assert_array_equal(contributions(model, rows, batch_size=37, nthread=1), whole)
    assert model.trained_booster.num_boosted_rounds() == 40  # the model's booster is not modified


def test_windows_of_one_signal_are_summed(model: ChurnModel, rows: pd.DataFrame) -> None:
    explainer = Explainer.of(model, {})
    contribs = contributions(model, rows)
    per_signal = explainer.signals.sum(contribs)
    assert explainer.signals.names == ("login_activity", "failed_payments", "tenure", "plan")
    np.testing.assert_allclose(per_signal[:, 0], contribs[:, :3].sum(axis=1), atol=1e-5)
    np.testing.assert_allclose(per_signal.sum(axis=1) + contribs[:, -1], contribs.sum(axis=1), atol=1e-4)


def test_drivers_push_risk_up_strongest_first(model: ChurnModel, rows: pd.DataFrame) -> None:
    contribs = contributions(model, rows)
    explainer = Explainer.of(model, {})
    per_signal = explainer.signals.sum(contribs)
    drivers = explainer.drivers(rows, contribs, top_k=3)
    assert len(drivers) == len(rows)
    names = list(explainer.signals.names)
    features = [s.name for s in explainer.specs]
    for row, found in enumerate(drivers):
        assert len(found) <= 3
        expected = sorted((v for v in per_signal[row] if v > 0), reverse=True)[:3]
        np.testing.assert_allclose([d.contribution for d in found], expected, atol=1e-5)
        for driver in found:
            assert driver.contribution > 0
            assert per_signal[row, names.index(driver.signal)] == pytest.approx(driver.contribution)
            # The value shown is the signal's own feature that pushed risk up the most.
            lead = contribs[row, features.index(driver.feature)]
            assert lead > 0 and explainer.specs[features.index(driver.feature)].signal == driver.signal
    assert any(found for found in drivers)


def test_explain_rows_is_the_serving_entry_point(model: ChurnModel, rows: pd.DataFrame) -> None:
    typical = typical_values(model.prepare(rows), model.feature_names)
    drivers = explain_rows(model, rows.head(5).drop(columns="customer_id"), top_k=2, typical=typical)
    assert len(drivers) == 5
    payload = json.dumps([[d.as_dict() for d in found] for found in drivers])  # JSON-able for a service
    assert "retained customers" in payload


def test_non_actionable_and_named_features_are_never_reasons(model: ChurnModel, rows: pd.DataFrame) -> None:
    specs = feature_specs(model)
    assert excluded_features(specs, ["non_actionable"]).tolist() == [False] * 4 + [True, False]
    assert excluded_features(specs, ["billing"]).tolist() == [False] * 3 + [True, False, True]
    drivers = explain_rows(model, rows, top_k=4, exclude=["non_actionable", "failed_payments"])
    signals = {d.signal for found in drivers for d in found}
    assert signals and not signals & {"tenure", "failed_payments"}
    everything = {d.signal for found in explain_rows(model, rows, top_k=4) for d in found}
    assert {"tenure", "failed_payments"} <= everything


def test_reasons_read_well() -> None:
    login, tenure, plan = SPECS[0], SPECS[4], SPECS[5]
    assert render(login, 41.2, 3.0) == "No login for 41 days (retained customers: 3)"
    assert render(login, np.nan, 3.0) == "No login yet (retained customers: 3)"
    assert render(login, 12.0) == "No login for 12 days"
    assert render(tenure, 20.0, 412.5) == "Customer for 20 days (retained customers: 412)"
    assert render(plan, "free", "basic") == "On the free plan (retained customers: basic)"
    trend = _spec("events_trend_30d", "activity_trend", "engagement", "Activity changed by {value:+.0%}")
    assert render(trend, -0.62, 0.05) == "Activity changed by -62% (retained customers: +5%)"
    counted = _spec(
        "satisfaction_last", "support", "support", "Last rating was {value:g}", description="Last rating."
    )
    assert render(counted, None) == "Last rating: none yet"


def test_typical_values_are_medians_and_modes() -> None:
    frame = pd.DataFrame(
        {"a": [1.0, 2.0, 9.0, np.nan], "b": pd.Categorical(["x", "y", "y", None]), "c": [np.nan] * 4}
    )
    assert typical_values(frame) == {"a": 2.0, "b": "y", "c": None}
    assert typical_values(frame, ["a", "missing"]) == {"a": 2.0}


@settings(max_examples=200, deadline=None)
@given(
    value=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True, width=32)),
    typical=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=False, width=32)),
)
def test_rendering_never_fails(value: float | None, typical: float | None) -> None:
    for spec in SPECS:
        text = render(spec, value, typical)
        assert text and "{" not in text
        has_typical = typical is not None and not math.isnan(typical)
        assert ("retained customers" in text) == has_typical


@pytest.mark.skipif(shutil.which("nvidia-smi") is None, reason="no NVIDIA GPU on this machine")
def test_gpu_contributions_equal_cpu(model: ChurnModel, rows: pd.DataFrame) -> None:
    """scoring.device=cuda: TreeSHAP on the GPU gives the CPU's values, and leaves the model on CPU."""
    np.testing.assert_allclose(
        contributions(model, rows, device="cuda"), contributions(model, rows), atol=1e-4
    )
    assert json.loads(model.trained_booster.save_config())["learner"]["generic_param"]["device"] == "cpu"


def test_signal_sums_of_a_row_do_not_depend_on_the_rows_beside_it() -> None:
    """A matrix product's rounding depends on how many rows it multiplies; the per-signal sums behind
    every reason must not (the service scores concurrent requests together, the risk list everyone)."""
    rng = np.random.default_rng(3)
    membership = np.zeros((60, 12), np.float32)
    membership[np.arange(60), rng.integers(0, 12, 60)] = 1
    membership[5] = 0  # an excluded feature belongs to no signal
    membership = membership[:, membership.sum(axis=0) > 0]
    signals = Signals(tuple(map(str, range(membership.shape[1]))), membership, ("f",) * membership.shape[1])
    contribs = (rng.normal(size=(5000, 61)) * 0.37).astype(np.float32)
    together = signals.sum(contribs)
    for start, count in [(0, 1), (7, 2), (100, 3), (64, 64), (1000, 999)]:
        np.testing.assert_array_equal(
            signals.sum(contribs[start : start + count]), together[start : start + count]
        )
    expected = contribs[:, :60].astype(np.float64) @ membership.astype(np.float64)
    np.testing.assert_allclose(together, expected, rtol=1e-5, atol=1e-5)
    assert signals.sum(contribs[:0]).shape == (0, membership.shape[1])


# ---------------------------------------------------------------------------------------------------
# Risk groups: what a short history explains goes to the tenure signal.


def _history_spec(name: str, signal: str, family: str, aggregate: str, window: int | None) -> FeatureSpec:
    return FeatureSpec(
        name=name,
        family=family,
        table="events",
        aggregate=aggregate,
        window_days=window,
        dtype="float64",
        reason=name + ": {value}",
        signal=signal,
    )


HISTORY_SPECS = [
    _history_spec("events_count_30d", "activity", "frequency", "count", 30),
    _history_spec("events_count_total", "activity", "frequency", "count", None),
    _history_spec("days_since_last_onboarding", "onboarding_activity", "recency", "days_since_last", None),
    _history_spec("failed_payments_30d", "failed_payments", "billing", "count", 30),
    _history_spec("events_trend_30d", "activity_trend", "engagement", "trend", 30),
    _history_spec("tenure_days", "tenure", "tenure", "tenure", None),
]
HISTORY_TYPICAL = {
    "events_count_30d": 20.0,
    "events_count_total": 200.0,
    "failed_payments_30d": 0.0,
    "events_trend_30d": 0.0,
}


def _history_explainer(typical: dict | None = None, specs: list[FeatureSpec] = HISTORY_SPECS) -> Explainer:
    frame = pd.DataFrame({s.name: [0.0] for s in specs})
    return Explainer.of(ChurnModel.untrained(frame, specs), HISTORY_TYPICAL if typical is None else typical)


def _history_values(rows: list[list[float]]) -> list[np.ndarray]:
    return [np.array(column, dtype=object) for column in zip(*rows, strict=True)]


def test_history_days_come_from_the_window_and_the_aggregate() -> None:
    days = [history_days(spec, 30) for spec in HISTORY_SPECS]
    assert days == [30, 30, 30, 30, 60, 0]  # a trend needs both of its windows; tenure is the history itself
    static = dataclasses.replace(HISTORY_SPECS[0], aggregate="static", window_days=None)
    assert history_days(static, 30) == 0  # an attribute known at signup needs no history


def test_a_short_history_is_credited_to_the_tenure_signal() -> None:
    explainer = _history_explainer()
    names = list(explainer.signals.names)
    #        30d count  total  onboarding  failed  trend  tenure
    values = [
        [5.0, 40.0, np.nan, 0.0, 0.0, 12.0],  # 12 days old: low usage and no onboarding yet
        [5.0, 40.0, np.nan, 0.0, 0.0, 400.0],  # the same values after 400 days are behaviour
        [5.0, 40.0, np.nan, 1.0, 0.0, 12.0],  # a failed payment is a failed payment at any age
        [35.0, 40.0, 3.0, 0.0, 0.0, 45.0],  # 45 days: the 30-day window is full, the trend is not
    ]
    contribs = np.array(
        [
            [0.6, 0.3, 0.25, -0.1, 0.2, 0.05, -2.0],
            [0.6, 0.3, 0.25, -0.1, 0.2, -0.2, -2.0],
            [0.2, 0.1, 0.25, 1.0, 0.0, 0.05, -2.0],
            [0.4, 0.3, -0.1, -0.1, 0.2, 0.0, -2.0],
        ],
        dtype=np.float32,
    )
    grouped = explainer.group_signals(_history_values(values), contribs, lifetime_days=30)
    plain = explainer.signals.sum(contribs)
    np.testing.assert_allclose(grouped.sum(axis=1), plain.sum(axis=1), atol=1e-6)  # nothing is lost
    tenure, activity = names.index("tenure"), names.index("activity")
    np.testing.assert_allclose(grouped[0, tenure], 0.05 + 0.6 + 0.3 + 0.25 + 0.2, atol=1e-6)
    assert grouped[0, activity] == 0 and grouped[0, names.index("failed_payments")] == pytest.approx(-0.1)
    np.testing.assert_array_equal(grouped[1], plain[1])
    assert grouped[2, names.index("failed_payments")] == pytest.approx(1.0)
    assert grouped[2, tenure] == pytest.approx(0.05 + 0.2 + 0.1 + 0.25)
    # 45 days: the 30-day count above the typical value and the lifetime total stay usage; the trend
    # (60 days) is newness.
    assert grouped[3, activity] == pytest.approx(0.7)
    assert grouped[3, tenure] == pytest.approx(0.2)
    assert grouped[3, names.index("activity_trend")] == 0


def test_without_a_typical_value_only_missing_values_are_newness() -> None:
    explainer = _history_explainer(typical={})
    names = list(explainer.signals.names)
    values = [[5.0, 40.0, np.nan, 0.0, 0.0, 12.0]]
    contribs = np.array([[0.6, 0.3, 0.25, -0.1, 0.2, 0.05, -2.0]], dtype=np.float32)
    grouped = explainer.group_signals(_history_values(values), contribs, lifetime_days=30)
    assert grouped[0, names.index("activity")] == pytest.approx(0.9)  # low, but low against what?
    assert grouped[0, names.index("tenure")] == pytest.approx(0.05 + 0.25)  # never onboarded: too early
    # A model without a tenure feature cannot tell newness: the plain signal sums.
    explainer = _history_explainer(specs=HISTORY_SPECS[:-1])
    np.testing.assert_array_equal(
        explainer.group_signals(
            _history_values([v[:-1] for v in values]), contribs[:, [0, 1, 2, 3, 4, 6]], 30
        ),
        explainer.signals.sum(contribs[:, [0, 1, 2, 3, 4, 6]]),
    )


def test_group_signals_of_a_row_do_not_depend_on_the_rows_beside_it() -> None:
    explainer = _history_explainer()
    rng = np.random.default_rng(5)
    n = 3000
    values = np.column_stack(
        [
            rng.poisson(20, n),
            rng.poisson(200, n),
            np.where(rng.random(n) < 0.5, np.nan, rng.exponential(30, n)),
            rng.poisson(0.2, n),
            rng.normal(0, 0.5, n),
            rng.uniform(0, 120, n),
        ]
    ).tolist()
    contribs = (rng.normal(size=(n, 7)) * 0.37).astype(np.float32)
    together = explainer.group_signals(_history_values(values), contribs, 30)
    for start, count in [(0, 1), (7, 2), (64, 64), (1000, 999)]:
        rows = slice(start, start + count)
        alone = explainer.group_signals(_history_values(values[rows]), contribs[rows], 30)
        np.testing.assert_array_equal(alone, together[rows])


def test_new_customers_get_the_new_customer_play_not_re_engagement() -> None:
    """The playbook's groups on the signals above: the same low usage is "new customer" at 12 days and
    "fading usage" at 400; a failed payment wins at any age; a full window with a steep drop is usage."""
    explainer = _history_explainer()
    values = [
        [5.0, 40.0, np.nan, 0.0, 0.0, 12.0],
        [5.0, 40.0, 3.0, 0.0, 0.0, 400.0],
        [25.0, 40.0, 3.0, 2.0, 0.0, 12.0],
        [2.0, 900.0, 3.0, 0.0, -0.8, 200.0],
    ]
    contribs = np.array(
        [
            [0.6, 0.3, 0.25, -0.1, 0.0, 0.05, -2.0],
            [0.6, 0.3, -0.1, -0.1, 0.0, -0.2, -2.0],
            [-0.1, 0.1, -0.1, 1.3, 0.0, 0.05, -2.0],
            [0.7, -0.2, -0.1, -0.1, 0.6, -0.2, -2.0],
        ],
        dtype=np.float32,
    )
    per_signal = explainer.group_signals(_history_values(values), contribs, lifetime_days=30)
    groups = assign_groups(per_signal, explainer.signals, load_playbook())
    assert groups.tolist() == ["new_customer", "fading_usage", "failed_payments", "fading_usage"]
