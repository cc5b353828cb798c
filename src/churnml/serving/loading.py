"""Which model the service serves, and loading it: from the MLflow registry, a run or directory, or
BentoML's model store (the copy a built Bento packs).

Settings come from the churnml config (``CHURNML_CONFIG`` file + ``CHURNML_OVERRIDES`` JSON list, set by
``churnml serve``) and the environment: ``CHURNML_MODEL_URI`` beats ``serving.model_uri``, which beats the
model a built Bento packs, which beats ``models:/<tracking.registered_model>@champion``;
``MLFLOW_TRACKING_URI`` is honoured as in training. The model is read as data (booster JSON, calibrator
and spec documents): nothing is unpickled.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from churnml.config import Config, load_config
from churnml.errors import ChurnmlError
from churnml.training.model import ChurnModel, load_model
from churnml.uplift.mlflow_model import LoadedUplift

__all__ = ["LoadedModel", "LoadedUplift", "load_served_model", "load_served_uplift", "model_uri"]

log = logging.getLogger(__name__)

ENV_CONFIG = "CHURNML_CONFIG"
ENV_OVERRIDES = "CHURNML_OVERRIDES"
ENV_MODEL_URI = "CHURNML_MODEL_URI"
ENV_UPLIFT_MODEL_URI = "CHURNML_UPLIFT_MODEL_URI"
BENTO_SCHEME = "bentoml:"  # CHURNML_MODEL_URI=bentoml:churn-model:v3 serves a model from BentoML's store
BENTO_ARTIFACT = "churn_model"
BENTO_UPLIFT_ARTIFACT = "uplift_model"


def service_config() -> Config:
    """The churnml config of this server process (from the environment ``churnml serve`` sets)."""
    overrides = json.loads(os.environ.get(ENV_OVERRIDES) or "[]")
    return load_config(os.environ.get(ENV_CONFIG) or None, overrides)


def model_uri(config: Config, project_dir: str | Path | None = None) -> str:
    """What to serve: ``CHURNML_MODEL_URI``, else ``serving.model_uri``, else the model packed in the Bento
    whose project directory ``project_dir`` is (if it is one), else the registered champion."""
    from churnml.training import registry

    return (
        os.environ.get(ENV_MODEL_URI)
        or config.serving.model_uri
        or packed_model_uri(project_dir)
        or registry.champion_uri(config.tracking.registered_model)
    )


def packed_model_uri(project_dir: str | Path | None, uplift: bool = False) -> str | None:
    """``bentoml:<tag>`` of the model a built Bento packs, when ``project_dir`` is a Bento's ``src/``.

    BentoML imports a Bento's service with the working directory set to the Bento's ``src/``, beside its
    ``bento.yaml``. Its ``envs`` reach only the container image, so ``bentoml serve <bento>`` outside one
    would otherwise look for an MLflow store that is not there.
    """
    if project_dir is None:
        return None
    manifest = Path(project_dir).resolve().parent / "bento.yaml"
    if Path(project_dir).resolve().name != "src" or not manifest.is_file():
        return None
    import yaml

    info = yaml.safe_load(manifest.read_text()) or {}
    tags = [m["tag"] for s in info.get("services") or [] for m in s.get("models") or []]
    tags += [m["tag"] for m in info.get("models") or [] if isinstance(m, dict)]
    # The uplift model is packed beside the churn model under its registered name, `<name>-uplift`.
    tags = [t for t in dict.fromkeys(tags) if str(t).split(":")[0].endswith(UPLIFT_SUFFIX) == uplift]
    return f"{BENTO_SCHEME}{tags[0]}" if tags else None


UPLIFT_SUFFIX = "-uplift"


@dataclass(frozen=True)
class LoadedModel:
    """A model and the version it is (``churn-model/3``, a bentoml tag, or the URI it came from)."""

    model: ChurnModel
    version: str
    uri: str


def load_served_model(config: Config, uri: str | None = None) -> LoadedModel:
    """Load the model to serve; registry aliases are resolved first so the version reported is the one
    loaded. Raises ChurnmlError with what to do when there is none."""
    uri = uri or model_uri(config)
    try:
        if uri.startswith(BENTO_SCHEME):
            return _load_bento_model(uri.removeprefix(BENTO_SCHEME))
        return _load_mlflow_model(uri, config)
    except ChurnmlError:
        raise
    except Exception as exc:  # MLflow and BentoML raise many types for "not there"
        from churnml.training.tracking import tracking_uri

        raise ChurnmlError(
            f"cannot load model {uri!r} (MLflow store {tracking_uri(config)}): "
            f"{str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}\n"
            "Train and register one (`churnml train`), or set CHURNML_MODEL_URI / serving.model_uri to a model "
            "URI (models:/<name>@<alias>, models:/<name>/<version>, runs:/<id>/model), a model directory or "
            "bentoml:<tag>."
        ) from exc


def _load_mlflow_model(uri: str, config: Config) -> LoadedModel:
    from churnml.training import registry, tracking

    with tracking.store(config):
        ref = registry.resolve(uri)
        return LoadedModel(load_model(ref.uri), ref.label, ref.uri)


def _load_bento_model(tag: str) -> LoadedModel:
    import bentoml

    stored = bentoml.models.get(tag)
    version = stored.info.metadata.get("model_version") or str(stored.tag)
    return LoadedModel(
        ChurnModel.load(stored.path_of(BENTO_ARTIFACT)), str(version), f"{BENTO_SCHEME}{stored.tag}"
    )


def load_served_uplift(
    config: Config, churn: ChurnModel, project_dir: str | Path | None = None
) -> LoadedUplift | None:
    """The uplift model served beside the churn model, found as `churnml score` finds it
    (``churnml.uplift.mlflow_model.load_uplift``), ``CHURNML_UPLIFT_MODEL_URI`` or the model a built
    Bento packs first; None when there is none (``uplift.use: auto``) or ``uplift.use: never``.

    Its boosters read the churn model's feature row, so every feature it uses must be one of the churn
    model's (a request holds those only); otherwise the service goes without uplift, or refuses to
    start where ``uplift.use: always`` asks for it."""
    from churnml.training import tracking
    from churnml.uplift.mlflow_model import load_uplift, load_uplift_model

    if config.uplift.use == "never":
        return None
    uri = (
        os.environ.get(ENV_UPLIFT_MODEL_URI) or config.uplift.model_uri or packed_model_uri(project_dir, True)
    )
    if uri is None and packed_model_uri(project_dir) is not None:
        return None  # a built Bento serves what it packs, and it packs no uplift model
    if uri and uri.startswith(BENTO_SCHEME):
        import bentoml

        stored = bentoml.models.get(uri.removeprefix(BENTO_SCHEME))
        version = stored.info.metadata.get("model_version") or str(stored.tag)
        loaded: LoadedUplift | None = LoadedUplift(
            load_uplift_model(stored.path_of(BENTO_UPLIFT_ARTIFACT)), uri, str(version)
        )
    else:
        with tracking.store(config):
            loaded = load_uplift(config, mlflow_in_use=True, uri=uri)
    if loaded is None:
        return None
    missing = [s.name for s in loaded.model.inputs.specs if s.name not in set(churn.feature_names)]
    if missing:
        problem = (
            f"uplift model {loaded.uri!r} reads features the churn model does not: {', '.join(missing[:10])}; "
            "fit the uplift model on the churn model's features (same features: settings) to serve it"
        )
        if config.uplift.use == "always":
            raise ChurnmlError(problem)
        log.warning("serving without uplift: %s", problem)
        return None
    for play in loaded.model.plays.values():  # each worker its own copy: cap its threads like the model's
        for booster in play.boosters.values():
            booster.set_param({"nthread": config.serving.nthread})
    return loaded


def uplift_label(loaded: LoadedUplift) -> str:
    """The uplift model's version as responses name it: ``churn-model-uplift/2``, else its URI."""
    if loaded.version is None:
        return loaded.uri
    if "/" in loaded.version or loaded.uri.startswith(BENTO_SCHEME):
        return loaded.version
    name = loaded.uri.removeprefix("models:/").split("@")[0].split("/")[0]
    return f"{name}/{loaded.version}"


def export_bento_model(config: Config, uri: str | None = None) -> str:
    """Copy the model (default: the champion) into BentoML's local model store, so ``bentoml build``
    packs it into the Bento; returns the tag. The tag's version is the registry version, so exporting the
    same version twice reuses the stored copy."""
    import bentoml
    from bentoml.exceptions import NotFound

    loaded = load_served_model(config, uri)
    name = config.tracking.registered_model
    label = "".join(c if c.isalnum() or c in "-_." else "-" for c in loaded.version.rsplit("/", 1)[-1])
    tag = f"{name}:v{label}" if loaded.version != loaded.uri else name
    if ":" in tag:
        try:
            return str(bentoml.models.get(tag).tag)
        except NotFound:
            pass
    metadata = {"model_version": loaded.version, "source_uri": loaded.uri}
    with bentoml.models.create(tag, metadata=metadata, labels={"framework": "xgboost"}) as stored:
        loaded.model.save(stored.path_of(BENTO_ARTIFACT))
    return str(stored.tag)


def export_bento_uplift(config: Config, model_uri: str | None = None) -> str | None:
    """Copy the uplift model the service would serve beside ``model_uri`` (found as
    :func:`load_served_uplift` finds it) into BentoML's local model store as ``<registered model>-uplift``;
    returns the tag, or None when there is none to pack."""
    import bentoml
    from bentoml.exceptions import NotFound

    loaded = load_served_uplift(config, load_served_model(config, model_uri).model)
    if loaded is None:
        return None
    name = f"{config.tracking.registered_model}{UPLIFT_SUFFIX}"  # packed_model_uri tells them apart by it
    label = uplift_label(loaded)
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in label.rsplit("/", 1)[-1])
    tag = f"{name}:v{safe}" if loaded.version is not None else name
    if ":" in tag:
        try:
            return str(bentoml.models.get(tag).tag)
        except NotFound:
            pass
    metadata = {"model_version": label, "source_uri": loaded.uri}
    with bentoml.models.create(tag, metadata=metadata, labels={"framework": "xgboost"}) as stored:
        loaded.model.save(stored.path_of(BENTO_UPLIFT_ARTIFACT))
    return str(stored.tag)
