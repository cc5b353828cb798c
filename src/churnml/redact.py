"""Keep passwords out of what churnml shows and records: URLs with their password masked.

A database or service URL may carry one (``postgresql://user:secret@host/db``, ``?password=...``).
Error messages, run records (MLflow params and ``config.json``, a risk list's ``data_source``) and
``churnml config`` show such URLs masked; this module is the one place that knows how.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

MASK = "***"
SECRET_PARAMETERS = frozenset({"password", "sslpassword"})  # libpq's URL parameters holding secrets


def mask_url(url: str) -> str:
    """The URL with its password (in the user part or a ``password=`` parameter) replaced by ``***``."""
    head, question, query = url.partition("?")
    scheme, slashes, rest = head.partition("://")
    netloc, slash, path = rest.partition("/")
    if slashes and "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{host}"
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if k.lower() in SECRET_PARAMETERS else v) for k, v in pairs], safe="*")
    return scheme + slashes + netloc + slash + path + question + query


def url_secrets(url: str) -> tuple[str, ...]:
    """The secrets a URL holds, as written and percent-decoded (what a driver's message might echo)."""
    parts = urlsplit(url)
    found = [parts.password] if parts.password else []
    found += [v for k, v in parse_qsl(parts.query) if k.lower() in SECRET_PARAMETERS and v]
    return tuple({s for raw in found for s in (raw, unquote(raw))})


def redact(value: Any) -> Any:
    """A copy of a JSON-like value (a dumped config) with every URL in it masked; a string counts as a
    URL when it has a scheme (``://``) and no whitespace, so queries and text pass unchanged."""
    if isinstance(value, dict):
        return {key: redact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    if isinstance(value, str) and "://" in value and not any(c.isspace() for c in value):
        return mask_url(value)
    return value
