"""Raw JSON requests to the API server over an ``ApiClient``.

Why raw: the generated typed APIs deserialize into model classes, which is slow and
silently drops fields the client library does not know (new API fields, CRD fields).
Controllers here work on plain ``dict`` objects, so we ask for JSON and decode it
ourselves. Authentication, TLS and the connection pool still come from the library's
``Configuration`` and ``RESTClientObject``. Non-2xx answers raise ``ApiException`` (see
``kube.errors``).

`ApiClient` is ours: the part of the library's ``ApiClient`` that raw requests use
(``param_serialize`` and ``call_api``, the same names and results). The library's class
lives in a module that imports pydantic, dateutil and the model registry - about 7 MB in
every agent for deserializing into model classes, which we never do (see ``kube.lean``).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from kubernetes.client.configuration import Configuration
from kubernetes.client.exceptions import ApiException
from kubernetes.client.rest import RESTClientObject, RESTResponse
from urllib3 import BaseHTTPResponse

JSON = dict[str, Any]
QueryValue = str | int | bool | None
Timeout = float | tuple[float, float]

# (connect, read) seconds for ordinary requests; watches pass their own.
DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 30.0)


class ApiClient:
    """Authentication, TLS and the connection pool for raw requests to one API server."""

    def __init__(self, configuration: Configuration) -> None:
        self.configuration = configuration
        self.rest_client = RESTClientObject(configuration)
        self.default_headers: dict[str, str] = {}
        self.user_agent = "globalnet"

    @property
    def user_agent(self) -> str:
        return self.default_headers["User-Agent"]

    @user_agent.setter
    def user_agent(self, value: str) -> None:
        self.default_headers["User-Agent"] = value

    def set_default_header(self, name: str, value: str) -> None:
        self.default_headers[name] = value

    def param_serialize(
        self,
        method: str,
        resource_path: str,
        query_params: list[tuple[str, str]] | None = None,
        header_params: dict[str, str] | None = None,
        body: Any = None,
        auth_settings: list[str] | None = None,
    ) -> tuple[str, str, dict[str, str], Any, list[tuple[str, Any]] | None]:
        """``(method, url, headers, body, post_params)`` as the library's builds them:
        default headers, the configuration's credentials, quoted query values."""
        headers = {**(header_params or {}), **self.default_headers}
        settings: dict[str, Any] = dict(self.configuration.auth_settings())
        for auth in auth_settings or []:
            setting: dict[str, Any] | None = settings.get(auth)
            if not setting:
                continue
            if setting["in"] == "header":
                headers[setting["key"]] = setting["value"]
            elif setting["in"] == "query":
                query_params = [*(query_params or []), (setting["key"], setting["value"])]
            else:
                raise ValueError(f"authentication in {setting['in']!r} is not supported")
        url = self.configuration.host + resource_path
        if query_params:
            url += "?" + "&".join(f"{key}={quote(str(value))}" for key, value in query_params)
        return method, url, headers, _serializable(body) if body else body, None

    def call_api(
        self,
        method: str,
        url: str,
        header_params: dict[str, str] | None = None,
        body: Any = None,
        post_params: list[tuple[str, Any]] | None = None,
        _request_timeout: Timeout | None = None,
    ) -> RESTResponse:
        response: RESTResponse = self.rest_client.request(  # type: ignore[no-untyped-call]
            method, url, headers=header_params, body=body, post_params=post_params,
            _request_timeout=_request_timeout)
        return response

    def close(self):  # type: ignore[no-untyped-def]
        """Drop the pooled connections. (Untyped like the library's, so callers' ignores
        of ``no-untyped-call`` stay right.)"""
        self.rest_client.pool_manager.clear()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()  # type: ignore[no-untyped-call]


def _serializable(value: Any) -> Any:
    """JSON-ready ``value``: what the library's ``sanitize_for_serialization`` does for
    plain data (dates as ISO 8601)."""
    if isinstance(value, dict):
        return {key: _serializable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_serializable(item) for item in value]
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    return value


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
