"""Errors a user can act on: each names the table, the column and a few offending rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


def example_rows(frame: pd.DataFrame, mask: pd.Series | np.ndarray | None = None, n: int = 3) -> str:
    """Render up to ``n`` offending rows (with their row numbers in the input) for a message."""
    rows = frame if mask is None else frame.loc[mask]
    if rows.empty:
        return ""
    return rows.head(n).to_string(max_colwidth=40)


class ChurnmlError(Exception):
    """Base class for errors churnml reports to users (the CLI prints them without a traceback)."""


class ModelLoadError(ChurnmlError):
    """A model that is not churnml's data-only format, or whose files are missing or corrupt."""


class ConfigError(ChurnmlError):
    """An invalid configuration: names the key and what was expected."""


class DataValidationError(ChurnmlError):
    """Input data that breaks the contract."""

    def __init__(
        self, table: str, column: str | None, problem: str, examples: str = "", count: int | None = None
    ):
        self.table, self.column, self.problem, self.examples, self.count = (
            table,
            column,
            problem,
            examples,
            count,
        )
        where = f"table '{table}'" + (f", column '{column}'" if column else "")
        counted = f" ({count} rows)" if count is not None else ""
        message = f"{where}: {problem}{counted}"
        if examples:
            message += f"\nexample rows:\n{examples}"
        super().__init__(message)


@dataclass(frozen=True)
class DataWarning:
    """A problem that was handled (rows dropped) rather than fatal; counted and reported."""

    table: str
    column: str | None
    problem: str
    count: int
    examples: str = ""

    def __str__(self) -> str:
        where = f"{self.table}" + (f".{self.column}" if self.column else "")
        return f"{where}: {self.problem} ({self.count} rows)"
