"""Which process made a thing: temp files, MLflow runs and Optuna trials carry the host and process id
of their writer, so a later run can tell what a killed run left behind (its process is gone) from a
live writer's work in progress, and clean up only the former."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

HOST = socket.gethostname()
HOST_TAG, PID_TAG = "churnml.host", "churnml.pid"


def tags() -> dict[str, str]:
    """This process, as MLflow tags or Optuna user attributes."""
    return {HOST_TAG: HOST, PID_TAG: str(os.getpid())}


def alive(pid: object, host: object = HOST) -> bool:
    """Whether the writer may still be running: True unless it is on this host and its process is gone
    (a writer on another host, or without a process id, cannot be judged from here)."""
    if host != HOST or not str(pid).isdigit():
        return host != HOST
    try:
        os.kill(int(str(pid)), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def orphaned(owner: Mapping[str, object]) -> bool:
    """Whether tags (or user attributes) name a writer on this host whose process is gone."""
    return owner.get(HOST_TAG) == HOST and not alive(owner.get(PID_TAG))
