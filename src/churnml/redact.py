"""Keep passwords out of what churnml shows and records: URLs with their password masked.

A database or service URL may carry one (``postgresql://user:secret@host/db``, ``?password=...``).
Error messages, run records (MLflow params and ``config.json``, a risk list's ``data_source``) and
``churnml config`` show such URLs masked; this module is the one place that knows how.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

MASK = "***"
SECRET_PARAMETERS = frozenset({"password", "sslpassword"})  # libpq's URL parameters holding secrets


def mask_url(url: str) -> str:
    """The URL with its password (in the user part or a ``password=`` parameter) replaced by ``***``;
    a libpq keyword string (``host=db password=...``) has its ``password=`` masked too.

    The user part runs to the *last* ``@``: a password written with an unencoded ``/``, ``?`` or ``@``
    is still masked whole (a stray ``@`` later in a query masks more than needed, never less).
    """
    scheme, slashes, rest = url.partition("://")
    if not slashes:
        return _mask_keywords(url)
    if "@" in rest:
        userinfo, host = rest.rsplit("@", 1)
        if ":" in userinfo:
            rest = f"{userinfo.split(':', 1)[0]}:{MASK}@{host}"
    return scheme + slashes + _mask_keywords(rest)


_KEYWORD = re.compile(r"\b(" + "|".join(SECRET_PARAMETERS) + r")(\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)", re.I)


def _mask_keywords(text: str) -> str:
    return _KEYWORD.sub(lambda m: m.group(1) + m.group(2) + MASK, text)


def url_secrets(url: str) -> tuple[str, ...]:
    """The secrets a URL holds, as written and percent-decoded (what a driver's message might echo)."""
    _, slashes, rest = url.partition("://")
    found = []
    if slashes and "@" in rest:
        userinfo = rest.rsplit("@", 1)[0]
        if ":" in userinfo:
            found.append(userinfo.split(":", 1)[1])
    found += [m.group(3).strip("'") for m in _KEYWORD.finditer(url)]
    return tuple({s for raw in found if raw for s in (raw, unquote(raw))})


def redact(value: Any) -> Any:
    """A copy of a JSON-like value (a dumped config) with every URL in it masked; a string counts as a
    URL when it has a scheme (``://``) and no whitespace, so queries and text pass unchanged."""
    if isinstance(value, dict):
        return {key: redact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    if isinstance(value, str) and (
        ("://" in value and not any(c.isspace() for c in value))
        or (re.match(r"\s*\w+\s*=", value) and _KEYWORD.search(value))  # libpq's "host=db password=..."
    ):
        return mask_url(value)
    return value
