"""The ``churnml`` command line: one command per stage, options typed and documented."""

from __future__ import annotations

import json
import logging
import time
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from churnml import __version__
from churnml.config import Config, describe, load_config
from churnml.errors import ChurnmlError

app = typer.Typer(
    help="Predict which customers are about to leave, explain why, and serve the score.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config (default: embedded defaults).")
]
OverridesArg = Annotated[
    list[str] | None, typer.Argument(help="Config overrides as key.path=value, e.g. labels.horizon_days=60.")
]


def _user_errors(command):
    """Show churnml's own errors as one clear message (exit 2) instead of a traceback."""

    @wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ChurnmlError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
            raise typer.Exit(2) from None

    return wrapper


def _print_version(requested: bool) -> None:
    """``--version``: the installed churnml's version (the one the wheel and the MLflow model pin)."""
    if requested:
        console.print(f"churnml {__version__}", highlight=False)
        raise typer.Exit()


# Commands that keep a process running (the service): they leave glibc's memory settings alone.
LONG_RUNNING = frozenset({"serve"})
OWN_PROCESS = "own_process"  # in the context's obj when the churnml command runs (``run``), not an embedding


@app.callback()
def main(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print churnml's version and exit.", callback=_print_version, is_eager=True
        ),
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    own_process = isinstance(ctx.obj, dict) and ctx.obj.get(OWN_PROCESS, False)
    if own_process and ctx.invoked_subcommand not in LONG_RUNNING:
        # A batch step in a process of its own: reuse freed blocks (churnml.allocation). Not where
        # ``app`` is embedded (a test's CliRunner, a notebook), whose process is the caller's.
        from churnml.allocation import reuse_freed_blocks

        changed = reuse_freed_blocks()
        if changed:
            logging.getLogger("churnml.allocation").info("batch process: %s", ", ".join(changed))


@app.command("config")
@_user_errors
def config_command(
    config: ConfigOption = None,
    overrides: OverridesArg = None,
    keys: Annotated[
        bool, typer.Option("--keys", help="List every key with its default and meaning.")
    ] = False,
) -> None:
    """Print the effective configuration (after overrides; passwords in URLs masked), or document every key."""
    if keys:
        table = Table("key", "default", "meaning", show_lines=False)
        for key, default, meaning in describe():
            table.add_row(key, default, meaning)
        console.print(table)
        return
    import yaml

    from churnml.redact import redact

    resolved = load_config(config, overrides or [])
    console.print(yaml.safe_dump(redact(resolved.model_dump(mode="json")), sort_keys=False), highlight=False)


@app.command()
@_user_errors
def simulate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the tables to.")],
    customers: Annotated[int, typer.Option(help="Number of customers.", min=1)] = 5000,
    months: Annotated[int, typer.Option(help="Months of history.", min=1, max=120)] = 12,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, byte-identical files).")] = 42,
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    signal: Annotated[
        float,
        typer.Option(help="Churn signal strength: scales the risk factors' log-odds (1 = default).", min=0),
    ] = 1.0,
    programme: Annotated[
        bool,
        typer.Option(
            "--programme/--no-programme",
            help="Run the monthly retention programme: a contacts table with random holdouts, truth_contacts.",
        ),
    ] = False,
    exploration: Annotated[
        float,
        typer.Option(
            help="With --programme: share of the other customers also contacted at random each month.",
            min=0,
            max=1,
        ),
    ] = 0.0,
    chunk_customers: Annotated[
        int | None,
        typer.Option(
            help="Simulate and write this many customers at a time (whole blocks of 131,072): memory "
            "follows the chunk, not the business; each table becomes a Parquet dataset of part files.",
            min=1,
        ),
    ] = None,
) -> None:
    """Generate a realistic subscription business in the data contract's shape, with ground truth."""
    from churnml.data.simulate import simulate as run_simulation
    from churnml.data.simulate import simulate_chunks, write_simulation, write_simulation_chunks

    if fmt not in ("parquet", "csv"):
        raise ChurnmlError(f"--format must be parquet or csv, got {fmt!r}")
    if exploration and not programme:
        raise ChurnmlError("--exploration needs --programme (it explores beside the programme's list)")
    kind: Literal["parquet", "csv"] = "csv" if fmt == "csv" else "parquet"
    started = time.perf_counter()
    if chunk_customers is not None:
        if kind != "parquet":
            raise ChurnmlError("--chunk-customers writes Parquet datasets: use --format parquet")
        chunks = simulate_chunks(
            customers,
            months,
            seed,
            signal=signal,
            programme=programme,
            exploration=exploration,
            chunk_customers=chunk_customers,
        )
        try:
            path = write_simulation_chunks(chunks, out)
        except ValueError as exc:  # a directory that is not a simulation's
            raise ChurnmlError(str(exc)) from exc
        summary = json.loads((path / "simulation.json").read_text())
        table = Table(
            "table", "rows", title=f"simulated business → {path}, {summary['parts']} part files per table"
        )
        for name, rows in summary["rows"].items():
            table.add_row(name, f"{rows:,}")
        console.print(table)
        console.print(f"done in {time.perf_counter() - started:.1f} s")
        return
    sim = run_simulation(customers, months, seed, signal=signal, programme=programme, exploration=exploration)
    try:
        path = write_simulation(sim, out, fmt=kind)
    except ValueError as exc:  # a chunked simulation's directory
        raise ChurnmlError(str(exc)) from exc
    table = Table("table", "rows", title=f"simulated business → {path}")
    for name, frame in sim.tables.items():
        table.add_row(name, f"{len(frame):,}")
    table.add_row("truth_renewals", f"{len(sim.truth):,}")
    if sim.contact_truth is not None:
        table.add_row("truth_contacts", f"{len(sim.contact_truth):,}")
    if sim.uplift_truth is not None:
        table.add_row("truth_uplift", f"{len(sim.uplift_truth):,}")
    console.print(table)
    console.print(f"done in {time.perf_counter() - started:.1f} s")


def print_training_summary(result, elapsed: float) -> None:
    training_set = result.training_set
    summary = training_set.summary()
    table = Table("cutoff", "customers", "labeled", "churned", "churn rate", title="training set")
    for row in summary.itertuples(index=False):
        rate = "unlabeled" if row.labeled == 0 else f"{row.churn_rate:.1%}"
        churned = "-" if row.labeled == 0 else f"{int(row.churned):,}"
        table.add_row(str(row.cutoff.date()), f"{row.customers:,}", f"{row.labeled:,}", churned, rate)
    console.print(table)
    families: dict[str, int] = {}
    for spec in training_set.specs:
        families[spec.family] = families.get(spec.family, 0) + 1
    # Data the workers read themselves never comes to this process: its customers are the training set's.
    customers = (
        f"{len(result.dataset.customers):,}"
        if result.dataset is not None
        else f"{training_set.frame['customer_id'].nunique():,} (read by the workers)"
    )
    console.print(
        f"customers: {customers}   cutoffs: {len(summary)}   "
        f"rows: {len(training_set.frame):,}   features: {len(training_set.specs)} "
        f"({', '.join(f'{k} {v}' for k, v in sorted(families.items()))})"
    )
    for warning in result.dataset.warnings if result.dataset is not None else ():
        console.print(f"[yellow]warning:[/] {warning}")
    console.print(f"written: {result.path}   ({elapsed:.1f} s)")


@app.command()
@_user_errors
def features(config: ConfigOption = None, overrides: OverridesArg = None) -> None:
    """Build the point-in-time training set (features + label + cutoff) and write it as Parquet."""
    from churnml.pipelines import features as pipeline

    started = time.perf_counter()
    result = pipeline.run(load_config(config, overrides or []), announce=_announce)
    print_training_summary(result, time.perf_counter() - started)


def _announce(line: str) -> None:
    """Where the work runs (the Dask dashboard's address), said before it starts."""
    console.print(line, highlight=False, soft_wrap=True)


def print_train_summary(result, config: Config, elapsed: float) -> None:
    """Model vs baselines on the test cutoff, the registry decision, and where to look further."""
    from churnml.training.evaluate import summary_rows
    from churnml.training.tracking import ui_command

    b = result.split.boundaries
    console.print(
        f"development cutoffs {b['train_cutoffs'][0]} .. {b['train_cutoffs'][-1]} ({b['train_rows']:,} rows)   "
        f"{len(b['folds'])} rolling-origin folds validated on {', '.join(b['validation_cutoffs'])} "
        f"({b['validation_rows']:,} rows, {b['validation_churners']:,} churners)   "
        f"test {b['test_cutoff']} ({b['test_rows']:,} rows)"
    )
    if "cross_validation" in b and b["cross_validation"]["share"] < 1:
        sample = b["cross_validation"]
        console.print(
            f"cross-validated on a sample of {sample['customers']:,} customers ({sample['rows']:,} rows, "
            f"split.cv_customers); boosters fitted on every row, tested on every customer"
        )
    if result.study is not None:
        trials = result.study.trials
        console.print(
            f"tuning: {len(trials)} trials in study {result.study.study_name}, "
            f"best #{result.study.best_trial.number}"
        )
    candidates = Table(
        "candidate",
        "CV ROC-AUC",
        "CV log loss",
        "test ROC-AUC",
        "test ECE",
        title="candidates (pooled out-of-fold)",
    )
    chosen = result.model.info.get("candidate")
    for candidate in result.candidates:
        test = result.candidate_tests[candidate.name]
        mark = " (shipped)" if candidate.name == chosen else ""
        candidates.add_row(
            candidate.name + mark,
            f"{candidate.cv['roc_auc']:.4f}",
            f"{candidate.cv['log_loss']:.4f}",
            f"{test['roc_auc']:.4f}",
            f"{test['ece']:.4f}",
        )
    console.print(candidates)
    shape = f"{result.model.info['best_iteration'] + 1} trees" if result.model.linear is None else "linear"
    console.print(
        f"shipped: {chosen}, {shape}, refitted on {result.model.info.get('fit_rows', 0):,} rows "
        f"(model.refit_on={config.model.refit_on}); calibration: {result.model.calibrator.method}"
    )
    table = Table(
        "scorer",
        "ROC-AUC",
        "PR-AUC",
        "log loss",
        "Brier",
        "ECE",
        "lift@10%",
        "best profit",
        "at depth",
        title=f"test cutoff {b['test_cutoff']}",
    )
    for row in summary_rows(result.evaluation):
        table.add_row(
            row["scorer"],
            *(f"{row[k]:.4f}" for k in ("roc_auc", "pr_auc", "log_loss", "brier", "ece")),
            f"{row['lift_top10']:.2f}",
            f"{row['best_profit']:,.0f}",
            f"{row['best_fraction']:.1%}",
        )
    console.print(table)
    metrics = result.evaluation.model.metrics
    console.print(
        f"campaign: contact the top {metrics['best_fraction']:.1%} ({int(metrics['best_contacted']):,} customers): "
        f"expected profit {metrics['best_profit']:,.0f}, ROI {metrics['best_roi']:.0%}; at that depth "
        f"precision {metrics['op_precision']:.1%}, recall {metrics['op_recall']:.1%}"
    )
    if result.decision is not None:
        verdict = (
            "[green]promoted to champion[/]" if result.decision.promoted else "[yellow]stays challenger[/]"
        )
        console.print(
            f"registered {config.tracking.registered_model} v{result.version}: {verdict} ({result.decision.reason})"
        )
    console.print(f"model + plots: {result.out_dir}   MLflow run: {result.run_id}   ({elapsed:.1f} s)")
    console.print(f"MLflow UI: {ui_command(config)}", highlight=False)


@app.command()
@_user_errors
def train(
    config: ConfigOption = None,
    overrides: OverridesArg = None,
    training_set: Annotated[
        Path | None,
        typer.Option(
            help="Existing training set (file or directory) to train on; default: build it from the data."
        ),
    ] = None,
) -> None:
    """Tune, calibrate, evaluate, track in MLflow and register a churn model."""
    from churnml.features.training_set import read_training_set
    from churnml.pipelines import train as pipeline

    cfg = load_config(config, overrides or [])
    started = time.perf_counter()
    loaded = None
    if training_set is not None:
        if not training_set.exists():
            raise ChurnmlError(f"--training-set: {training_set} does not exist")
        loaded = read_training_set(training_set)
    result = pipeline.run(cfg, training_set=loaded, announce=_announce)
    print_train_summary(result, cfg, time.perf_counter() - started)


def _figure(text: str | None) -> str:
    try:
        return f"{float(text):.4f}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""


@app.command()
@_user_errors
def models(config: ConfigOption = None, overrides: OverridesArg = None) -> None:
    """List the registered model's versions with their aliases and test figures."""
    from churnml.training import registry
    from churnml.training.tracking import session

    cfg = load_config(config, overrides or [])
    name = cfg.tracking.registered_model
    with session(cfg):
        rows = registry.versions(name)
    if not rows:
        console.print(f"no registered model named {name!r} yet: run `churnml train`")
        return
    table = Table(
        "version", "aliases", "created", "test cutoff", "ROC-AUC", "ECE", "promotion decision", title=name
    )
    for row in rows:
        tags = row["tags"]
        table.add_row(
            row["version"],
            row["aliases"],
            row["created"],
            tags.get("test_cutoff", ""),
            _figure(tags.get("test_roc_auc")),
            _figure(tags.get("test_ece")),
            tags.get("promotion.reason", ""),
        )
    console.print(table)


@app.command()
@_user_errors
def promote(
    version: Annotated[str, typer.Argument(help="Model version to promote.")],
    config: ConfigOption = None,
    overrides: OverridesArg = None,
    alias: Annotated[str, typer.Option(help="Alias to point at the version.")] = "champion",
    reason: Annotated[str, typer.Option(help="Why (kept as a version tag).")] = "manual promotion",
) -> None:
    """Point an alias (default: champion) at a model version, overriding the automatic decision."""
    from mlflow.exceptions import MlflowException

    from churnml.training import registry
    from churnml.training.tracking import session

    cfg = load_config(config, overrides or [])
    name = cfg.tracking.registered_model
    with session(cfg):
        try:
            registry.promote(name, version, alias=alias, reason=reason)
        except MlflowException as exc:
            raise ChurnmlError(f"cannot promote {name} v{version}: {exc.message}") from None
    console.print(f"{name} v{version} is now '{alias}'")


def drift_line(summary: dict[str, Any]) -> str:
    """The scoring run's drift in one line: a warning past the thresholds, else the score's shift."""
    from churnml.risk.drift import warning_text

    if summary["reference"] is None:
        return f"drift: {summary['note']}"
    if warning := warning_text(summary):
        return f"[bold yellow]WARNING {escape(warning)}[/]"
    score = summary["score"] or {}
    shift = f"score PSI {score['psi']:.3f}, KS {score['ks']:.3f}; " if score else ""
    return (
        f"drift since training ({summary['reference']}): {shift}no feature past the thresholds "
        f"({summary['features_compared']} compared)"
    )


def print_score_summary(result, config: Config, elapsed: float, top: int = 10) -> None:
    """Headline figures, risk groups, the top of the ranked list and where the report is."""
    from churnml.risk.report import top_table
    from churnml.risk.risk_list import load_playbook

    s = result.summary
    console.print(
        f"as of {s['as_of'][:10]}: {int(s['customers_scored']):,} active customers scored with "
        f"{s['model_uri']}{' v' + s['model_version'] if s['model_version'] else ''}; "
        f"[bold]{int(s['customers_at_risk']):,} at risk[/] ({s['share_at_risk']:.1%}), "
        f"expected revenue at risk {s['revenue_at_risk_at_risk_customers']:,.0f}, "
        f"expected churners next period {s['expected_churners']:,.1f}"
        + (
            f", {int(s['newly_at_risk']):,} newly at risk since {s['previous_as_of'][:10]}"
            if s["previous_as_of"]
            else ""
        )
    )
    console.print(
        f"contacting the {int(s['customers_to_contact']):,} customers to contact is expected to keep "
        f"{s['expected_saves']:,.1f} of them ({s['expected_saves_basis']}); "
        f"{int(s['customers_held_out']):,} held out to measure it (`churnml review`)",
        highlight=False,
    )
    if s.get("uplift"):
        console.print(
            f"uplift ({s['uplift']['model_uri']}): expected net value of those contacts "
            f"{s['expected_net_value']:,.0f}; {s['sleeping_dogs_to_contact']:,} of them are sleeping dogs "
            f"(a contact is expected to raise their churn); most profitable depth {s['best_depth']:,} customers",
            highlight=False,
        )
    groups = Table("risk group", "customers", "revenue at risk", "play", "owner", title="risk groups")
    for row in result.groups.itertuples(index=False):
        if row.customers:
            groups.add_row(
                row.label, f"{row.customers:,}", f"{row.revenue_at_risk:,.0f}", row.play, row.owner
            )
    console.print(groups)
    # Two lines per customer (figures, then the top reason at full width): readable at 80 columns.
    by = {"revenue": "revenue at risk", "probability": "churn probability", "net_value": "net value"}[
        s["rank_by"]
    ]
    console.print(
        f"\n[bold]top {top} by {by}[/]  (rank, customer, churn probability, band, revenue at risk, group → play)"
    )
    for rank, customer, probability, band, at_risk, _segment, group, driver, play in top_table(
        result.risk_list, top, load_playbook(config.risk.playbook)
    ):
        action = f"{group} → {play}" if group else "not at risk"
        console.print(
            f"{rank:>3}  {customer:<10} {probability:>6}  {band:<7}{at_risk:>9}  {action}", highlight=False
        )
        if driver:
            console.print(Padding(Text(driver, style="dim"), (0, 0, 0, 7)))
    console.print(drift_line(s["drift"]), highlight=False)
    t = s["timings"]
    console.print(
        f"explained {s['customers_explained']:,} customers ({s['rows_contributions']:,} SHAP rows, "
        f"{s['contributions_seconds']:.1f} s on {s['explain_device']}); total {elapsed:.1f} s "
        f"(features {t['features_s']:.1f} s, explain {t['explain_s']:.1f} s, report {t['report_s']:.1f} s)"
    )
    # Paths are never wrapped, so they can be copied from any terminal.
    console.print(f"risk list: {result.out_dir / 'risk_list.csv'}", highlight=False, soft_wrap=True)
    console.print(f"report: [bold]{result.report_path}[/]", highlight=False, soft_wrap=True)


@app.command()
@_user_errors
def score(
    config: ConfigOption = None,
    overrides: OverridesArg = None,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Score customers active at this date (default: end of the data)."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="Model URI or directory (default: models:/<tracking.registered_model>@champion)."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output directory (default: <output.dir>/<name>/score).")
    ] = None,
    top: Annotated[int, typer.Option(help="Rows of the ranked list to print.", min=0)] = 10,
) -> None:
    """Score active customers: ranked risk list with drivers, risk groups and plays, and an HTML report."""
    from churnml.pipelines import score as pipeline

    extra = [f"scoring.out_dir={out}"] if out is not None else []
    cfg = load_config(config, [*(overrides or []), *extra])
    started = time.perf_counter()
    result = pipeline.run(cfg, as_of=as_of, model_uri=model, announce=_announce)
    print_score_summary(result, cfg, time.perf_counter() - started, top)


def _pct(value: float) -> str:
    return "–" if value != value else f"{value:.1%}"


def _num(value: float, spec: str) -> str:
    return "–" if value != value else format(value, spec)


def print_review_summary(result, config: Config) -> None:
    """Per reviewed list: the model's hold-up, each play's effect, saves and ROI; lists still waiting."""
    from churnml.risk.review import public_plays

    for review in result.reviews:
        m = review.model
        console.print(
            f"[bold]list of {review.as_of.date()}[/] ({m['labeled']:,} customers with an outcome): realised churn "
            f"{_pct(m['churn_rate'])} (predicted {_pct(m['predicted_churn_rate'])}), ROC-AUC "
            f"{_num(m['roc_auc'], '.3f')} ({_num(m['roc_auc_not_contacted'], '.3f')} not contacted), lift at the "
            f"contacted depth {_num(m['lift_at_depth'], '.2f')}, ECE {_num(m['ece_not_contacted'], '.4f')}",
            highlight=False,
        )
        table = Table(
            "play",
            "contacted / held out",
            "churn held out → contacted",
            "effect, pp (95% CI)",
            "saved",
            "ROI",
            title=f"did it work? (arms from the {review.source})",
        )
        for row in public_plays(review.plays).to_dict(orient="records"):
            table.add_row(
                str(row["play"]),
                f"{row['contacted']:,} / {row['held_out']:,}",
                f"{_pct(row['churn_held_out'])} → {_pct(row['churn_contacted'])}",
                f"{_num(row['effect'] * 100, '+.1f')} ({_num(row['effect_low'] * 100, '+.1f')}, "
                f"{_num(row['effect_high'] * 100, '+.1f')})",
                _num(row["saved"], ",.1f"),
                _num(row["roi"], ".2f"),
            )
        console.print(table)
        for note in review.notes:
            console.print(f"  note: {note}", style="dim", highlight=False)
    for stamp, ready in result.waiting:
        console.print(f"list of {stamp.date()}: outcomes observed from {ready.date()}, not reviewed yet")
    if result.measured is not None:
        m = result.measured
        usable = 0 < m["success_rate"] <= 1
        console.print(
            f"measured success rate over {len(m['lists'])} list(s) ({', '.join(m['plays_judged'])}): "
            f"[bold]{m['success_rate']:.0%}[/] (95% CI {m['success_rate_low']:.0%} to {m['success_rate_high']:.0%}); "
            f"campaign.success_rate assumes {config.campaign.success_rate:.0%}. "
            + (
                "Not a usable rate: the contacts did not keep customers"
                if not usable
                else "Use it: campaign.effect=measured"
                if result.measured_file is not None
                else "This list only: a review of every list (without --as-of) saves the rate that "
                "campaign.effect=measured uses"
            ),
            highlight=False,
        )
    elif result.reviews:
        console.print(
            f"no play had {config.review.min_arm} or more customers in both arms: no success rate measured",
            highlight=False,
        )
    if not result.reviews and not result.waiting:
        console.print("no archived list to review")
    for page in result.pages:
        console.print(f"review: [bold]{page}[/]", highlight=False, soft_wrap=True)


@app.command()
@_user_errors
def review(
    config: ConfigOption = None,
    overrides: OverridesArg = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="Review only the archived list of this date (default: every observed one)."
        ),
    ] = None,
) -> None:
    """What happened to past risk lists: realised churn, the model's hold-up, each play's measured effect."""
    from churnml.pipelines import review as pipeline

    cfg = load_config(config, overrides or [])
    result = pipeline.run(cfg, as_of=as_of)
    print_review_summary(result, cfg)


@app.command()
@_user_errors
def uplift(config: ConfigOption = None, overrides: OverridesArg = None) -> None:
    """Who each play saves: uplift models from the contacts table's randomised arms, evaluated out of time."""
    from churnml.pipelines import uplift as pipeline

    cfg = load_config(config, overrides or [])
    result = pipeline.run(cfg)
    for note in result.model.notes:
        console.print(f"[yellow]warning[/]: {escape(note)}", highlight=False, soft_wrap=True)
    table = Table(
        "play",
        "ranking",
        "customers",
        "Qini",
        "AUUC",
        "uplift at budget",
        title=(f"uplift on the test lists {', '.join(result.test_lists)} (held out of training)"),
    )
    for row in result.evaluation.to_dict(orient="records"):
        table.add_row(
            str(row["play"]),
            str(row["ranking"]),
            f"{row['customers']:,}",
            _num(row["qini"], ".4f"),
            _num(row["auuc"], ".4f"),
            _num(row["uplift_at_budget"], "+.3f"),
        )
    console.print(table)
    if result.model_version:
        console.print(
            f"registered as {cfg.uplift_registered_model()} v{result.model_version} (champion): "
            "`churnml score` now adds uplift, best play and net value",
            highlight=False,
        )
    console.print(f"uplift: [bold]{result.out_dir}[/]", highlight=False, soft_wrap=True)


@app.command()
@_user_errors
def serve(
    config: ConfigOption = None,
    overrides: OverridesArg = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Model URI, model directory or bentoml:<tag> (default: models:/<tracking.registered_model>@champion).",
        ),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default: serving.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: serving.port).", min=1, max=65535)] = None,
) -> None:
    """Start the BentoML prediction service (/predict, /explain, /score_history) on the champion model."""
    from churnml.serving import launch

    raise typer.Exit(launch.run_server(config, overrides or [], model=model, host=host, port=port))


@app.command()
@_user_errors
def bento(
    config: ConfigOption = None,
    overrides: OverridesArg = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Model to pack (default: the champion).")
    ] = None,
) -> None:
    """Build a Bento (service + churnml wheel + model) to containerize with `bentoml containerize`."""
    from churnml.serving import launch

    tag = launch.build_bento(config, overrides or [], model=model)
    console.print(
        f"model {tag} packed; `bentoml list` shows the Bento, `bentoml containerize <bento>` builds an image"
    )


@app.command()
@_user_errors
def demo(config: ConfigOption = None, overrides: OverridesArg = None) -> None:
    """Run the whole job end to end on embedded defaults (the bundled simulator's business, with its
    retention programme): train and score as of an earlier month, score again at the end of the data,
    then review the earlier list now that its outcomes are known."""
    from churnml.errors import ChurnmlError
    from churnml.pipelines import features as pipeline
    from churnml.pipelines import review as review_pipeline
    from churnml.pipelines import score as score_pipeline
    from churnml.pipelines import train as train_pipeline
    from churnml.risk.review import last_reviewable

    # A small trial budget keeps the demo to a few minutes; `churnml train` uses the configured one.
    settings = ["tune.n_trials=10", "simulate.programme=true", *(overrides or [])]
    cfg: Config = load_config(config, settings)
    full = pipeline.load_data(cfg)
    earlier = last_reviewable(full, cfg)
    if earlier is None:
        raise ChurnmlError("the data is too short for a list whose outcomes are known: simulate more months")
    then = load_config(config, [*settings, f"data.end={earlier.isoformat()}"])
    console.rule(f"[bold]churnml demo: features (the data as of {earlier.date()})")
    started = time.perf_counter()
    result = pipeline.run(then)
    print_training_summary(result, time.perf_counter() - started)
    console.rule("[bold]churnml demo: train")
    started = time.perf_counter()
    trained = train_pipeline.run(then, training_set=result.training_set)
    print_train_summary(trained, then, time.perf_counter() - started)
    for stage, data in (
        (f"score as of {earlier.date()}", result.dataset or pipeline.load_data(then)),
        ("score at the end of the data", full),
    ):
        console.rule(f"[bold]churnml demo: {stage}")
        started = time.perf_counter()
        # The model just trained, not the registry's champion: an earlier champion may have been fitted
        # on the very outcomes this demo reviews.
        just_trained = (
            f"models:/{cfg.tracking.registered_model}/{trained.version}"
            if trained.version
            else trained.model_uri
        )
        scored = score_pipeline.run(cfg, dataset=data, model_uri=just_trained)
        print_score_summary(scored, cfg, time.perf_counter() - started)
    console.rule(f"[bold]churnml demo: review the list of {earlier.date()}")
    print_review_summary(review_pipeline.run(cfg, dataset=full), cfg)
    again = " ".join(["simulate.programme=true", *(overrides or [])])
    console.print(
        f"to review again on this business: churnml review {again}", highlight=False, soft_wrap=True
    )


def run() -> None:
    """The ``churnml`` command (the console script): ``app`` in a process of its own."""
    app(obj={OWN_PROCESS: True})


if __name__ == "__main__":
    run()
