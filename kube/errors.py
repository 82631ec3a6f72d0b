"""Classify failures of API calls so callers decide on retry, relist or give-up in one place.

Two families reach callers: ``ApiException`` (the server answered with an error status)
and urllib3/OS errors (no answer: the server is down, restarting or unreachable). Code
above ``kube/`` should use these predicates rather than compare status codes itself.
"""

from __future__ import annotations

import json

import urllib3
from kubernetes.client.exceptions import ApiException

# Statuses that mean "try again later" rather than "your request is wrong".
_TRANSIENT_STATUSES = frozenset({0, 429, 500, 502, 503, 504})


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of an API error, or None when the error is not an API answer."""
    if isinstance(exc, ApiException):
        return int(exc.status) if exc.status is not None else 0
    return None


def message_of(exc: BaseException) -> str:
    """One line for a user: the server's own Status message for an API error (not the
    client's multi-line dump of headers and body), else the error's text."""
    if isinstance(exc, ApiException):
        try:
            status = json.loads(exc.body or "")
        except (TypeError, ValueError):
            status = None
        if isinstance(status, dict) and isinstance(status.get("message"), str):
            return str(status["message"])
        return f"{exc.status} {exc.reason or ''}".strip()
    return " ".join(str(exc).split())


def is_not_found(exc: BaseException) -> bool:
    return status_of(exc) == 404


def is_already_exists(exc: BaseException) -> bool:
    """409 on create: the object exists (a 409 on update is a conflict; callers know which)."""
    return status_of(exc) == 409


def is_conflict(exc: BaseException) -> bool:
    """409 on update: our resourceVersion is stale, someone else wrote first."""
    return status_of(exc) == 409


def is_forbidden(exc: BaseException) -> bool:
    """403: the identity may not do this (RBAC), or the namespace is terminating."""
    return status_of(exc) == 403


def is_namespace_terminating(exc: BaseException) -> bool:
    """403 because the namespace is being deleted: nothing can be created in it any more."""
    return status_of(exc) == 403 and "NamespaceTerminating" in str(getattr(exc, "body", "") or "")


def is_gone(exc: BaseException) -> bool:
    """410: the resourceVersion (or list continue token) is older than what etcd keeps."""
    return status_of(exc) == 410


def is_invalid(exc: BaseException) -> bool:
    """422: the server's validation (for example a CRD's OpenAPI schema) rejected the object."""
    return status_of(exc) == 422


def is_connection_error(exc: BaseException) -> bool:
    """No usable answer from the server: refused, reset, timed out, TLS torn down."""
    return isinstance(exc, urllib3.exceptions.HTTPError | OSError) and not isinstance(
        exc, ApiException
    )


def is_transient(exc: BaseException) -> bool:
    """Worth retrying unchanged: connection trouble, throttling, or a server-side failure."""
    if is_connection_error(exc):
        return True
    status = status_of(exc)
    return status is not None and status in _TRANSIENT_STATUSES


def server_url(exc: BaseException) -> str | None:
    """The URL of the server a connection failure was about, when the error knows it
    (urllib3's MaxRetryError names its connection pool)."""
    pool = getattr(exc, "pool", None)
    if pool is None or not getattr(pool, "host", None):
        return None
    return f"{pool.scheme}://{pool.host}:{pool.port}"


def connection_reason(exc: BaseException) -> str:
    """What a connection failure comes down to (`connection refused`, `TLS: certificate
    verify failed: ...`), found along its reason and chain of causes; for a message."""
    import ssl

    seen: BaseException | None = getattr(exc, "reason", None) or exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"TLS: {seen.verify_message or seen.reason}"
        if isinstance(seen, urllib3.exceptions.NameResolutionError):
            return f"cannot resolve host {seen.conn.host!r}"
        if isinstance(seen, urllib3.exceptions.NewConnectionError) and (
                seen.__cause__ or seen.__context__):
            pass  # (a ConnectTimeoutError subclass, for history) its cause says why
        elif isinstance(seen, urllib3.exceptions.ConnectTimeoutError | TimeoutError):
            return "connection timed out"
        elif isinstance(seen, urllib3.exceptions.ReadTimeoutError):
            return "no answer in time"
        elif isinstance(seen, OSError) and seen.strerror:
            return seen.strerror.lower()
        seen = seen.__cause__ or seen.__context__
    return " ".join(str(exc).split())[:200]
