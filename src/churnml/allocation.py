"""Where large arrays get their memory: two process-wide settings that keep page faults from stalling.

numpy advises the kernel to back every large array with 2 MiB pages (``madvise(MADV_HUGEPAGE)``). Where
the kernel's THP ``defrag`` setting is ``always``, ``madvise`` or ``defer+madvise`` (``madvise`` is the
kernel's default), that advice makes a page fault compact memory synchronously when no free 2 MiB page
is at hand, the usual state of a machine that has run for a while. On the development machine a fresh
7 M-value array then took 0.4-0.6 s instead of 0.03 s, and building features for 100,000 customers
took 20.65 s instead of 12.40 s. On the same machine Arrow's default pool (mimalloc) made reading and
normalising 7 M events take 4.5-5.6 s against 2.7-3.3 s with the system allocator (``churnml
features`` on bench_features' dense business, 5 runs each). Both are measured in docs/features.md.
Values never change; only where the memory comes from. An explicit ``NUMPY_MADVISE_HUGEPAGE`` or
``ARROW_DEFAULT_MEMORY_POOL`` in the environment is left alone.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFRAG = Path("/sys/kernel/mm/transparent_hugepage/defrag")
ENABLED = Path("/sys/kernel/mm/transparent_hugepage/enabled")
STALLING = frozenset({"always", "madvise", "defer+madvise"})  # defrag modes that compact on a madvised fault


def _selected(path: Path) -> str | None:
    """The bracketed choice of a sysfs setting (``always [madvise] never`` -> ``madvise``), None if unreadable."""
    try:
        text = path.read_text()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else None


def faults_stall(defrag: Path = DEFRAG, enabled: Path = ENABLED) -> bool:
    """Whether asking for huge pages makes page faults compact memory synchronously on this machine."""
    return _selected(enabled) in ("always", "madvise") and _selected(defrag) in STALLING


def avoid_fault_stalls() -> list[str]:
    """Where faults stall: numpy without huge-page advice, Arrow on the system allocator. Each setting
    is also put in the environment, for child processes (Dask workers start new interpreters). Returns
    the settings changed."""
    if not faults_stall():
        return []
    changed = []
    if "NUMPY_MADVISE_HUGEPAGE" not in os.environ:
        from numpy._core.multiarray import _set_madvise_hugepage  # type: ignore[attr-defined]  # numpy's own

        _set_madvise_hugepage(False)
        os.environ["NUMPY_MADVISE_HUGEPAGE"] = "0"
        changed.append("NUMPY_MADVISE_HUGEPAGE=0")
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        import pyarrow as pa

        pa.set_memory_pool(pa.system_memory_pool())
        os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "system"
        changed.append("ARROW_DEFAULT_MEMORY_POOL=system")
    return changed
