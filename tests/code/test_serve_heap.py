"""``launch.settle_heap``: what a worker does once its app is built (run in a fresh interpreter, because it
changes the process's garbage collector)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_settle_heap_freezes_the_heap_and_raises_the_thresholds() -> None:
    code = (
        "import gc, json; from churnml.serving import launch, scorer; before = gc.get_freeze_count(); launch.settle_heap(); "
        "print(json.dumps([before, gc.get_freeze_count(), gc.get_threshold(), list(launch.GC_THRESHOLDS)]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    before, after, thresholds, wanted = json.loads(out.strip().splitlines()[-1])
    assert before == 0 and after > 10_000  # the scorer imports the stack: all of it is frozen
    assert thresholds == wanted and wanted[0] > 700  # collections of the young rarer than Python's default
