"""Serving churn scores over HTTP: model loading, the scoring behind each endpoint, HTTP middleware and
the launcher of ``churnml serve``.

The BentoML service (``serving/service.py``) is a thin shell around :class:`Scorer`, so what the
endpoints compute is plain Python, tested without a server, and made of the same pieces as the batch
pipeline: ``ChurnModel.predict_proba`` (same casting and trees), ``risk.band_of`` (same thresholds),
``explain.Explainer`` (same drivers) and, for raw histories, ``data.dataset_from_frames`` (same
validation) and ``features.build_features`` (same feature code, the model's own specs).

Settings come from the churnml config (``CHURNML_CONFIG`` file + ``CHURNML_OVERRIDES`` JSON list, set by
``churnml serve``) and the environment: ``CHURNML_MODEL_URI`` beats ``serving.model_uri``, which beats the
model a built Bento packs, which beats ``models:/<tracking.registered_model>@champion``;
``MLFLOW_TRACKING_URI`` is honoured as in training.
"""

from __future__ import annotations

import gc
import hmac
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from churnml import io
from churnml.config import Config, load_config
from churnml.errors import ChurnmlError, DataValidationError
from churnml.risk.explain import Explainer, contributions, model_typical_values
from churnml.risk.risk_list import band_of
from churnml.serving.fast_path import DensePredictor
from churnml.serving.schemas import (
    DriverOut,
    Explanation,
    HistoryScore,
    Prediction,
    RecordEncoder,
    example_record,
    feature_record_model,
    history_tables,
    records_frame,
)
from churnml.training.model import ChurnModel, load_model

ENV_CONFIG = "CHURNML_CONFIG"
ENV_OVERRIDES = "CHURNML_OVERRIDES"
ENV_MODEL_URI = "CHURNML_MODEL_URI"
BENTO_SCHEME = "bentoml:"  # CHURNML_MODEL_URI=bentoml:churn-model:v3 serves a model from BentoML's store
BENTO_ARTIFACT = "churn_model"
SERVICE = "serving.service:ChurnService"
log = logging.getLogger(__name__)
FUTURE_TOLERANCE = timedelta(
    days=1
)  # as churnml.data.load: a moment this far past the wall clock is not "now"
# Paths that never need the API key: health, metrics, the OpenAPI document and its UI.
OPEN_PATHS = frozenset({"/", "/livez", "/readyz", "/healthz", "/metrics", "/docs.json", "/schema.json"})
OPEN_PREFIXES = ("/static_content/", "/assets/")
OTHER_ENDPOINT = "other"  # the metrics' endpoint label of every path that is not a route
REAL_SCOPE = "churnml.real_scope"
JSON_MEDIA = "application/json"
CONTENT_TYPE = ("header", "Content-Type")


# ---------------------------------------------------------------------------------------------------
# Settings and model loading.


def service_config() -> Config:
    """The churnml config of this server process (from the environment ``churnml serve`` sets)."""
    overrides = json.loads(os.environ.get(ENV_OVERRIDES) or "[]")
    return load_config(os.environ.get(ENV_CONFIG) or None, overrides)


def model_uri(config: Config, service_file: str | Path | None = None) -> str:
    """What to serve: ``CHURNML_MODEL_URI``, else ``serving.model_uri``, else the model packed in the Bento
    that ``service_file`` runs from (if it does), else the registered champion."""
    from churnml.training import registry

    return (
        os.environ.get(ENV_MODEL_URI)
        or config.serving.model_uri
        or packed_model_uri(service_file)
        or registry.champion_uri(config.tracking.registered_model)
    )


def packed_model_uri(service_file: str | Path | None) -> str | None:
    """``bentoml:<tag>`` of the model a built Bento packs, when ``service_file`` is inside one.

    A Bento holds ``bento.yaml`` beside ``src/``, where ``serving/service.py`` lives. Its ``envs`` reach
    only the container image, so ``bentoml serve <bento>`` outside one would otherwise look for an MLflow
    store that is not there.
    """
    parents = Path(service_file).resolve().parents if service_file is not None else ()
    if len(parents) < 3 or parents[1].name != "src" or not (parents[2] / "bento.yaml").is_file():
        return None
    manifest = parents[2] / "bento.yaml"
    import yaml

    info = yaml.safe_load(manifest.read_text()) or {}
    tags = [m["tag"] for s in info.get("services") or [] for m in s.get("models") or []]
    tags += [m["tag"] for m in info.get("models") or [] if isinstance(m, dict)]
    return f"{BENTO_SCHEME}{tags[0]}" if tags else None


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


# ---------------------------------------------------------------------------------------------------
# Scoring: what each endpoint computes.


def error_body(message: str, kind: str, loc: Sequence[str | int] = ()) -> dict[str, Any]:
    """The body of every 4xx the service writes itself, in ``ErrorBody``'s shape (as BentoML's 400s):
    ``error`` says where and what in one line, ``detail`` holds the one problem."""
    where = ".".join(map(str, loc))
    detail = {"type": kind, "loc": list(loc), "msg": message}
    return {"error": f"{where}: {message}" if where else message, "detail": [detail]}


class ClientError(ChurnmlError):
    """A request the model cannot score because of its content (answered 422, naming where)."""

    def __init__(self, message: str, loc: Sequence[str | int] = ()):
        super().__init__(message)
        self.loc = list(loc)

    def body(self) -> dict[str, Any]:
        return error_body(str(self), "invalid_request", self.loc)


@dataclass
class Scorer:
    """The served model with everything scoring needs, built once per worker."""

    loaded: LoadedModel
    config: Config
    explainer: Explainer = field(init=False)

    def __post_init__(self) -> None:
        self.explainer = Explainer.of(self.model, None, self.config.risk.exclude_from_reasons)
        self.encoder = RecordEncoder(self.model)
        self.feature_types = ["c" if c.dtype == "category" else "q" for c in self.model.columns]
        self.fast_explain = False
        self.dense: DensePredictor | None = None
        if self.model.linear is not None:
            self.fast = False  # a regression scores and explains through ChurnModel's own numpy path
            return
        # Each worker is its own process with its own model: cap XGBoost's threads per worker.
        self.model.trained_booster.set_param({"nthread": self.config.serving.nthread})
        self.dense = DensePredictor.of(self.model.trained_booster, self.model.iteration_range)
        self.fast = self._fast_path_agrees()

    def _fast_path_agrees(self) -> bool:
        """Whether the pandas-free path gives ``predict_proba``'s probabilities exactly, on records with
        every category, missing values and a spread of numbers; the service uses it only then."""
        record_model = feature_record_model(self.model)
        rng = np.random.default_rng(0)
        base = example_record(self.model)
        rows = [base, {k: None for k in base}]
        for k in range(64):
            row = {}
            for column in self.model.columns:
                if column.dtype == "category":
                    choices = [None, *(column.categories or ())]
                    row[column.name] = choices[k % len(choices)]
                else:
                    row[column.name] = (
                        None if k % 7 == 0 else float(rng.choice([-1, 1]) * rng.exponential(50))
                    )
            rows.append(row)
        records = [record_model.model_validate(row) for row in rows]
        frame = self.model.prepare(records_frame(self.model, records))
        slow = self.model.predict_proba(frame)

        def agrees() -> bool:
            try:
                whole, one = self._fast_proba(records), self._fast_proba(records[:1])
            except Exception as exc:  # the direct C call is XGBoost-version dependent: fall back, loudly
                log.warning("fast prediction path failed (%s)", exc)
                return False
            return bool(np.array_equal(whole, slow) and np.array_equal(one, slow[:1]))

        if self.dense is not None and not agrees():
            log.warning("direct XGBoost prediction disagrees with predict_proba: using inplace_predict")
            self.dense = None
        if self.dense is None and not agrees():
            log.warning("fast prediction path disagrees with ChurnModel.predict_proba: using the latter")
            return False
        # /explain encodes records, /score_history converts prepared frames: both must give these rows.
        rows = self.encoder(records)
        self.fast_explain = bool(
            np.array_equal(prepared_matrix(self.model, frame), rows, equal_nan=True)
            and np.array_equal(self._fast_contributions(rows), contributions(self.model, frame))
        )
        if not self.fast_explain:
            log.warning("pandas-free contributions disagree with explain.contributions: using the latter")
        return True

    def _fast_contributions(self, rows: np.ndarray) -> np.ndarray:
        """``explain.contributions`` of encoded rows (DMatrix from the matrix, not from a frame)."""
        matrix = xgb.DMatrix(
            rows,
            missing=np.nan,
            feature_names=self.model.feature_names,
            feature_types=self.feature_types,
            enable_categorical=True,
            nthread=self.config.serving.nthread,
        )
        return self.model.trained_booster.predict(
            matrix, pred_contribs=True, iteration_range=self.model.iteration_range
        )

    def _fast_proba(self, records: Sequence[Any]) -> np.ndarray:
        return self._proba_of_rows(self.encoder(records))

    def _proba_of_rows(self, rows: np.ndarray) -> np.ndarray:
        if self.dense is not None:
            return self.model.calibrator(self.dense(rows))
        margin = self.model.trained_booster.inplace_predict(
            rows, iteration_range=self.model.iteration_range, predict_type="margin", missing=np.nan
        )
        return self.model.calibrator(margin)

    def probabilities(self, records: Sequence[Any]) -> np.ndarray:
        """``ChurnModel.predict_proba`` of the records (through the checked pandas-free path when it agrees)."""
        if self.fast:
            return self._fast_proba(records)
        return self.model.predict_proba(records_frame(self.model, records))

    @property
    def model(self) -> ChurnModel:
        return self.loaded.model

    @property
    def version(self) -> str:
        return self.loaded.version

    def example_record(self) -> dict[str, Any]:
        return example_record(self.model, model_typical_values(self.model))

    def _predictions(self, ids: Sequence[str | None], probability: np.ndarray) -> list[dict[str, Any]]:
        bands = band_of(probability, self.config.risk.bands)
        threshold = self.config.risk.at_risk_threshold
        return [
            {
                "customer_id": customer,
                "churn_probability": float(p),
                "risk_band": str(band),
                "at_risk": bool(p >= threshold),
                "model_version": self.version,
            }
            for customer, p, band in zip(ids, probability, bands, strict=True)
        ]

    def predict(self, records: Sequence[Any]) -> list[Prediction]:
        """Calibrated probability, band and model version per validated feature record."""
        if not records:
            return []
        ids = [record.customer_id for record in records]
        return [
            Prediction.model_construct(**row) for row in self._predictions(ids, self.probabilities(records))
        ]

    def _explained(self, frame: pd.DataFrame, top_k: int) -> list[dict[str, Any]]:
        prepared = self.model.prepare(frame)  # once: each step below would otherwise redo it
        if self.fast and self.fast_explain:
            rows = prepared_matrix(self.model, prepared)
            probability, contribs = self._proba_of_rows(rows), self._fast_contributions(rows)
        else:
            probability = self.model.predict_proba(prepared)
            contribs = contributions(self.model, prepared)
        drivers = self.explainer.drivers(prepared, contribs, top_k)
        return self._answers(list(frame["customer_id"]), probability, drivers)

    def _answers(
        self, ids: Sequence[str | None], probability: np.ndarray, drivers: Sequence[Sequence[Any]]
    ) -> list[dict[str, Any]]:
        rows = self._predictions(ids, probability)
        for row, found in zip(rows, drivers, strict=True):
            row["drivers"] = [DriverOut.model_construct(**_finite(d.as_dict())) for d in found]
        return rows

    def explain(self, records: Sequence[Any], top_k: int) -> list[Explanation]:
        """The prediction plus the top drivers as sentences with their SHAP contributions."""
        if not records:
            return []
        if not (self.fast and self.fast_explain):
            frame = records_frame(self.model, records)
            return [Explanation.model_construct(**row) for row in self._explained(frame, top_k)]
        rows = self.encoder(records)
        contribs = self._fast_contributions(rows)
        columns = [
            [np.nan if value is None else value for value in column]
            for column in zip(*self.encoder.raw(records), strict=True)
        ]
        drivers = self.explainer.drivers_of_values(columns, contribs, top_k)
        answers = self._answers([r.customer_id for r in records], self._proba_of_rows(rows), drivers)
        return [Explanation.model_construct(**row) for row in answers]

    def history_features(self, histories: Sequence[Any], as_of: datetime) -> pd.DataFrame:
        """Features of each customer at ``as_of`` from their raw history, by the training feature code."""
        from churnml.data.load import dataset_from_frames
        from churnml.features import build_features

        if as_of > datetime.now(UTC).replace(tzinfo=None) + FUTURE_TOLERANCE:
            raise ClientError("as_of lies in the future: nothing is known about customers then", ["as_of"])
        for index, history in enumerate(histories):
            if history.customer.signup_at >= as_of:
                raise ClientError(
                    f"customer {history.customer.customer_id!r} signed up at {history.customer.signup_at}, "
                    f"not before as_of {as_of}: there is nothing to score yet",
                    ["customers", index, "customer", "signup_at"],
                )
        try:
            dataset = dataset_from_frames(history_tables(histories))
        except DataValidationError as exc:
            problem = exc.problem + (f"\n{exc.examples}" if exc.examples else "")
            raise ClientError(
                problem, ["customers", exc.table, *([exc.column] if exc.column else [])]
            ) from None
        cutoffs = pd.DataFrame(
            {
                "customer_id": [h.customer.customer_id for h in histories],
                "cutoff": pd.Series([as_of] * len(histories), dtype="datetime64[ns]"),
            }
        )
        specs = list(self.model.specs)
        frame = build_features(dataset, cutoffs, self.config.features, specs=specs)
        numeric = [c.name for c in self.model.columns if c.dtype != "category"]
        infinite = np.isinf(frame[numeric].to_numpy(dtype=float))
        if infinite.any():
            row, column = (int(i[0]) for i in np.nonzero(infinite))
            raise ClientError(
                f"the history gives feature {numeric[column]!r} an infinite value", ["customers", row]
            )
        return frame

    def score_history(
        self, histories: Sequence[Any], as_of: datetime | None, top_k: int, include_features: bool
    ) -> list[HistoryScore]:
        """Probability, band and drivers of each customer's history at ``as_of`` (default: now)."""
        as_of = as_of or datetime.now(UTC).replace(tzinfo=None)
        frame = self.history_features(histories, as_of)
        rows = self._explained(frame, top_k)
        names = self.model.feature_names
        for position, row in enumerate(rows):
            row["as_of"] = as_of.replace(tzinfo=UTC)  # RFC 3339 needs the zone: naive means UTC here
            row["features"] = (
                {name: io.strict(frame[name].iloc[position]) for name in names} if include_features else None
            )
        return [HistoryScore.model_construct(**row) for row in rows]


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


def prepared_matrix(model: ChurnModel, prepared: pd.DataFrame) -> np.ndarray:
    """A prepared frame as the float32 matrix XGBoost reads (categories as their codes, NaN when
    missing): what :class:`RecordEncoder` gives for the same records."""
    out = np.empty((len(prepared), len(model.columns)), dtype=np.float32)
    for position, column in enumerate(model.columns):
        values = prepared[column.name]
        if column.dtype == "category":
            codes = values.cat.codes.to_numpy().astype(np.float32)
            codes[codes < 0] = np.nan
            out[:, position] = codes
        else:
            out[:, position] = values.to_numpy(dtype=np.float64)
    return out


def _finite(driver: dict[str, Any]) -> dict[str, Any]:
    return {k: io.strict(v) if k in ("value", "typical") else v for k, v in driver.items()}


# ---------------------------------------------------------------------------------------------------
# HTTP: API keys, request bodies, readable validation errors, metrics and logs, the OpenAPI document.


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _send_json(send: Callable, status: int, body: dict[str, Any], headers: Sequence = ()) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def is_open_path(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class ApiKeyMiddleware:
    """Refuse calls without the API key (``X-API-Key: <key>`` or ``Authorization: Bearer <key>``) with
    401; health, metrics and the OpenAPI document stay open, as do CORS preflights."""

    def __init__(self, app: Callable, key: str) -> None:
        self.app, self.key = app, key.encode()

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope.get("method") == "OPTIONS" or is_open_path(scope["path"]):
            return await self.app(scope, receive, send)
        given = _header(scope, b"x-api-key")
        if given is None:
            auth = _header(scope, b"authorization") or ""
            scheme, _, token = auth.partition(" ")
            given = token.strip() if scheme.lower() == "bearer" else None
        if given is not None and hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self.key):
            return await self.app(scope, receive, send)
        message = "missing or wrong API key: send it as 'X-API-Key: <key>' or 'Authorization: Bearer <key>'"
        body = error_body(message, "unauthorized", ["header", "X-API-Key"])
        await _send_json(send, 401, body, [(b"www-authenticate", b"ApiKey")])


class BodyGuardMiddleware:
    """Refuse a POST body the API cannot take before anything reads it: a media type other than JSON
    (415) and a body over ``max_bytes`` (413), whether Content-Length announces it or it streams in
    without one.

    BentoML picks its parser from the Content-Type (multipart, form, pickle), so a multipart body
    without a boundary failed inside it with a 500; and it reads and parses a body whole before
    validating it (a 63 MB body was parsed for 1.4 s before its 400).
    """

    def __init__(self, app: Callable, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        media = _header(scope, b"content-type")
        if media is not None and media.partition(";")[0].strip().lower() != JSON_MEDIA:
            message = f"send the body as JSON ('Content-Type: {JSON_MEDIA}'), not {media[:100]!r}"
            return await _send_json(send, 415, error_body(message, "unsupported_media_type", CONTENT_TYPE))
        declared = _header(scope, b"content-length")  # a number: the HTTP parser refuses anything else
        if declared is None:
            return await self._streamed(scope, receive, send)
        if declared.strip().isdigit() and int(declared) > self.max_bytes:
            return await self._too_large(send)
        return await self.app(scope, receive, send)

    async def _streamed(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        """A body without Content-Length (chunked): read up to the limit, then hand it on whole."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._too_large(send)
            if not message.get("more_body"):
                break
        pending = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay() -> dict[str, Any]:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Callable) -> None:
        limit = f"{self.max_bytes} bytes (serving.max_body_bytes)"
        message = f"request body larger than {limit}: split it into smaller requests"
        await _send_json(send, 413, error_body(message, "body_too_large", ["body"]))


def endpoint_label(path: str, routes: frozenset[str]) -> str:
    """The ``endpoint`` label of a request in the metrics: its route, the static prefix it lies under,
    else ``other``, so that made-up paths (scanners, typos) share one series instead of adding their own."""
    if path in routes:
        return path
    return next((prefix for prefix in OPEN_PREFIXES if path.startswith(prefix)), OTHER_ENDPOINT)


def label_metrics_by_route() -> None:
    """Make BentoML label its request metrics with :func:`endpoint_label` instead of the raw path.

    BentoML's metrics middleware is the outermost layer of a worker's app and labels each request with
    ``scope["path"]``: 20 random unauthenticated paths added 400 series (/metrics 95 -> 182 KB), and a
    service middleware runs too late to change the label. BentoML looks the class up by name when a
    worker builds its app, so the name is pointed at a subclass that shows it the label as the path;
    the app inside still gets the real scope.
    """
    from bentoml._internal.context import server_context
    from bentoml._internal.server.http import instruments

    base = instruments.RunnerTrafficMetricsMiddleware
    if getattr(base, "by_route", False):
        return

    class RouteLabelledMetrics(base):  # type: ignore[misc, valid-type]
        by_route = True

        def __init__(self, app: Callable, **options: Any) -> None:
            async def inner(scope: dict[str, Any], receive: Callable, send: Callable) -> None:
                await app(scope.get(REAL_SCOPE, scope), receive, send)

            super().__init__(inner, **options)
            self.routes = OPEN_PATHS | frozenset(server_context.service_routes)

        async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
            path = scope.get("path")
            if path is not None and (label := endpoint_label(path, self.routes)) != path:
                scope = {**scope, "path": label, REAL_SCOPE: scope}
            await super().__call__(scope, receive, send)

    instruments.RunnerTrafficMetricsMiddleware = RouteLabelledMetrics


def client_error_status(exc: BaseException | None) -> int | None:
    """The 4xx status BentoML answers for an exception of an API call, None for a server error."""
    from bentoml.exceptions import BentoMLException
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return 400
    if isinstance(exc, BentoMLException) and exc.error_code.value < 500:
        return int(exc.error_code.value)
    return None


def _problems(exc: BaseException) -> str:
    """What was wrong, by kind only: a pydantic error's text quotes the request's values."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return type(exc).__name__
    kinds = sorted({error["type"] for error in exc.errors(include_url=False, include_input=False)})
    return f"{exc.error_count()} validation error(s) ({', '.join(kinds)})"


class ClientErrorLogFilter(logging.Filter):
    """Turn BentoML's log of a refused API call into one INFO line that holds no request values.

    BentoML logs every exception of an API call at ERROR with its traceback, and a pydantic error's text
    quotes the input: each bad request wrote dozens of lines of customer data (41k lines, 3.3 MB in one
    test run). A client's mistake is not the server's error; server errors keep their traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        status = client_error_status(exc)
        if status is None or exc is None:  # a server error: its traceback is needed
            return True
        where = record.args if isinstance(record.args, tuple) and len(record.args) == 2 else ("?", "?")
        record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        record.msg, record.args = "refused %s [%s] with %d: %s", (*where, status, _problems(exc))
        record.exc_info, record.exc_text = None, None
        return True


def quiet_client_errors() -> None:
    """Install :class:`ClientErrorLogFilter` on the logger of BentoML's API error handler (once)."""
    from bentoml._internal.server import http_app

    logger = http_app.logger
    if not any(isinstance(f, ClientErrorLogFilter) for f in logger.filters):
        logger.addFilter(ClientErrorLogFilter())


def summarize_errors(detail: Sequence[dict[str, Any]], limit: int = 5) -> str:
    """``records.0.plan: Input should be 'basic', 'free' or 'pro'; ...``: the fields named in one line."""
    parts = []
    for item in detail[:limit]:
        where = ".".join(str(p) for p in item.get("loc", ())) or "body"
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    more = f" (and {len(detail) - limit} more)" if len(detail) > limit else ""
    return "; ".join(parts) + more


class ErrorMessageMiddleware:
    """Rewrite BentoML's 400 answers ("1 validation error for Input") so that ``error`` names the fields.

    BentoML's own body keeps its shape (``error`` + ``detail`` list); only ``error`` is replaced.
    """

    def __init__(self, app: Callable) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        held: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def rewrite(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] == 400:
                held["start"] = message
                return
            if "start" not in held or message["type"] != "http.response.body":
                return await send(message)
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            try:
                data = json.loads(body)
                data["error"] = summarize_errors(data["detail"])
                body = json.dumps(data).encode()
            except (ValueError, KeyError, TypeError):
                pass
            start = held["start"]
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, rewrite)


class ConnectionSpreadMiddleware:
    """Ask the client of every ``every``-th response of this worker to reconnect (``Connection: close``).

    Workers share one listening socket and keep-alive connections stay where they were accepted, so a
    pool of connections opened at once can land mostly on one worker (30 of 32 seen here) and queue
    there while the other idles. A reconnecting client is accepted by whichever worker is free first,
    and a busy worker answers, hence sheds, more: the connections spread by load (nginx's
    ``keepalive_requests`` does the same). HTTP clients reconnect on ``Connection: close`` on their own.
    """

    def __init__(self, app: Callable, every: int) -> None:
        self.app, self.every, self.count = app, every, 0

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        self.count += 1
        if self.count < self.every:
            return await self.app(scope, receive, send)
        self.count = 0

        async def closing(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing)


class OpenAPIMiddleware:
    """Serve ``/docs.json`` from ``document()`` (BentoML's document completed by :func:`complete_openapi`)."""

    def __init__(self, app: Callable, document: Callable[[], dict[str, Any]]) -> None:
        self.app, self.document, self._cached = app, document, None

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope["path"] == "/docs.json" and scope.get("method") == "GET":
            if self._cached is None:
                self._cached = self.document()
            return await _send_json(send, 200, self._cached)
        return await self.app(scope, receive, send)


def complete_openapi(
    spec: dict[str, Any],
    request_examples: dict[str, dict[str, Any]],
    schema_examples: dict[str, Any],
    error_schema: dict[str, Any],
    auth: bool,
    title: str,
    version: str,
) -> dict[str, Any]:
    """BentoML's OpenAPI document, completed: OpenAPI 3.1 (pydantic writes JSON Schema 2020-12, with
    ``null`` types), the real error bodies (400 invalid request, 401 API key, 413 body too large, 415 not
    JSON, 422 unscorable history), an example per request and per schema, and the API key schemes when a
    key is required."""
    spec = json.loads(json.dumps(spec))
    spec["openapi"] = "3.1.0"
    spec["info"] = {**spec.get("info", {}), "title": title, "version": version}
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    error_schema = dict(error_schema)
    schemas.update(error_schema.pop("$defs", {}))
    schemas["ErrorBody"] = error_schema
    for name, example in schema_examples.items():
        if name in schemas:
            schemas[name]["examples"] = [example]
    error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for path, item in spec.get("paths", {}).items():
        operation = item.get("post")
        if operation is None:
            continue
        responses = operation.setdefault("responses", {})
        responses.pop("404", None)
        responses["400"] = {"description": "Invalid request; `error` names the fields.", "content": error_ref}
        responses["413"] = {"description": "Body over serving.max_body_bytes.", "content": error_ref}
        responses["415"] = {"description": "Body not sent as application/json.", "content": error_ref}
        if path == "/score_history":
            responses["422"] = {
                "description": "Valid JSON the model cannot score (a history breaking the data contract).",
                "content": error_ref,
            }
        if auth:
            responses["401"] = {"description": "Missing or wrong API key.", "content": error_ref}
            operation["security"] = [{"ApiKey": []}, {"Bearer": []}]
        media = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if media is not None and path in request_examples:
            media["example"] = request_examples[path]
    if auth:
        spec["components"]["securitySchemes"] = {
            "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "Bearer": {"type": "http", "scheme": "bearer"},
        }
    return spec


# ---------------------------------------------------------------------------------------------------
# Launching.


def service_dir() -> Path:
    """The directory holding ``serving/service.py``: the current one, else the source checkout."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (base / "serving" / "service.py").is_file():
            return base
    raise ChurnmlError("serving/service.py not found: run `churnml serve` from the churnml checkout")


def server_environment(
    config_path: str | Path | None, overrides: Sequence[str], model: str | None = None
) -> tuple[Config, dict[str, str]]:
    """The config a server process will load, and the environment variables that make it load it.

    The server runs from the service directory, so the MLflow store this shell resolves (a relative
    ``output.dir``, ``$MLFLOW_TRACKING_URI``) is pinned as an override.
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
def bentoml_executable() -> str:
    candidate = Path(sys.executable).with_name("bentoml")
    return str(candidate) if candidate.exists() else "bentoml"


def serve_command(config: Config, host: str | None = None, port: int | None = None) -> list[str]:
    return [
        bentoml_executable(),
        "serve",
        SERVICE,
        "--working-dir",
        str(service_dir()),
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

    The model is loaded here first, so a missing champion is one clear error rather than a crashing worker.
    """
    config, env = server_environment(config_path, overrides, model)
    loaded = load_served_model(config, model)
    print(f"serving {loaded.version} on http://{host or config.serving.host}:{port or config.serving.port}")
    return subprocess.call(serve_command(config, host, port), env={**os.environ, **env})


def build_bento(config_path: str | Path | None, overrides: Sequence[str], model: str | None = None) -> str:
    """Export the model into BentoML's store and build the Bento (service, churnml wheel, model)."""
    config, _ = server_environment(config_path, overrides, model)
    tag = export_bento_model(config, model)
    root = service_dir()
    dist = root / "serving" / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(root),
        ],
        check=True,
    )
    env = {**os.environ, ENV_MODEL_URI: f"{BENTO_SCHEME}{tag}", "BENTOML_DO_NOT_TRACK": "true"}
    subprocess.run(
        [bentoml_executable(), "build", "-f", "serving/bentofile.yaml", "."], cwd=root, env=env, check=True
    )
    return tag


def wait_ready(url: str, timeout_s: float = 120.0) -> None:
    """Block until ``url/readyz`` answers 200 (every worker loaded the model); raise after ``timeout_s``.

    ``bentoml.serve`` returns as soon as the processes are started, before the model is loaded.
    """
    import time
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise ChurnmlError(f"the server at {url} was not ready after {timeout_s:.0f} s: see its log")
