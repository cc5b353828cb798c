"""The ``churnml`` command line: one command per stage, options typed and documented."""

from __future__ import annotations

import logging
import time
from functools import wraps
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

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


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


@app.command("config")
@_user_errors
def config_command(
    config: ConfigOption = None,
    overrides: OverridesArg = None,
    keys: Annotated[
        bool, typer.Option("--keys", help="List every key with its default and meaning.")
    ] = False,
) -> None:
    """Print the effective configuration (after overrides), or document every key."""
    if keys:
        table = Table("key", "default", "meaning", show_lines=False)
        for key, default, meaning in describe():
            table.add_row(key, default, meaning)
        console.print(table)
        return
    import yaml

    resolved = load_config(config, overrides or [])
    console.print(yaml.safe_dump(resolved.model_dump(mode="json"), sort_keys=False), highlight=False)


@app.command()
@_user_errors
def simulate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the tables to.")],
    customers: Annotated[int, typer.Option(help="Number of customers.", min=1)] = 5000,
    months: Annotated[int, typer.Option(help="Months of history.", min=1, max=120)] = 12,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, byte-identical files).")] = 42,
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
) -> None:
    """Generate a realistic subscription business in the data contract's shape, with ground truth."""
    from churnml.simulate import simulate as run_simulation
    from churnml.simulate import write_simulation

    if fmt not in ("parquet", "csv"):
        raise ChurnmlError(f"--format must be parquet or csv, got {fmt!r}")
    started = time.perf_counter()
    sim = run_simulation(customers, months, seed)
    path = write_simulation(sim, out, fmt=fmt)
    table = Table("table", "rows", title=f"simulated business → {path}")
    for name, frame in sim.tables.items():
        table.add_row(name, f"{len(frame):,}")
    table.add_row("truth_renewals", f"{len(sim.truth):,}")
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
    console.print(
        f"customers: {len(result.dataset.customers):,}   cutoffs: {len(summary)}   "
        f"rows: {len(training_set.frame):,}   features: {len(training_set.specs)} "
        f"({', '.join(f'{k} {v}' for k, v in sorted(families.items()))})"
    )
    for warning in result.dataset.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    console.print(f"written: {result.path}   ({elapsed:.1f} s)")


@app.command()
@_user_errors
def features(config: ConfigOption = None, overrides: OverridesArg = None) -> None:
    """Build the point-in-time training set (features + label + cutoff) and write it as Parquet."""
    from churnml.pipelines import features as pipeline

    started = time.perf_counter()
    result = pipeline.run(load_config(config, overrides or []))
    print_training_summary(result, time.perf_counter() - started)


@app.command()
@_user_errors
def demo(config: ConfigOption = None, overrides: OverridesArg = None) -> None:
    """Run the whole job end to end on embedded defaults (the bundled simulator's business)."""
    from churnml.pipelines import features as pipeline

    cfg: Config = load_config(config, overrides or [])
    console.rule("[bold]churnml demo: features")
    started = time.perf_counter()
    result = pipeline.run(cfg)
    print_training_summary(result, time.perf_counter() - started)


if __name__ == "__main__":
    app()
