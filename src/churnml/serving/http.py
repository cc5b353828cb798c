"""The HTTP layer of the prediction service, around BentoML's app: the API key, the body guard, readable
400s, connections spread over workers, one metrics series per route, quiet client-error logs and the
completed OpenAPI document.

Plain ASGI middleware (added by ``churnml.serving.service``), so each piece is tested over real HTTP
without knowing the model.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from churnml.serving.schemas import error_body

# Paths that never need the API key: health, metrics, the OpenAPI document and its UI.
OPEN_PATHS = frozenset({"/", "/livez", "/readyz", "/healthz", "/metrics", "/docs.json", "/schema.json"})
OPEN_PREFIXES = ("/static_content/", "/assets/")
OTHER_ENDPOINT = "other"  # the metrics' endpoint label of every path that is not a route
REAL_SCOPE = "churnml.real_scope"
JSON_MEDIA = "application/json"
CONTENT_TYPE = ("header", "Content-Type")


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

    instruments.RunnerTrafficMetricsMiddleware = RouteLabelledMetrics  # type: ignore[misc,assignment]


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
        self.app, self.document = app, document
        self._cached: dict[str, Any] | None = None

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
