"""The churnml prediction service (BentoML 1.4): calibrated churn probability, risk band and reasons for
apps, from the same model and feature code as the batch pipeline.

The model is read when this module is imported, because the request models are generated from its feature
specification (one typed field per feature, categories from training); ``__init__`` then builds the scorer
of each worker from that same loaded model. Which model: ``CHURNML_MODEL_URI``, else ``serving.model_uri`` in
the config named by ``CHURNML_CONFIG``, else (run from a built Bento) the model the Bento packs, else
``models:/<tracking.registered_model>@champion`` in the MLflow store of the config (or
``MLFLOW_TRACKING_URI``). ``churnml serve`` sets these for you.

The uplift model, when there is one, is found the way `churnml score` finds it (``CHURNML_UPLIFT_MODEL_URI``
or the Bento's packed copy first): every answer then carries its uplift fields, chosen at import as the
response models are (``schemas.UpliftFields``); without one the answers are those of before.

Run: ``churnml serve``, or ``bentoml serve churnml.serving.service:ChurnService`` from any directory (the
service is this package module, so an installed wheel is enough). Docs: serving/README.md in the
repository.
"""

import os
from functools import cache
from typing import Annotated, Any

import bentoml
from bentoml.validators import ContentType
from pydantic import Field
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse

from churnml.risk import drift
from churnml.risk.explain import model_typical_values
from churnml.serving import http, launch, loading
from churnml.serving.batching import Batcher
from churnml.serving.schemas import (
    RESPONSE_EXAMPLES,
    ErrorBody,
    Explanation,
    HistoryScore,
    Prediction,
    Timestamp,
    UpliftExplanation,
    UpliftHistoryScore,
    UpliftPrediction,
    example_history,
    example_record,
    feature_record_model,
    history_model,
)
from churnml.serving.scorer import ClientError, HistoryRequest, Scorer

CONFIG = loading.service_config()
SETTINGS = CONFIG.serving
MODEL_URI = loading.model_uri(CONFIG, os.getcwd())  # BentoML imports a Bento's service from its src/
API_KEY = os.environ.get(SETTINGS.api_key_env, "").strip()


@cache
def served_model() -> loading.LoadedModel:
    """The model of this process, loaded once (the import needs its spec, ``__init__`` the rest)."""
    return loading.load_served_model(CONFIG, MODEL_URI)


@cache
def served_uplift() -> loading.LoadedUplift | None:
    """The uplift model of this process, if one is found (``loading.load_served_uplift``)."""
    return loading.load_served_uplift(CONFIG, served_model().model, os.getcwd())


_SPEC = served_model().model
# Response models: with an uplift model every answer carries its fields, without one they are as before.
PredictionOut: Any = Prediction
ExplanationOut: Any = Explanation
HistoryScoreOut: Any = HistoryScore
if served_uplift() is not None:
    PredictionOut, ExplanationOut, HistoryScoreOut = UpliftPrediction, UpliftExplanation, UpliftHistoryScore
HISTORY_EXAMPLE = example_history(_SPEC)
EXAMPLE_RECORD = example_record(_SPEC, model_typical_values(_SPEC))

CustomerFeatures = feature_record_model(_SPEC)
CustomerHistory = history_model(_SPEC, SETTINGS.max_rows)
Records = Annotated[
    list[CustomerFeatures],  # type: ignore[valid-type]
    Field(min_length=1, max_length=SETTINGS.max_records, description="Customers' feature records."),
]
Histories = Annotated[
    list[CustomerHistory],  # type: ignore[valid-type]
    Field(min_length=1, max_length=SETTINGS.max_customers, description="Customers' raw recent history."),
]
TopK = Annotated[int, Field(ge=1, le=10, description="How many drivers to give per customer.")]
TOP_K = CONFIG.risk.top_k
JSON = ContentType("application/json")  # saves BentoML a JSON-schema build per response to find it
HISTORY_BATCH = bentoml.metrics.Histogram(
    name="churnml_history_batch_requests",
    documentation="/score_history requests scored together in one batch (churnml.serving.batching).",
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64, 100),
)
REFERENCE = drift.Reference.from_dict(_SPEC.reference)
if REFERENCE is not None and REFERENCE.score is not None:  # a model without a reference has no such series
    SCORE_PSI = bentoml.metrics.Gauge(
        name="churnml_score_psi",
        documentation="PSI of the last drift.window churn probabilities this worker answered against the "
        "model's training reference (out-of-time scores); NaN until drift.min_window. Alert above ~0.2.",
        multiprocess_mode="liveall",
    )
    SERVED_SCORES = bentoml.metrics.Counter(
        name="churnml_served_scores",
        documentation="Churn probabilities answered, per bin of the training reference's score deciles.",
        labelnames=["bin"],
    )
    REFERENCE_SHARE = bentoml.metrics.Gauge(
        name="churnml_reference_score_share",
        documentation="Share of the training reference's scores in each bin of churnml_served_scores.",
        labelnames=["bin"],
        multiprocess_mode="max",
    )


class ScoreDrift:
    """Every answered batch of probabilities into the worker's window and the score-drift metrics: a few
    numpy operations and one metric update per bin hit, per request."""

    def __init__(self, reference: drift.Profile) -> None:
        self.window = drift.ScoreWindow(reference, CONFIG.drift.window)
        self.labels = self.window.bin_labels()
        for label, share in zip(self.labels, reference.expected(), strict=True):
            REFERENCE_SHARE.labels(bin=label).set(share)
        SCORE_PSI.set(float("nan"))

    def __call__(self, probability: Any) -> None:
        added = self.window.add(probability)
        for label, count in zip(self.labels, added, strict=True):
            if count:
                SERVED_SCORES.labels(bin=label).inc(int(count))
        enough = self.window.filled >= CONFIG.drift.min_window
        SCORE_PSI.set(self.window.psi() if enough else float("nan"))


UNTRACED = ["/predict", "/explain", "/score_history", "/livez", "/readyz", "/healthz", "/metrics"]


def _bento_model_tag() -> str | None:
    return (
        MODEL_URI.removeprefix(loading.BENTO_SCHEME) if MODEL_URI.startswith(loading.BENTO_SCHEME) else None
    )


def _bento_uplift_tag() -> str | None:
    uplift = served_uplift()
    return (
        uplift.uri.removeprefix(loading.BENTO_SCHEME)
        if uplift is not None and uplift.uri.startswith(loading.BENTO_SCHEME)
        else None
    )


@bentoml.service(
    name="churn_service",
    workers=SETTINGS.workers,
    traffic={"timeout": SETTINGS.timeout_s},
    http={"host": SETTINGS.host, "port": SETTINGS.port},
    logging={"access": {"enabled": SETTINGS.access_log}},
    tracing={} if SETTINGS.tracing else {"excluded_urls": ",".join(UNTRACED)},
)
class ChurnService:
    """Churn probability, risk band and reasons for one or many customers; every response names the model
    version that produced it."""

    if _bento_model_tag():  # declared at class level so `bentoml build` packs the model into the Bento
        bento_model = bentoml.models.BentoModel(_bento_model_tag())
    if _bento_uplift_tag():
        bento_uplift_model = bentoml.models.BentoModel(_bento_uplift_tag())

    def __init__(self) -> None:
        score_drift = ScoreDrift(REFERENCE.score) if REFERENCE is not None and REFERENCE.score else None
        self.scorer = Scorer(served_model(), CONFIG, on_scores=score_drift, uplift=served_uplift())
        self.histories = Batcher(
            self.scorer.score_histories,
            max_size=SETTINGS.max_customers,
            size=lambda request: len(request.histories),
            max_wait_s=SETTINGS.history_wait_ms / 1000,
            on_batch=HISTORY_BATCH.observe,
        )
        launch.bind_apis_once(self)

    @bentoml.on_startup
    def _settle_heap(self) -> None:
        """Once the app is built: freeze what lives for good, collect the young less often (tail latency)."""
        launch.settle_heap()

    def __is_ready__(self) -> bool:
        """``/readyz`` answers 200 once the model is loaded and the scorer built."""
        return getattr(self, "scorer", None) is not None

    @bentoml.api(
        batchable=True, max_batch_size=SETTINGS.max_batch_size, max_latency_ms=SETTINGS.max_latency_ms
    )
    async def predict(self, records: Records) -> Annotated[list[PredictionOut], JSON]:
        """Calibrated churn probability, risk band and model version for each feature record.

        Records of concurrent requests are batched adaptively into one model call.
        """
        return self.scorer.predict(records)

    @bentoml.api
    def explain(self, records: Records, top_k: TopK = TOP_K) -> Annotated[list[ExplanationOut], JSON]:
        """The prediction plus the top drivers: readable sentences with their SHAP contributions."""
        return self.scorer.explain(records, top_k)

    @bentoml.api
    async def score_history(
        self,
        customers: Histories,
        as_of: Annotated[
            Timestamp | None,
            Field(
                description="Score at this moment (ISO 8601, naive = UTC); features see rows strictly "
                "before it. Default: now."
            ),
        ] = None,
        top_k: TopK = TOP_K,
        include_features: Annotated[bool, Field(description="Also return the computed features.")] = False,
    ) -> Annotated[list[HistoryScoreOut], JSON]:
        """Score customers from their raw history in the data contract's shape: features are computed by
        the training feature builders at ``as_of``, then probability, band and drivers.

        Concurrent requests are scored together (``churnml.serving.batching``), each answer as if alone."""
        answer = await self.histories(HistoryRequest(customers, as_of, top_k, include_features))
        if isinstance(answer, ClientError):
            return JSONResponse(answer.body(), status_code=422)  # type: ignore[return-value]
        if isinstance(answer, Exception):
            raise answer  # a fault of this request alone (the server's 500 and its log)
        return answer


def openapi_document() -> dict:
    """BentoML's document of this service, completed with error bodies, examples and the key scheme."""
    example = {"records": [EXAMPLE_RECORD]}
    return http.complete_openapi(
        BENTO.openapi_spec.asdict(),
        request_examples={
            "/predict": example,
            "/explain": {**example, "top_k": TOP_K},
            "/score_history": {
                "customers": [HISTORY_EXAMPLE],
                "as_of": "2025-06-01T00:00:00",
                "top_k": TOP_K,
                "include_features": False,
            },
        },
        schema_examples={
            **RESPONSE_EXAMPLES,
            "CustomerFeatures": EXAMPLE_RECORD,
            "CustomerHistory": HISTORY_EXAMPLE,
        },
        error_schema=ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}"),
        auth=bool(API_KEY),
        title="churnml prediction service",
        version=served_model().version,
    )


# What @bentoml.service made of the class: a bentoml Service (the type checker sees the class).
BENTO: Any = ChurnService
# BentoML's own metrics and error logs: a route label per series, one quiet line per client error.
http.label_metrics_by_route()
http.quiet_client_errors()
# Outermost first: CORS answers preflights before the key is checked, and only callers with the key
# learn more than 401 about their body.
if SETTINGS.cors_origins:
    BENTO.add_asgi_middleware(
        CORSMiddleware,
        allow_origins=list(SETTINGS.cors_origins),
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["content-type", "x-api-key", "authorization"],
    )
BENTO.add_asgi_middleware(http.OpenAPIMiddleware, document=openapi_document)
if API_KEY:
    BENTO.add_asgi_middleware(http.ApiKeyMiddleware, key=API_KEY)
BENTO.add_asgi_middleware(http.BodyGuardMiddleware, max_bytes=SETTINGS.max_body_bytes)
BENTO.add_asgi_middleware(http.ErrorMessageMiddleware)
if SETTINGS.reconnect_every:
    BENTO.add_asgi_middleware(http.ConnectionSpreadMiddleware, every=SETTINGS.reconnect_every)
