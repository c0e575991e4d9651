"""The server's SigV4 path (``signature_claim`` and ``check_signature``, plain tuples) against the general
one (``parse_signature`` and ``verify``, named tuples): the same claim, caller and errors for each request."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from web_helpers import sign

from emrml.errors import AmazonMLError
from emrml.service.auth import (
    HttpRequest,
    check_signature,
    parse_signature,
    received_headers,
    signature_claim,
    verify,
)
from emrml.service.identity import Credential

BODY = b'{"MLModelId": "ml-1", "Record": {"a": "1"}, "PredictEndpoint": "http://x"}'
KEY = Credential("EMRLKEY0000000000001", "s3cret", "alice")


def _signed(**headers: str) -> dict[str, str]:
    return sign("http://127.0.0.1:8080", "Predict", BODY, KEY.access_key_id, KEY.secret_access_key, **headers)


def _changed(change: Callable[[dict[str, str]], None]) -> dict[str, str]:
    headers = _signed()
    change(headers)
    return headers


Variant = tuple[dict[str, str], bytes, Credential | None]


def _old() -> Variant:
    when = datetime.now(UTC) - timedelta(minutes=20)
    return (
        sign("http://127.0.0.1:8080", "Predict", BODY, KEY.access_key_id, KEY.secret_access_key, when=when),
        BODY,
        KEY,
    )


def _authorization(change: Callable[[str], str]) -> Variant:
    return _changed(lambda h: h.update({"Authorization": change(h["Authorization"])})), BODY, KEY


#: Each request made as its test runs: a signature made as the tests are collected may be past its 15
#: minutes by then.
VARIANTS: dict[str, Callable[[], Variant]] = {
    "valid": lambda: (_signed(), BODY, KEY),
    "other body": lambda: (_signed(), BODY + b" ", KEY),
    "wrong secret": lambda: (_signed(), BODY, Credential(KEY.access_key_id, "other", "alice")),
    "unknown key": lambda: (_signed(), BODY, None),
    "no authorization": lambda: (_changed(lambda h: h.pop("Authorization")), BODY, KEY),
    "session token": lambda: (_changed(lambda h: h.update({"X-Amz-Security-Token": "t"})), BODY, KEY),
    "no date": lambda: (_changed(lambda h: h.pop("X-Amz-Date")), BODY, KEY),
    "bad date": lambda: (_changed(lambda h: h.update({"X-Amz-Date": "20261340T000000Z"})), BODY, KEY),
    "old": _old,
    "signed header missing": lambda: (_changed(lambda h: h.pop("X-Amz-Target")), BODY, KEY),
    "other algorithm": lambda: _authorization(lambda a: a.replace("HMAC", "HMAX")),
    "short signature": lambda: _authorization(lambda a: a[:-1]),
    "wrong content hash": lambda: (
        _changed(lambda h: h.update({"X-Amz-Content-SHA256": "0" * 64})),
        BODY,
        KEY,
    ),
}


def _outcome(run: Callable[[], object]) -> object:
    try:
        return run()
    except AmazonMLError as error:
        return type(error).__name__, error.message


@pytest.mark.parametrize("name", list(VARIANTS))
def test_the_servers_path_answers_as_parse_signature_and_verify(name: str) -> None:
    headers, body, credential = VARIANTS[name]()
    pairs = [(key.lower().encode(), value.encode()) for key, value in headers.items()]
    received = received_headers([*pairs, (b"host", b"127.0.0.1:8080")])
    now = time.time()

    def general() -> object:
        claim = parse_signature(HttpRequest("POST", "/", "", received, body), now)
        return tuple(claim), tuple(verify(claim, credential))

    def plain() -> object:
        claim = signature_claim("POST", "/", "", received, body, now)
        assert type(claim) is tuple
        known = check_signature(claim, credential)
        return claim, (known.user_name, known.access_key_id)

    expected = _outcome(general)
    assert _outcome(plain) == expected
    if name == "valid":
        assert expected == (
            tuple(parse_signature(HttpRequest("POST", "/", "", received, body), now)),
            ("alice", KEY.access_key_id),
        )
    else:
        assert isinstance(expected, tuple) and isinstance(expected[0], str)  # an error, named


def _both_errors(headers: dict[str, str], now: float | None = None, **changes: str | None) -> str:
    """The exception's name and message for the request with ``changes`` (None: the header removed)."""
    for name, value in changes.items():
        if value is None:
            headers.pop(name)
        else:
            headers[name] = value
    pairs = [(key.lower().encode(), value.encode()) for key, value in headers.items()]
    received = received_headers([*pairs, (b"host", b"127.0.0.1:8080")])
    now = time.time() if now is None else now
    general = _outcome(lambda: parse_signature(HttpRequest("POST", "/", "", received, BODY), now))
    assert _outcome(lambda: signature_claim("POST", "/", "", received, BODY, now)) == general
    assert isinstance(general, tuple) and isinstance(general[0], str)
    return f"{general[0]}: {general[1]}"


def test_the_first_failed_check_names_the_error() -> None:
    # A signed header missing is found before the declared body hash is checked.
    both = _both_errors(_signed(), **{"X-Amz-Target": None, "X-Amz-Content-SHA256": "0" * 64})
    assert both.startswith("InvalidSignatureException: The signed header 'x-amz-target'")
    # A malformed Authorization header before a missing date.
    bad = _signed()
    bad["Authorization"] = bad["Authorization"].replace("Credential=", "Credentials=")
    assert _both_errors(bad, **{"X-Amz-Date": None}).startswith("IncompleteSignatureException: Author")
    assert _both_errors(_signed(), **{"X-Amz-Date": None}).startswith("IncompleteSignatureException: Author")
    headers = _signed()
    noon = headers["X-Amz-Date"][:8] + "T120000Z"
    later = datetime.strptime(noon, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp() + 3600
    assert "Signature expired" in _both_errors(headers, later, **{"X-Amz-Date": noon})
    assert "basic format" in _both_errors(_signed(), **{"X-Amz-Date": noon[:-1]})
    assert "Date in Credential scope" in _both_errors(_signed(), **{"X-Amz-Date": "20200101T000000Z"})


def test_a_timestamp_with_spaces_around_it_is_read_as_before() -> None:
    headers = _signed()
    stamp = headers["X-Amz-Date"]
    pairs = [(key.lower().encode(), value.encode()) for key, value in headers.items()]
    # As a server that does not trim header values would pass it on; the signature covers it trimmed.
    padded = [(key, f" {stamp} ".encode() if key == b"x-amz-date" else value) for key, value in pairs]
    received = received_headers([*padded, (b"host", b"127.0.0.1:8080")])
    claim = signature_claim("POST", "/", "", received, BODY, time.time())
    assert claim[5] == stamp  # the timestamp as signed
    assert claim == tuple(parse_signature(HttpRequest("POST", "/", "", received, BODY), time.time()))
    assert check_signature(claim, KEY) is KEY
