"""SigV4 verification remembers what does not change between a client's requests (the part of the
``Authorization`` header before the signature, the canonical request's head) without checking any request
less: each one's signature, signed header values, body and timestamp are still its own."""

from __future__ import annotations

import time
from unittest.mock import patch

import pytest
from web_helpers import sign

from emrml.errors import IncompleteSignatureException, InvalidSignatureException
from emrml.service import auth
from emrml.service.auth import HttpRequest, parse_signature, received_headers, verify
from emrml.service.identity import Credential

URL = "http://127.0.0.1:8080"
KEY = "EMRLKEY0000000000042"
SECRET = "s3cret-remembered"
ALICE = Credential(KEY, SECRET, "alice")
BODY = b'{"Limit": 2}'


def _received(headers: dict[str, str], body: bytes = BODY) -> HttpRequest:
    pairs = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    pairs.append((b"host", b"127.0.0.1:8080"))
    return HttpRequest("POST", "/", "", received_headers(pairs), body)


def _verified(headers: dict[str, str], body: bytes = BODY) -> str:
    return verify(parse_signature(_received(headers, body), time.time()), ALICE).user_name


def test_the_part_before_the_signature_is_checked_once_per_key_and_day() -> None:
    first = sign(URL, "DescribeDataSources", BODY, KEY, SECRET)
    second = sign(URL, "DescribeDataSources", b'{"Limit": 3}', KEY, SECRET)
    assert (
        first["Authorization"].rpartition(", Signature=")[0]
        == (second["Authorization"].rpartition(", Signature=")[0])
    )
    auth._SCOPES.clear()
    with patch.object(auth, "_authorization_parts", wraps=auth._authorization_parts) as parts:
        assert _verified(first) == "alice"
        assert _verified(second, b'{"Limit": 3}') == "alice"
    assert parts.call_count == 1


def test_a_remembered_head_still_needs_the_request_s_own_signature() -> None:
    headers = sign(URL, "DescribeDataSources", BODY, KEY, SECRET)
    assert _verified(headers) == "alice"
    head, _, signature = headers["Authorization"].rpartition(", Signature=")
    forged = {**headers, "Authorization": f"{head}, Signature={signature[::-1]}"}
    with pytest.raises(InvalidSignatureException, match="does not match"):
        _verified(forged)
    with pytest.raises(IncompleteSignatureException, match="64 lower-case"):
        _verified({**headers, "Authorization": f"{head}, Signature={signature.upper()}"})


def test_a_remembered_canonical_request_is_one_of_the_same_signed_values_and_body() -> None:
    headers = sign(URL, "DescribeDataSources", BODY, KEY, SECRET)
    assert _verified(headers) == "alice"
    # The same signature over another operation, another body or without a signed header: refused.
    with pytest.raises(InvalidSignatureException, match="does not match"):
        _verified({**headers, "X-Amz-Target": "AmazonML_20141212.DeleteDataSource"})
    with pytest.raises(InvalidSignatureException, match="does not match"):
        _verified(headers, b'{"Limit": 9}')
    without = {name: value for name, value in headers.items() if name != "Content-Type"}
    with pytest.raises(InvalidSignatureException, match="'content-type' is not in the request"):
        _verified(without)
    assert _verified(headers) == "alice"


def test_a_head_refused_once_is_refused_again() -> None:
    headers = sign(URL, "DescribeDataSources", BODY, KEY, SECRET)
    other = headers["Authorization"].replace("/machinelearning/", "/s3/")
    for _ in range(2):
        with pytest.raises(InvalidSignatureException, match="correct service"):
            _verified({**headers, "Authorization": other})


def test_a_signature_followed_by_other_parameters_reads_as_before() -> None:
    headers = sign(URL, "DescribeDataSources", BODY, KEY, SECRET)
    assert _verified(headers) == "alice"  # its head remembered
    assert _verified({**headers, "Authorization": headers["Authorization"] + ",Extra=x"}) == "alice"
