"""Raw JSON requests to the API server over an ``ApiClient``.

Why raw: the generated typed APIs deserialize into model classes, which is slow and
silently drops fields the client library does not know (new API fields, CRD fields).
Controllers here work on plain ``dict`` objects, so we ask for JSON and decode it
ourselves. Authentication, TLS and the connection pool still come from the ``ApiClient``.
Non-2xx answers raise ``ApiException`` (see ``kube.errors``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from urllib3 import BaseHTTPResponse

JSON = dict[str, Any]
QueryValue = str | int | bool | None
Timeout = float | tuple[float, float]

# (connect, read) seconds for ordinary requests; watches pass their own.
DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 30.0)


def _query_pairs(query: Mapping[str, QueryValue] | None) -> list[tuple[str, str]]:
    """Query parameters as the API server expects them: lower-case booleans, no Nones."""
    pairs: list[tuple[str, str]] = []
    for key, value in (query or {}).items():
        if value is None:
            continue
        if isinstance(value, bool):
            pairs.append((key, "true" if value else "false"))
        else:
            pairs.append((key, str(value)))
    return pairs


def open_request(
    api_client: ApiClient,
    method: str,
    path: str,
    *,
    query: Mapping[str, QueryValue] | None = None,
    body: Any = None,
    content_type: str = "application/json",
    timeout: Timeout = DEFAULT_TIMEOUT,
) -> BaseHTTPResponse:
    """Send a request and return the unread urllib3 response (for streaming watches).

    Raises ``ApiException`` on a non-2xx status and urllib3/OS errors when the server
    cannot be reached.
    """
    method, url, headers, serialized_body, post_params = api_client.param_serialize(
        method=method,
        resource_path=path,
        query_params=_query_pairs(query) or None,
        header_params={"Accept": "application/json", "Content-Type": content_type},
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api_client.call_api(
        method,
        url,
        header_params=headers,
        body=serialized_body,
        post_params=post_params,
        _request_timeout=timeout,
    )
    if not 200 <= response.status <= 299:
        response.read()  # type: ignore[no-untyped-call]
        raise ApiException.from_response(http_resp=response, body=None, data=None)
    raw: BaseHTTPResponse = response.response
    return raw


def request_json(
    api_client: ApiClient,
    method: str,
    path: str,
    *,
    query: Mapping[str, QueryValue] | None = None,
    body: Any = None,
    content_type: str = "application/json",
    timeout: Timeout = DEFAULT_TIMEOUT,
) -> JSON:
    """Send a request and return the decoded JSON answer (``{}`` for an empty body)."""
    response = open_request(
        api_client,
        method,
        path,
        query=query,
        body=body,
        content_type=content_type,
        timeout=timeout,
    )
    try:
        data = response.data
    finally:
        response.release_conn()
    if not data:
        return {}
    decoded: JSON = json.loads(data)
    return decoded


def status_message(exc: ApiException) -> str:
    """The server's own ``Status.message`` of an API error (what kubectl would print)."""
    try:
        status = json.loads(exc.body or "")
    except (TypeError, ValueError):
        return str(exc.reason or exc.status)
    if isinstance(status, dict) and isinstance(status.get("message"), str):
        return str(status["message"])
    return str(exc.reason or exc.status)
