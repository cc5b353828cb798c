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

:func:`reuse_freed_blocks` is a third setting, for the ``churnml`` command's batch steps only (not on
import, not for Dask workers or the service): glibc hands blocks above its mmap threshold (32 MiB at
most, by default) back to the kernel when they are freed, so the next array of that size faults every
page in again, zeroed. On bench_features' dense business (7 M events) the command took 2.90-3.21 s
with glibc's defaults and 2.59-2.95 s reusing freed blocks up to 64 MiB (six runs each, alternated).
docs/features.md has the figures, at 100,000 customers too.
"""

from __future__ import annotations

import ctypes
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


# glibc's mallopt parameters (malloc.h) and their environment variables, which take precedence.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MALLOC_ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
MMAP_THRESHOLD = 64 << 20  # blocks up to this size stay in the heap when freed, for the next array
TRIM_THRESHOLD = 128 << 20  # free memory at the top of the heap kept back from the kernel, at most


def reuse_freed_blocks(
    mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD
) -> list[str]:
    """Keep freed blocks of up to ``mmap_threshold`` bytes in glibc's heap for the next allocation
    instead of returning them to the kernel, and at most ``trim_threshold`` free bytes at its top.

    For one batch process that builds and drops many arrays of tens of MB (7 M events of 8 bytes):
    each fresh one otherwise faults in and zeroes every page. Called by the ``churnml`` command in its
    own process (``cli.run``), not where ``app`` is embedded; not set on import and not put in the
    environment: a Dask worker's freed memory should go back to the kernel (its nanny lowers the trim
    threshold for that reason), and so should a long-running service's. Only on glibc; left alone
    where the user set glibc's own variables. Returns the settings changed."""
    if any(name in os.environ for name in MALLOC_ENVIRONMENT) or not _glibc():
        return []
    libc = ctypes.CDLL(None)
    # The mmap threshold first: older glibc refuses one above HEAP_MAX_SIZE / 2 (32 MiB), and a trim
    # threshold set alone would switch off its dynamic mmap threshold, leaving it at 128 KiB (every
    # array above that faulted in afresh: worse than the default). So nothing without the first.
    if libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold) != 1:  # mallopt returns 1 on success
        return []
    changed = [f"malloc mmap_threshold={mmap_threshold}"]
    if libc.mallopt(M_TRIM_THRESHOLD, trim_threshold) == 1:
        changed.append(f"malloc trim_threshold={trim_threshold}")
    return changed


def _glibc() -> bool:
    """Whether this process runs on glibc (mallopt's parameters are glibc's; musl has none)."""
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (AttributeError, ValueError, OSError):  # no confstr (Windows), or the name unknown off glibc
        return False
