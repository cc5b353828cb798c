"""The MLflow face of an UpliftModel: a pyfunc returning every play's uplift, registered beside the churn
model so that scoring and serving find it the way they find the churn model (the champion alias).

As with the churn model (``churnml.training.mlflow_model``), the model is logged "from code" with its
plain JSON files as artifacts: nothing is pickled, and :func:`load_uplift_model` reads those files back
from a directory or any model URI without running the model's code.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import xgboost as xgb
from mlflow.pyfunc import PythonModel, PythonModelContext

from churnml.config import Config
from churnml.errors import ChurnmlError, ModelLoadError
from churnml.training.mlflow_model import requirements
from churnml.uplift.learner import MODEL_FILE, UpliftModel

log = logging.getLogger(__name__)

ARTIFACT = "uplift_model"
MODEL_CODE = """\
import mlflow
from churnml.uplift.mlflow_model import UpliftPyfunc

mlflow.models.set_model(UpliftPyfunc())
"""


class UpliftPyfunc(PythonModel):
    """Pyfunc wrapper: ``predict`` returns one column per play, the reduction in churn probability."""

    model: UpliftModel

    def load_context(self, context: PythonModelContext) -> None:
        self.model = UpliftModel.load(context.artifacts[ARTIFACT])

    def predict(
        self, context: PythonModelContext, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        return self.model.effects(pd.DataFrame(model_input))


def log_uplift_model(model: UpliftModel, name: str = "uplift_model", **kwargs: Any) -> Any:
    """Log ``model`` as a pyfunc in the active run; returns MLflow's ModelInfo (``model_uri``)."""
    with tempfile.TemporaryDirectory(prefix="churnml-uplift-") as tmp:
        files = model.save(Path(tmp) / ARTIFACT)
        code = Path(tmp) / "uplift_pyfunc.py"
        code.write_text(MODEL_CODE)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(code),
            artifacts={ARTIFACT: str(files)},
            pip_requirements=requirements(),
            metadata={"plays": list(model.plays)},
            **kwargs,
        )


def load_uplift_model(uri: str | Path) -> UpliftModel:
    """An UpliftModel from the ``model/`` directory `churnml uplift` wrote (or the uplift output directory
    holding it) or from any MLflow model URI; only its JSON files are read."""
    path = Path(str(uri))
    if path.is_dir():
        for directory in (path, path / "model"):
            if (directory / MODEL_FILE).exists():
                return _load_files(directory, uri)
        raise ModelLoadError(
            f"{uri}: not a churnml uplift model directory (no {MODEL_FILE}). Pass the model/ directory "
            "`churnml uplift` wrote, or an MLflow model URI."
        )
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=str(uri)))
    except (MlflowException, OSError) as exc:
        raise ModelLoadError(
            f"{uri}: cannot fetch the uplift model: {str(exc).splitlines()[0][:300]}\nFit one first "
            "(`churnml uplift -c <config>`), or set uplift.model_uri to a model URI or the model/ "
            "directory `churnml uplift` wrote."
        ) from None
    chosen = local / "artifacts" / ARTIFACT
    if not (chosen / MODEL_FILE).exists():
        raise ModelLoadError(
            f"{uri}: not a churnml uplift model (no artifacts/{ARTIFACT}/{MODEL_FILE}); only models logged by "
            "`churnml uplift` can be loaded"
        )
    return _load_files(chosen, uri)


@dataclass(frozen=True)
class LoadedUplift:
    """An uplift model, the URI it was asked for and its registry version (None for a directory)."""

    model: UpliftModel
    uri: str
    version: str | None


def load_uplift(config: Config, mlflow_in_use: bool, uri: str | None = None) -> LoadedUplift | None:
    """The uplift model `churnml score` and the service use, found as the churn model is: ``uri`` (the
    service's ``CHURNML_UPLIFT_MODEL_URI``), else ``uplift.model_uri``, else the registered champion of
    ``<registered model>-uplift``. With ``uplift.use: auto`` a champion that does not exist (no `churnml
    uplift` run yet) means no uplift, as before; ``always`` and ``risk.rank_by: net_value`` need one,
    and an explicitly named model must load. Registry URIs need the MLflow store to be active."""
    from churnml.training import registry

    settings = config.uplift
    required = settings.use == "always" or config.risk.rank_by == "net_value"
    if settings.use == "never":
        return None
    named = uri or settings.model_uri
    if named is None and not mlflow_in_use:
        if required:
            raise ChurnmlError(
                "uplift models are needed (uplift.use=always or risk.rank_by=net_value) but MLflow is not "
                "in use: set uplift.model_uri to the model/ directory `churnml uplift` wrote"
            )
        return None
    uri = named or registry.champion_uri(config.uplift_registered_model())
    try:
        ref = registry.resolve(uri)
        return LoadedUplift(load_uplift_model(ref.uri), uri, ref.version)
    except ModelLoadError as exc:
        if required or named is not None:
            why = (
                "risk.rank_by=net_value"
                if config.risk.rank_by == "net_value"
                else "uplift.use=always"
                if settings.use == "always"
                else "uplift.model_uri"
            )
            raise ChurnmlError(
                f"{why} needs an uplift model, and {uri!r} cannot be loaded: {exc}\n"
                "Fit one first (`churnml uplift -c <config>`, which registers it), or set uplift.model_uri."
            ) from None
        log.info("no uplift model at %s: going without uplift (%s)", uri, exc)
        return None


def _load_files(directory: Path, uri: str | Path) -> UpliftModel:
    """``UpliftModel.load`` with every way a file can be missing or corrupt as one clear error."""
    try:
        return UpliftModel.load(directory)
    except (OSError, ValueError, KeyError, TypeError, xgb.core.XGBoostError) as exc:
        raise ModelLoadError(
            f"{uri}: the uplift model's files are missing or corrupt ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300] if str(exc) else ''})"
        ) from None
