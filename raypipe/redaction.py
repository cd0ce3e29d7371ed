"""Redact secrets from URLs before they are written anywhere a person or a log may read.

Two kinds of secret travel inside URLs: credentials in the authority
(``postgresql://user:password@host/db``) and signatures or tokens in the query string (a
presigned ``https://bucket.s3.amazonaws.com/key?X-Amz-Signature=...``). Records (``run.json``,
stage records, a model's ``metrics.json``, dataset manifests), log lines, reports and hints get
the redacted form; the code that connects keeps using the real URL.

Examples
--------
>>> redact_url("postgresql://alice:s3cret@db.internal:5432/mlflow")
'postgresql://alice:***@db.internal:5432/mlflow'
>>> redact_url("https://b.s3.amazonaws.com/raw.csv?X-Amz-Signature=abc&X-Amz-Expires=60")
'https://b.s3.amazonaws.com/raw.csv?X-Amz-Signature=***&X-Amz-Expires=***'
>>> redact_text("failed to reach https://tok@host/x, retrying")
'failed to reach https://***@host/x, retrying'
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

__all__ = [
    "REDACTED",
    "RedactingFilter",
    "redact_record",
    "redact_text",
    "redact_url",
    "strip_query",
]

REDACTED = "***"

# A scheme, ``://`` and everything up to whitespace, a quote or a bracket that ends it in text.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`()\[\]{}]+")


def redact_url(url: str) -> str:
    """``url`` with its password (or lone user token) and every query value replaced by ``***``.

    Strings that are not URLs with a scheme are returned unchanged, as are URLs with nothing to
    redact (so a plain path or ``s3://bucket/key`` reads exactly as written).
    """
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return _redact_unparsable(url)
    netloc = _redact_netloc(parts)
    query = _redact_query(parts.query)
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def strip_query(url: str) -> str:
    """``url`` without its query string and fragment, credentials redacted.

    For what a manifest keeps of a presigned URL: the object it named, not the signature.
    """
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return _redact_unparsable(url)
    return urlunsplit(parts._replace(netloc=_redact_netloc(parts), query="", fragment=""))


def redact_text(text: str) -> str:
    """Every URL-looking part of ``text`` passed through :func:`redact_url`."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), text)


def redact_record(value: Any) -> Any:
    """A copy of a JSON-like record (dicts, lists, tuples, strings) with every URL redacted.

    Keys are kept as written; values of other types are returned as they are.
    """
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: redact_record(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_record(item) for item in value)
    return value


def _redact_netloc(parts: SplitResult) -> str:
    netloc = parts.netloc
    if "@" not in netloc:
        return netloc
    userinfo, _, host = netloc.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    # ``user:password@`` keeps the user (who connected); a lone ``token@`` is all secret.
    return f"{user}:{REDACTED}@{host}" if colon else f"{REDACTED}@{host}"


def _redact_query(query: str) -> str:
    if not query:
        return query
    pairs = []
    for pair in query.split("&"):
        key, equals, _value = pair.partition("=")
        pairs.append(f"{key}={REDACTED}" if equals else REDACTED)
    return "&".join(pairs)


def _redact_unparsable(url: str) -> str:
    """A URL :func:`urlsplit` refuses (a bad port, brackets): keep only scheme and host part."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rpartition("@")[2].split("?", 1)[0]
    return f"{scheme}://{REDACTED}@{host}/{REDACTED}" if rest else url


class RedactingFilter(logging.Filter):
    """A logging filter that redacts URLs in every record's rendered message.

    The CLI attaches it to the handler it configures, so no log line it prints carries a
    password or a presigned URL's signature, whatever module logged it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
