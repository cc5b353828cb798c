"""numpy's huge-page advice and Arrow's pool change only where page faults would stall, never against the user."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from churnml import allocation


def _setting(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text + "\n")
    return path


@pytest.mark.parametrize(
    ("enabled", "defrag", "stalls"),
    [
        ("always [madvise] never", "always defer defer+madvise [madvise] never", True),
        ("[always] madvise never", "always defer [defer+madvise] madvise never", True),
        ("always madvise [never]", "always defer defer+madvise [madvise] never", False),  # no THP at all
        ("always [madvise] never", "always [defer] defer+madvise madvise never", False),  # compacts later
        ("always [madvise] never", "always defer defer+madvise madvise [never]", False),
    ],
)
def test_faults_stall_reads_the_selected_modes(tmp_path, enabled, defrag, stalls):
    assert (
        allocation.faults_stall(_setting(tmp_path, "defrag", defrag), _setting(tmp_path, "enabled", enabled))
        is stalls
    )


def test_unreadable_settings_leave_numpy_alone(tmp_path):
    assert allocation.faults_stall(tmp_path / "missing", tmp_path / "missing") is False


def _after_import(env: dict[str, str]) -> str:
    """In a fresh interpreter: import churnml, report numpy's advice (the setter returns the old value),
    Arrow's pool and what children would inherit."""
    code = (
        "import churnml, os, pyarrow as pa\n"
        "from numpy._core.multiarray import _set_madvise_hugepage\n"
        "print(_set_madvise_hugepage(True), pa.default_memory_pool().backend_name,\n"
        "      os.environ.get('NUMPY_MADVISE_HUGEPAGE'), os.environ.get('ARROW_DEFAULT_MEMORY_POOL'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return result.stdout.strip()


SETTINGS = ("NUMPY_MADVISE_HUGEPAGE", "ARROW_DEFAULT_MEMORY_POOL")


def test_importing_churnml_changes_both_where_faults_stall_and_children_inherit_them():
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    if allocation.faults_stall():
        assert _after_import(env) == "False system 0 system"
    else:
        assert _after_import(env).split()[2:] == ["None", "None"]  # untouched: numpy's and Arrow's defaults


def test_explicit_settings_win():
    env = {**os.environ, "NUMPY_MADVISE_HUGEPAGE": "1", "ARROW_DEFAULT_MEMORY_POOL": "jemalloc"}
    assert _after_import(env) == "True jemalloc 1 jemalloc"
