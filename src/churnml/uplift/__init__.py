"""Uplift: which customers a play actually saves, learned from past contacts with randomised holdouts.

A high churn risk does not mean a contact can change it (Ascarza, "Retention futility", JMR 2018). Here
each play gets a model of the *reduction* in churn probability a contact brings, per customer:

- ``rows``: the contacts history as point-in-time rows (customer, list date as cutoff, play, arm, churn
  label), with the churn model's own feature builders;
- ``learner``: X- and T-learners on XGBoost, one per play, falling back to the play's measured average
  effect where the arms are too small; saved as JSON, never pickled;
- ``evaluate``: Qini and uplift curves, Qini coefficient, AUUC, uplift at a contact budget, the same
  against a known true effect (the simulator's), and targeting policies compared at one budget.
"""
