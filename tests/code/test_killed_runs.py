"""A killed run leaves nothing that looks alive: its MLflow run and Optuna trials are marked failed
by the next run, while the work of live processes is left alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import optuna
from mlflow import MlflowClient

from churnml import ownership
from churnml.config import load_config
from churnml.training.tracking import session
from churnml.training.tune import create_study, fail_orphaned_trials

KILLED = """
import os, signal, sys
import mlflow, optuna
from churnml import ownership
from churnml.config import load_config
from churnml.training.tracking import session
from churnml.training.tune import create_study

config = load_config(None, [f"output.dir={sys.argv[1]}", "name=killed"])
with session(config):
    mlflow.start_run(run_name="train-killed", tags=ownership.tags())
    study = create_study(config, "killed-study")
    study.optimize(lambda t: 0.0, n_trials=1)  # one finished trial
    trial = study.ask()
    for key, value in ownership.tags().items():
        trial.set_user_attr(key, value)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_killed_training_leaves_no_running_run_or_trial(tmp_path: Path) -> None:
    killed = subprocess.run([sys.executable, "-c", KILLED, str(tmp_path)], check=False)
    assert killed.returncode == -signal.SIGKILL
    config = load_config(None, [f"output.dir={tmp_path}", "name=killed"])
    with session(config) as experiment_id:
        # A live run of this process (another command running now) is not touched.
        live = MlflowClient().create_run(experiment_id, tags=ownership.tags()).info.run_id
        runs = {r.info.run_name: r.info.status for r in MlflowClient().search_runs([experiment_id])}
        assert runs["train-killed"] == "FAILED"
        study = create_study(config, "killed-study")
        states = [t.state for t in study.trials]
        assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING]
        assert fail_orphaned_trials(study) == [1]
        assert study.trials[1].state == optuna.trial.TrialState.FAIL
        mine = study.ask()
        for key, value in ownership.tags().items():
            mine.set_user_attr(key, value)
        assert fail_orphaned_trials(study) == []  # this process is alive: its trial keeps running
    with session(config) as experiment_id:
        assert MlflowClient().get_run(live).info.status == "RUNNING"
        MlflowClient().set_terminated(live)
    assert mlflow.active_run() is None


def test_a_writer_on_another_host_is_never_judged() -> None:
    assert ownership.alive(os.getpid()) and not ownership.alive(2**22 + 12345)
    assert ownership.alive(2**22 + 12345, host="another-host")
    assert not ownership.orphaned({ownership.HOST_TAG: "another-host", ownership.PID_TAG: "1"})
