"""Is a pricing change flagged as drift on the money features, and on nothing else? (issue 12 §4)

    python benchmarks/bench_drift.py --customers 3000 --trials 3

Simulates a business (``churnml.data.simulate``, unchanged), then applies a pricing change halfway as a
data transformation: from the change date on, payments and the MRR of new subscriptions and new
customers are ``--factor`` times higher; behaviour is untouched. Trains with the real pipeline on the
data before the change (cut there by the loader, as ``data.end`` would), then scores the same later
date twice with that model: on the changed business and on the unchanged one (the control). Prints
each run's flagged features and the per-feature PSI/KS of the money features and of the features with
the most drift, and whether the change flagged exactly the money features.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import pandas as pd

from churnml.config import load_config
from churnml.data.load import dataset_from_frames
from churnml.data.simulate import PRICE_COLUMNS, price_change, simulate
from churnml.features.training_set import build_training_set
from churnml.pipelines import score, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--factor", type=float, default=1.4, help="price multiplier after the change")
    parser.add_argument("--after", type=int, default=3, help="months after the change that are scored")
    parser.add_argument("--out", type=Path, default=None, help="output.dir (default: a temp dir)")
    parser.add_argument("overrides", nargs="*", help="extra config overrides key.path=value")
    args = parser.parse_args()
    logging.getLogger("churnml.data.load").setLevel(logging.ERROR)  # the cut's "rows after end dropped"
    out = args.out or Path(tempfile.mkdtemp(prefix="churnml-bench-drift-"))
    config = load_config(
        None,
        [
            f"simulate.customers={args.customers}",
            f"simulate.months={args.months}",
            f"simulate.seed={args.seed}",
            f"tune.n_trials={args.trials}",
            "tune.progress_bar=false",
            f"output.dir={out}",
            *args.overrides,
        ],
    )
    sim = simulate(args.customers, args.months, args.seed, config.simulate.start)
    change = pd.Timestamp(config.simulate.start) + pd.DateOffset(months=args.months // 2)
    as_of = change + pd.DateOffset(months=args.after)
    before = dataset_from_frames(sim.to_dataset().tables, end=change)
    trained = train.run(config, training_set=build_training_set(before, config.labels, config.features))
    money = [s.name for s in trained.model.specs if s.column in PRICE_COLUMNS]
    print(f"\nprice change x{args.factor} on {change.date()}; trained on the data before it")
    print(f"reference: {trained.model.reference['source'] if trained.model.reference else None}")
    print(f"money features ({len(money)}): {', '.join(money)}")

    tables = {}
    for name, dataset in (
        ("control", sim.to_dataset()),
        ("shifted", price_change(sim.to_dataset(), change, args.factor)),
    ):
        settings = config.model_copy(
            update={
                "scoring": config.scoring.model_copy(
                    update={"out_dir": str(out / name), "log_to_mlflow": False}
                )
            }
        )
        result = score.run(settings, as_of=as_of, dataset=dataset)
        tables[name] = pd.read_csv(result.out_dir / "drift.csv").set_index("feature")
        print(f"{name}: scored {len(result.risk_list):,} customers at {as_of.date()}")
    control, shifted = tables["control"], tables["shifted"]
    figures = pd.DataFrame(
        {
            "money": [f in money for f in shifted.index],
            "psi_control": control["psi"],
            "psi_shifted": shifted["psi"],
            "ks_control": control["ks"],
            "ks_shifted": shifted["ks"],
            "ks_noise": shifted["ks_noise"],
            "flag_control": control["flagged"],
            "flag_shifted": shifted["flagged"],
        },
        index=shifted.index,
    )
    limits = config.drift
    print(f"\nflagged at PSI >= {limits.psi_warn}, KS >= {limits.ks_warn}, unseen >= {limits.unseen_warn}")
    pd.set_option("display.width", 160)
    print("\nscore and money features:")
    print(figures.loc[["churn_probability", *money]].round(3).to_string())
    others = figures.loc[~figures["money"] & (figures.index != "churn_probability")]
    shown = max(15, int(others["flag_shifted"].sum()))
    print(f"\nthe other features: flagged ones, then by PSI ({shown} of {len(others)}):")
    ordered = others.sort_values(["flag_shifted", "psi_shifted"], ascending=False, kind="stable")
    print(ordered.head(shown).round(3).to_string())

    newly = set(figures.index[figures["flag_shifted"] & ~figures["flag_control"]])
    money_flagged = set(figures.index[figures["money"] & figures["flag_shifted"]])
    print(
        f"\nflagged by the change (shifted, not control): {len(newly)} features: {', '.join(sorted(newly))}"
    )
    print(f"money features flagged: {len(money_flagged)} of {len(money)}")
    print(f"money features flagged in the control: {int((figures['money'] & figures['flag_control']).sum())}")
    print(f"non-money features flagged by the change: {len(newly - set(money))}")
    print(
        f"non-money features flagged in both runs (drift of the business itself since the reference): "
        f"{int(others['flag_control'].sum())}: {', '.join(others.index[others['flag_control']])}"
    )
    ok = (
        newly == money_flagged
        and bool(money_flagged)
        and not (figures["money"] & figures["flag_control"]).any()
    )
    print(f"the change flags the money features and nothing else: {'yes' if ok else 'NO'}")


if __name__ == "__main__":
    main()
