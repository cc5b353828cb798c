"""Running the prediction service: ``churnml serve`` (a BentoML server in the foreground), ``churnml bento``
(a Bento packing the model), waiting for readiness, and what each worker does once its app is built.

The service is the package module ``churnml.serving.service``, so it runs from an installed wheel in any
directory; only building a Bento needs the source checkout (it builds the churnml wheel the Bento ships).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from churnml.config import Config, load_config
from churnml.errors import ChurnmlError
from churnml.serving.loading import (
    BENTO_SCHEME,
    ENV_CONFIG,
    ENV_MODEL_URI,
    ENV_OVERRIDES,
    ENV_UPLIFT_MODEL_URI,
    export_bento_model,
    export_bento_uplift,
    load_served_model,
    load_served_uplift,
)

SERVICE = "churnml.serving.service:ChurnService"
BENTOFILE = Path("serving") / "bentofile.yaml"


def checkout_dir() -> Path:
    """The churnml source checkout (``pyproject.toml`` and ``serving/bentofile.yaml``): the current
    directory, else the one this module was loaded from."""
    for base in (Path.cwd(), *Path(__file__).resolve().parents[3:4]):
        if (base / BENTOFILE).is_file() and (base / "pyproject.toml").is_file():
            return base
    raise ChurnmlError(
        f"{BENTOFILE} not found: run `churnml bento` from the churnml checkout (it builds the churnml "
        "wheel the Bento ships); `churnml serve` runs anywhere"
    )


def server_environment(
    config_path: str | Path | None, overrides: Sequence[str], model: str | None = None
) -> tuple[Config, dict[str, str]]:
    """The config a server process will load, and the environment variables that make it load it.

    The MLflow store this shell resolves (a relative ``output.dir``, ``$MLFLOW_TRACKING_URI``) is pinned
    as an override, so the server reads the same store whatever its working directory and environment.
    """
    from churnml.training.tracking import tracking_uri

    pinned = [*overrides, f"tracking.uri={tracking_uri(load_config(config_path, overrides))}"]
    env = {
        ENV_CONFIG: str(Path(config_path).resolve()) if config_path else "",
        ENV_OVERRIDES: json.dumps(pinned),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    if model:
        env[ENV_MODEL_URI] = model
    return load_config(config_path, pinned), env


@cache
def bentoml_command() -> tuple[str, ...]:
    """The BentoML CLI of this interpreter: its ``bentoml`` script when one sits beside it, else
    ``python -m bentoml``. Never a ``bentoml`` found on ``PATH``: that one may belong to another
    environment, with another churnml (a venv whose packages come through a ``.pth`` has no script)."""
    script = Path(sys.executable).with_name("bentoml")
    return (str(script),) if script.is_file() else (sys.executable, "-m", "bentoml")


def serve_command(config: Config, host: str | None = None, port: int | None = None) -> list[str]:
    """``bentoml serve churnml.serving.service:ChurnService`` on the configured (or given) address."""
    return [
        *bentoml_command(),
        "serve",
        SERVICE,
        "--host",
        host or config.serving.host,
        "--port",
        str(port or config.serving.port),
    ]


def run_server(
    config_path: str | Path | None,
    overrides: Sequence[str],
    model: str | None = None,
    host: str | None = None,
    port: int | None = None,
) -> int:
    """Run the service in the foreground (Ctrl+C stops it); returns the server's exit status.

    The models are loaded here first, so a missing champion (or a missing uplift model that
    ``uplift.use: always`` asks for) is one clear error rather than a crashing worker.
    """
    config, env = server_environment(config_path, overrides, model)
    loaded = load_served_model(config, model)
    uplift = load_served_uplift(config, loaded.model)
    beside = "" if uplift is None else f" with uplift from {uplift.uri}"
    print(
        f"serving {loaded.version}{beside} on http://{host or config.serving.host}:{port or config.serving.port}"
    )
    return subprocess.call(serve_command(config, host, port), env={**os.environ, **env})


PIP_WHEEL = ("-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q")


def build_wheel(root: Path, dist: Path) -> Path:
    """Build the churnml wheel of the checkout at ``root`` into ``dist``, offline (no build isolation: the
    build backend, hatchling, comes from this environment; nothing is downloaded)."""
    subprocess.run(
        [sys.executable, *PIP_WHEEL, "-w", str(dist), str(root)],
        check=True,
    )
    return max(dist.glob("churnml-*.whl"), key=lambda p: p.stat().st_mtime)


def stop(server: subprocess.Popen, grace_s: float = 60.0) -> None:
    """Stop a server started in its own session (``start_new_session=True``) and all its workers: SIGTERM
    to the process group, SIGKILL after ``grace_s``. A server that already exited is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def build_bento(config_path: str | Path | None, overrides: Sequence[str], model: str | None = None) -> str:
    """Export the model (and the uplift model, when one is found) into BentoML's store and build the Bento
    (service, churnml wheel, models)."""
    config, _ = server_environment(config_path, overrides, model)
    tag = export_bento_model(config, model)
    uplift = export_bento_uplift(config, model)
    root = checkout_dir()
    build_wheel(root, root / BENTOFILE.parent / "dist")
    env = {**os.environ, ENV_MODEL_URI: f"{BENTO_SCHEME}{tag}", "BENTOML_DO_NOT_TRACK": "true"}
    if uplift is not None:
        env[ENV_UPLIFT_MODEL_URI] = f"{BENTO_SCHEME}{uplift}"
    subprocess.run([*bentoml_command(), "build", "-f", str(BENTOFILE), "."], cwd=root, env=env, check=True)
    return tag


def wait_ready(
    url: str, timeout_s: float = 120.0, server: subprocess.Popen | None = None, log: Path | None = None
) -> None:
    """Block until ``url/readyz`` answers 200 (every worker loaded the model); raise after ``timeout_s``,
    or at once when ``server`` (the process serving ``url``) exits first. The error ends with the tail
    of ``log`` (the server's output), where the reason is.

    ``bentoml.serve`` returns as soon as the processes are started, before the model is loaded.
    """
    import time
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and (server is None or server.poll() is None):
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    state = (
        f"exited with status {server.returncode}"
        if server is not None and server.poll() is not None
        else f"was not ready after {timeout_s:.0f} s"
    )
    tail = (
        f":\n{log.read_text(errors='replace')[-5000:]}"
        if log is not None and log.exists()
        else ": see its log"
    )
    raise ChurnmlError(f"the server at {url} {state}{tail}")


# ---------------------------------------------------------------------------------------------------
# In each worker, once its app is built.


GC_THRESHOLDS = (2000, 50, 100)


def settle_heap() -> None:
    """Freeze the long-lived heap (model, modules, app) and collect young objects less often.

    A request leaves a few dozen objects in reference cycles (framework futures, scopes). With Python's
    default thresholds the garbage collector runs every few requests, promotes the requests in flight to
    the old generations and then walks them again in full collections of 15-50 ms, measured in a worker.
    Frozen objects are never walked, and a larger first threshold lets requests finish before a collection.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def bind_apis_once(service: Any) -> None:
    """Bind the service's API methods once, as instance attributes.

    BentoML 1.4 binds an API method anew, with ``inspect.signature``, each time the server looks it up
    (twice per request): about a tenth of a worker's CPU per single-record request. An API method is a
    non-data descriptor, so the instance attribute takes its place with the same bound callable.
    """
    from _bentoml_sdk.method import APIMethod

    for name, method in vars(type(service)).items():
        if isinstance(method, APIMethod):
            setattr(service, name, method.__get__(service, type(service)))
