"""The Optuna search on the cluster: every worker runs ``study.optimize`` on its share of the trial budget,
all on the study's shared storage.

Why not optuna_integration's ``DaskStorage``: it is still experimental (it warns so in optuna-integration
5.0) and keeps the study inside the scheduler process, so every suggest and report is a round trip to the
scheduler and the study lives or dies with it. An RDB storage shared by the workers is Optuna's own way to
run a study from several processes: the study stays where churnml keeps it (the SQLite file of a local
run, which a later run resumes, or ``tune.storage``), and the workers need nothing from the scheduler
but their task.

A worker rebuilds the cross-validation matrices from the folds' rows (sent once, without the rows the
folds share: ``training.split.pack_folds``), so its trials see exactly the client's folds. What a parallel
search does not reproduce, and why, is in docs/training.md (Reproducibility).
"""

from __future__ import annotations

import socket
import time
from typing import Any

import optuna

from churnml.config import Config
from churnml.engine.cluster import DaskEngine, progress_bar
from churnml.errors import ChurnmlError
from churnml.training.split import PackedFolds, pack_folds
from churnml.training.tune import (
    CVData,
    create_study,
    make_objective,
    storage_url,
)

__all__ = ["search_on_cluster", "search_on_worker", "shares"]

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def shares(trials: int | None, workers: int) -> list[int | None]:
    """Each worker's number of trials: the budget split as evenly as it goes, the first workers taking
    the remainder (None = no trial budget: each worker runs until ``tune.timeout_s``)."""
    if trials is None:
        return [None] * workers
    return [trials // workers + (k < trials % workers) for k in range(workers)]


def search_on_worker(
    folds: PackedFolds, specs: tuple[Any, ...], config: Config, name: str, worker: int, trials: int | None
) -> list[int]:
    """Run ``trials`` trials of the study ``name`` in this worker process, with its own matrices, TPE
    seeded ``seed + worker`` and XGBoost on the worker's threads; returns their numbers."""
    from distributed import get_worker

    threads = max(1, int(get_worker().state.nthreads))
    data = CVData.of_folds(specs, folds.unpack(), threads, config.tune.search_negatives, config.seed)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = create_study(config, name, worker)
    numbers: list[int] = []
    study.optimize(
        make_objective(config, data, worker=worker, nthread=threads),
        n_trials=trials,
        timeout=config.tune.timeout_s,
        callbacks=[lambda _, trial: numbers.append(trial.number)],
        gc_after_trial=False,
    )
    return numbers


def search_on_cluster(
    engine: DaskEngine, config: Config, data: CVData, study: optuna.Study, trials: int | None
) -> list[int]:
    """``trials`` more trials of ``study`` (in ``config``'s storage), run by the workers in parallel;
    returns the numbers of the trials they ran. A progress bar counts the study's finished
    trials while they run (``tune.progress_bar``)."""
    url = storage_url(config)
    client = engine.client
    if url.startswith("sqlite"):
        hosts = set(client.run(socket.gethostname).values())
        if hosts != {socket.gethostname()}:
            raise ChurnmlError(
                f"tune on engine.scheduler {config.engine.scheduler}: workers on {', '.join(sorted(hosts))} "
                f"cannot share this machine's SQLite file {url}: set tune.storage to a database server "
                "they reach (postgresql://...)"
            )
    folds = client.scatter([pack_folds(data.source)], broadcast=True, hash=False)[0]
    specs = client.scatter([data.specs], broadcast=True, hash=False)[0]
    futures = []
    for k, (worker, share) in enumerate(
        zip(engine.workers, shares(trials, len(engine.workers)), strict=True)
    ):
        if share == 0:
            continue
        key = f"tune-{study.study_name}-{k}-{time.time_ns()}"
        arguments = (folds, specs, config, study.study_name, k, share)
        futures.append(client.submit(search_on_worker, *arguments, key=key, workers=[worker], pure=False))
    before = len(study.get_trials(deepcopy=False, states=FINISHED))
    with progress_bar(f"tuning on {len(futures)} workers", trials, config.tune.progress_bar) as update:
        while not all(f.done() for f in futures):
            time.sleep(1.0)
            update(len(study.get_trials(deepcopy=False, states=FINISHED)) - before)
        update(len(study.get_trials(deepcopy=False, states=FINISHED)) - before)
    return [number for numbers in client.gather(futures) for number in numbers]
