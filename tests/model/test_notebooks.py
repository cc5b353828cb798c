"""Every notebook runs top to bottom at small sizes, so the walkthroughs never rot.

Notebooks are Jupytext percent-format scripts: executing one as a script runs exactly its cells, in order.
Each is paired with an ``.ipynb`` (what Jupyter opens) holding the same cells: jupytext keeps the pair in
sync when either is saved in Jupyter, ``jupytext --sync notebooks/<name>.py`` after a hand edit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest
from nbformat import NotebookNode

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.py"))
SMALL = {"CHURNML_NB_CUSTOMERS": "1200", "CHURNML_NB_TRIALS": "2"}


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "notebooks/ holds no walkthrough"


def _cells(notebook: NotebookNode) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_the_ipynb_pair_holds_the_same_cells(notebook: Path) -> None:
    pair = notebook.with_suffix(".ipynb")
    sync = f"run `jupytext --sync notebooks/{notebook.name}`"
    assert pair.is_file(), f"{pair.name} is missing: {sync}"
    script = jupytext.read(notebook)
    assert "ipynb" in script.metadata["jupytext"]["formats"].split(","), f"{notebook.name} is not paired"
    assert _cells(jupytext.read(pair)) == _cells(script), f"{pair.name} differs from {notebook.name}: {sync}"


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(notebook: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        **SMALL,
        "CHURNML_NB_OUT": str(tmp_path / "out"),
        "MPLBACKEND": "Agg",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        [sys.executable, str(notebook)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{notebook.name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    # The walkthrough ends by training: its evaluation files and MLflow store exist.
    assert "best depth: contact the top" in done.stdout
    assert (tmp_path / "out" / "mlflow.db").exists()
    assert (tmp_path / "out" / "walkthrough" / "train" / "evaluation" / "metrics.json").exists()
