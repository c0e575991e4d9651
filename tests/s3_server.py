"""A real S3 API on loopback for the tests: moto's server, in a thread of the test process.

``S3Server`` is moto's ``ThreadedMotoServer`` with one thing moto lacks: bucket policies whose Deny
statements are evaluated as S3 does, with the request's condition keys ``s3:x-amz-server-side-encryption``
and ``s3:x-amz-server-side-encryption-aws-kms-key-id`` (moto evaluates policies without condition values,
so a policy denying unencrypted PUTs denies every PUT, and it ignores policies on listings). The server
keeps bucket policies itself and answers S3's ``AccessDenied`` for ``s3:ListBucket``, ``s3:GetObject`` and
``s3:PutObject`` (PutObject, CopyObject, CreateMultipartUpload) where a Deny statement applies; every other
request goes to moto unchanged.
"""

from __future__ import annotations

import fnmatch
import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from emrml.config import Settings

_CONDITION_HEADERS = {
    "s3:x-amz-server-side-encryption": "HTTP_X_AMZ_SERVER_SIDE_ENCRYPTION",
    "s3:x-amz-server-side-encryption-aws-kms-key-id": "HTTP_X_AMZ_SERVER_SIDE_ENCRYPTION_AWS_KMS_KEY_ID",
}
_ACCESS_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied (bucket policy)</Message></Error>"
)


def _condition_holds(operator: str, values: dict[str, Any], environ: dict[str, Any]) -> bool:
    for key, expected in values.items():
        header = environ.get(_CONDITION_HEADERS.get(key, ""))
        wanted = expected if isinstance(expected, list) else [expected]
        if operator == "Null":
            if (header is None) != (str(wanted[0]).lower() == "true"):
                return False
        elif operator == "StringNotEquals":
            if header is not None and header in wanted:
                return False
        elif operator == "StringEquals":
            if header not in wanted:
                return False
        else:
            raise ValueError(f"the test server does not evaluate condition operator {operator}")
    return True


class PolicyEnforcer:
    """WSGI middleware: stores bucket policies and applies their Deny statements on object PUTs/POSTs."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.policies: dict[str, dict[str, Any]] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = unquote(environ.get("PATH_INFO", ""))
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        bucket, _, key = path.lstrip("/").partition("/")
        method = environ["REQUEST_METHOD"]
        if bucket and not key and "policy" in query:
            if method == "PUT":
                length = int(environ.get("CONTENT_LENGTH") or 0)
                self.policies[bucket] = json.loads(environ["wsgi.input"].read(length))
                start_response("204 No Content", [])
                return [b""]
            if method == "DELETE":
                self.policies.pop(bucket, None)
                start_response("204 No Content", [])
                return [b""]
            if method == "GET" and bucket in self.policies:
                start_response("200 OK", [("Content-Type", "application/json")])
                return [json.dumps(self.policies[bucket]).encode()]
        action, resource = _action(method, bucket, key, set(query))
        if action and bucket in self.policies and self._denied(bucket, action, resource, environ):
            start_response("403 Forbidden", [("Content-Type", "application/xml")])
            return [_ACCESS_DENIED]
        return self.app(environ, start_response)

    def _denied(self, bucket: str, action: str, resource: str, environ: dict[str, Any]) -> bool:
        for statement in self.policies[bucket].get("Statement", []):
            if statement.get("Effect") != "Deny":
                continue
            actions = _as_list(statement.get("Action", []))
            resources = _as_list(statement.get("Resource", "*"))
            if not any(fnmatch.fnmatchcase(action, pattern) for pattern in actions):
                continue
            if not any(fnmatch.fnmatchcase(resource, pattern) for pattern in resources):
                continue
            conditions = statement.get("Condition", {})
            if all(_condition_holds(op, values, environ) for op, values in conditions.items()):
                return True
        return False


_LIST_PARAMETERS = {"list-type", "prefix", "max-keys", "delimiter", "continuation-token", "encoding-type"}


def _action(method: str, bucket: str, key: str, query: set[str]) -> tuple[str | None, str]:
    """The policy action and resource of a request, for the actions the server evaluates."""
    if key:
        if (method == "PUT" and "partNumber" not in query) or (method == "POST" and "uploads" in query):
            return "s3:PutObject", f"arn:aws:s3:::{bucket}/{key}"
        if method in ("GET", "HEAD"):
            return "s3:GetObject", f"arn:aws:s3:::{bucket}/{key}"
    elif bucket and method == "GET" and query <= _LIST_PARAMETERS:
        return "s3:ListBucket", f"arn:aws:s3:::{bucket}"
    return None, ""


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


class S3Server:
    """moto's S3 (and KMS, STS…) on 127.0.0.1 and a free port."""

    def __init__(self) -> None:
        self.enforcer = PolicyEnforcer(DomainDispatcherApplication(create_backend_app))
        self.server: BaseWSGIServer = make_server(
            "127.0.0.1", 0, self.enforcer, threaded=True, request_handler=MotoRequestHandler
        )
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="moto-s3")

    @property
    def endpoint_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> S3Server:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join()
        self.server.server_close()


@dataclass
class S3:
    """A fresh bucket on the test server, a boto3 client for it, and settings pointing emrml at it."""

    endpoint_url: str
    bucket: str
    client: Any
    settings: Settings

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"

    def put(self, key: str, body: bytes | str) -> str:
        data = body.encode() if isinstance(body, str) else body
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        return self.uri(key)

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def deny(self, action: str, resource: str) -> None:
        """A bucket policy refusing ``action`` (``s3:GetObject``, say) on ``resource`` (an ARN) to all."""
        policy = {"Statement": [{"Effect": "Deny", "Principal": "*", "Action": action, "Resource": resource}]}
        self.client.put_bucket_policy(Bucket=self.bucket, Policy=json.dumps(policy))

    def list_keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [entry["Key"] for page in pages for entry in page.get("Contents", [])]
