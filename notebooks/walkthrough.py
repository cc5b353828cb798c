# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # churnml walkthrough: from raw history to an evaluated churn model
#
# A data scientist's tour: explore the simulated business, read churn rate by feature decile, train a
# tuned and calibrated model, and read its evaluation. Everything comes from `churnml`, so this notebook
# is the library's documentation that runs: the test suite executes it at small sizes
# (`tests/model/test_notebooks.py`), so it never rots.
#
# Open `walkthrough.ipynb` in Jupyter. It is paired with `walkthrough.py` (Jupytext's percent format:
# diff-friendly, and runnable as a script) by jupytext (dev extra): with jupytext installed, saving either
# in Jupyter updates the other; after editing the `.py` by hand, run `jupytext --sync notebooks/walkthrough.py`.
# The notebook test fails when the two hold different cells.
# Sizes come from the environment: `CHURNML_NB_CUSTOMERS` (default 5000), `CHURNML_NB_TRIALS` (10),
# `CHURNML_NB_OUT` (`outputs/notebook`).

# %%
import dataclasses
import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from churnml.training.cohorts import churn_by_decile
from churnml.config import load_config
from churnml.training.evaluate import summary_rows
from churnml.pipelines import train
from churnml.data.simulate import simulate
from churnml.features.training_set import build_training_set

CUSTOMERS = int(os.environ.get("CHURNML_NB_CUSTOMERS", "5000"))
TRIALS = int(os.environ.get("CHURNML_NB_TRIALS", "10"))
OUT = Path(os.environ.get("CHURNML_NB_OUT", "outputs/notebook")).resolve()
OUT.mkdir(parents=True, exist_ok=True)
pd.set_option("display.width", 140)

config = load_config(
    None,
    [
        f"simulate.customers={CUSTOMERS}",
        f"tune.n_trials={TRIALS}",
        "tune.progress_bar=false",
        f"output.dir={OUT}",
        f"tracking.uri=sqlite:///{OUT / 'mlflow.db'}",  # this notebook's own MLflow store
        "name=walkthrough",
    ],
)

# %% [markdown]
# ## 1. The business
#
# The bundled simulator writes every table of the data contract for a subscription software business,
# plus the ground truth of each renewal decision: the true churn probability and each factor's
# contribution (see `docs/simulator.md`). Real data goes through `churnml.data.load.load_dataset` instead.

# %%
sim = simulate(config.simulate.customers, config.simulate.months, config.simulate.seed, config.simulate.start)
dataset = sim.to_dataset()
print({name: len(frame) for name, frame in sim.tables.items()}, "data end:", sim.end.date())
sim.tables["customers"].head()

# %%
events = sim.tables["events"]
events["event_type"].value_counts()

# %% [markdown]
# Weekly active customers: customers who leave usually slip away gradually, so activity fades before the
# cancellation.

# %%
weekly = events.set_index("timestamp").groupby(pd.Grouper(freq="W"))["customer_id"].nunique()
ax = weekly.plot(figsize=(8, 3), title="weekly active customers")
ax.set_ylabel("customers")
plt.show()

# %% [markdown]
# What drives churn in truth: the mean contribution of each factor to the log-odds of churning at a
# renewal, for renewals that ended in churn and those that did not.

# %%
truth = sim.truth
factors = [c for c in truth.columns if c.startswith("contrib_") and c != "contrib_base"]
truth.groupby("churned")[factors].mean().T.rename(columns={False: "renewed", True: "churned"})

# %%
truth["true_cause"].value_counts(normalize=True).rename("share of churn decisions")

# %% [markdown]
# ## 2. The training set
#
# One row per (customer, monthly cutoff): features computed strictly from rows before the cutoff, and the
# label: does the subscription end within 30 days of the cutoff without renewal? The last cutoffs have no
# label yet (their horizon runs past the end of the data) and are kept for scoring only.

# %%
training_set = build_training_set(dataset, config.labels, config.features)
training_set.summary()

# %%
pd.DataFrame([dataclasses.asdict(s) for s in training_set.specs])[
    ["name", "family", "table", "window_days", "aggregate", "reason"]
].head(12)

# %% [markdown]
# ## 3. Cohorts: churn rate by feature decile
#
# A feature whose churn rate is flat across its deciles carries little signal alone; a slope shows which
# direction is risky. Missing values (e.g. no ticket ever) get their own bar.

# %%
cohort_features = ["days_since_last_login", "events_trend_30d", "tickets_open", "failed_payments_90d"]
cohort_features = [f for f in cohort_features if f in training_set.frame.columns]
fig, axes = plt.subplots(1, len(cohort_features), figsize=(4 * len(cohort_features), 3), sharey=True)
for ax, feature in zip(axes, cohort_features, strict=True):
    table = churn_by_decile(training_set.frame, feature)
    ax.bar(table["bin"], table["churn_rate"])
    ax.set_title(feature, fontsize=9)
    ax.set_xlabel("decile")
axes[0].set_ylabel("churn rate")
plt.show()
churn_by_decile(training_set.frame, cohort_features[0])

# %% [markdown]
# ## 4. Train
#
# `churnml.pipelines.train` in one call: out-of-time split, Optuna-tuned XGBoost, calibration on a held-out
# slice, evaluation on the latest fully labeled cutoff against a recency rule and logistic regression,
# an MLflow run with nested trial runs, and registration as `churn-model` (champion if it beats the
# current one).

# %%
result = train.run(config, training_set=training_set)
print(
    "split:", {k: v for k, v in result.split.boundaries.items() if k.endswith(("cutoff", "cutoffs", "rows"))}
)
print("registered version", result.version, "-", result.decision.reason if result.decision else "")

# %% [markdown]
# ## 5. Read the evaluation
#
# All scorers on the same out-of-time test rows. Ranking: ROC-AUC, PR-AUC, lift in the riskiest 10%.
# Probability quality: log loss, Brier score and the expected calibration error (ECE): after calibration a
# 30% risk should mean 30%.

# %%
pd.DataFrame(summary_rows(result.evaluation)).set_index("scorer").round(4)

# %%
model = result.evaluation.model
calibration = model.calibration
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
left.plot([0, 1], [0, 1], "k:", lw=1)
left.plot(calibration["predicted"], calibration["observed"], "o-")
left.set(xlabel="predicted churn probability", ylabel="observed churn rate", title="calibration")
profit = model.profit
right.plot(profit["fraction"], profit["profit"])
right.set(xlabel="share of customers contacted", ylabel="expected profit", title="retention campaign")
plt.show()
print(
    f"best depth: contact the top {model.metrics['best_fraction']:.1%}, "
    f"expected profit {model.metrics['best_profit']:,.0f}, ROI {model.metrics['best_roi']:.0%}"
)

# %% [markdown]
# Which features the trees use most (total gain), and where the run lives: every plot above is also an
# artifact of the MLflow run (`mlflow ui --backend-store-uri sqlite:///<OUT>/mlflow.db`).

# %%
result.evaluation.importance.head(10)

# %%
print("evaluation files:", sorted(p.name for p in (result.out_dir / "evaluation").iterdir()))
print("MLflow run:", result.run_id, "model:", result.model_uri)
