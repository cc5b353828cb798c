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


# --- reuse_freed_blocks: the churnml command's batch steps keep freed blocks for the next array -------

# In a fresh interpreter: free a 48 MB array, make another of the same size, and count the page faults
# that writing it took (minor faults: pages the kernel had to map in, zeroed).
FAULTS = """
import resource, sys
import numpy as np
from churnml import allocation
changed = allocation.reuse_freed_blocks() if sys.argv[1] == "reuse" else []
if sys.argv[1] == "embedded":  # the CLI run in-process, as a test or a notebook would
    from typer.testing import CliRunner
    from churnml.cli import app
    assert CliRunner().invoke(app, ["config"]).exit_code == 0
a = np.ones(6_000_000); del a
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
b = np.ones(6_000_000)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, len(changed))
"""
MALLOC = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def _faults(mode: str, env: dict[str, str]) -> tuple[int, int]:
    out = subprocess.run(
        [sys.executable, "-c", FAULTS, mode], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[0]), int(out[1])


@pytest.mark.skipif(not allocation._glibc(), reason="mallopt's thresholds are glibc's")
def test_a_freed_block_is_reused_by_the_next_array_of_its_size():
    env = {k: v for k, v in os.environ.items() if k not in MALLOC}
    reused, changed = _faults("reuse", env)
    if changed == 0:
        pytest.skip("this glibc refuses a 64 MiB mmap threshold (older ones cap it at 32 MiB)")
    fresh, _ = _faults("default", env)
    assert changed == 2
    # 48 MB is 11,719 pages of 4 KiB (a few dozen with transparent huge pages): returned to the kernel
    # by default and faulted in again; kept in the heap and written in place with the setting.
    assert reused < 100
    assert fresh > reused


@pytest.mark.skipif(not allocation._glibc(), reason="mallopt's thresholds are glibc's")
def test_glibcs_own_variables_win():
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "1048576"}
    assert _faults("reuse", env)[1] == 0


def _logged(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in MALLOC}
    cli = Path(sys.executable).with_name("churnml")
    result = subprocess.run([str(cli), "-v", *args], env=env, capture_output=True, text=True)
    return result.stdout + result.stderr


@pytest.mark.skipif(not allocation._glibc(), reason="mallopt's thresholds are glibc's")
def test_batch_commands_reuse_freed_blocks_and_the_service_does_not():
    assert "batch process: malloc mmap_threshold=67108864" in _logged("config")
    served = _logged("serve", "--model", "/nonexistent/model")
    assert "Train and register one first" in served  # it ran, and stopped at the missing model
    assert "batch process" not in served


@pytest.mark.skipif(not allocation._glibc(), reason="mallopt's thresholds are glibc's")
def test_the_cli_embedded_in_another_process_leaves_its_memory_settings_alone():
    env = {k: v for k, v in os.environ.items() if k not in MALLOC}
    embedded, _ = _faults("embedded", env)
    reused, changed = _faults("reuse", env)
    if changed == 0:
        pytest.skip("this glibc refuses a 64 MiB mmap threshold")
    assert embedded > reused  # faulted in afresh: glibc's defaults, as the caller had them
