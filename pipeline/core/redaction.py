"""The one place that decides what of a URL may be shown, logged or stored for display.

A source URL can carry credentials: user-info (``https://user:pass@host``)
and signed query strings (S3/GCS presigned URLs, tokens). Only the worker's
fetch needs them; everything a person or a log sees gets the redacted form:
scheme, host (and port), path. The redacted form is also what a video's id is
derived from, so re-signing the same object does not create a new video.
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit, urlunsplit

REDACTED = "***"


def redact_url(url: str) -> str:
    """``url`` without user-info, query or fragment; a password-only netloc keeps a mask.

    Text that is not a URL (a local path) is returned unchanged.
    """
    text = str(url)
    if "://" not in text:
        return text
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparseable URL>"
    if ":" in host:  # an IPv6 literal goes back into brackets
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit(SplitResult(parts.scheme.lower(), netloc, parts.path, "", ""))


def redact_connection_url(url: str) -> str:
    """A service URL (redis://, postgresql://) with its password masked, user and database kept.

    For connection strings the user, host, port and database number help an
    operator debug; only the password is a secret.
    """
    text = str(url)
    if "://" not in text:
        return text
    try:
        parts = urlsplit(text)
        password = parts.password
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparseable URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    user = parts.username
    if user or password:
        netloc = f"{user or ''}{':' + REDACTED if password else ''}@{netloc}"
    query = REDACTED if parts.query and "password" in parts.query.lower() else parts.query
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, ""))
