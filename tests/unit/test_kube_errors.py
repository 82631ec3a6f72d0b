"""kube.errors.message_of: API errors shown to users as one line, the server's own words."""

from __future__ import annotations

import json

from kubernetes.client.exceptions import ApiException

from kube import errors


def api_error(status: int, reason: str, body: str | None) -> ApiException:
    exc = ApiException(status=status, reason=reason)
    exc.body = body
    return exc


def test_the_servers_status_message_is_the_message() -> None:
    body = json.dumps({"kind": "Status", "message": 'ServiceImport "x" is invalid: spec.ips'})
    exc = api_error(422, "Unprocessable Entity", body)
    assert "\n" in str(exc)  # what the client would print
    assert errors.message_of(exc) == 'ServiceImport "x" is invalid: spec.ips'


def test_without_a_status_body_the_http_status_is_shown() -> None:
    assert errors.message_of(api_error(503, "Service Unavailable", "<html>")) == \
        "503 Service Unavailable"


def test_other_errors_are_folded_onto_one_line() -> None:
    assert errors.message_of(OSError("connection\n  refused")) == "connection refused"
