"""The floor of ``bench/predict_http.py --floor``: uvicorn serving only the arithmetic of a signed Predict.

Not a server to use: it checks nothing. For each ``POST`` it recomputes the SigV4 signature the way
``emrml.service.auth`` does (canonical request, SHA-256 of the body, the HMAC with the day's key) without
any of the checks around it, scores the record with the model's ``Predictor`` and answers the orjson of
the prediction — no access log, request id, authorization, rate limits, size checks or error handling.
What it costs per request is what any Python handler doing this work pays here::

    python bench/predict_floor.py HOME MODEL_ID SECRET_ACCESS_KEY PORT
"""

from __future__ import annotations

import hashlib
import hmac
import sys
from pathlib import Path
from typing import Any

import orjson
import uvicorn

from emrml.config import Settings
from emrml.service.app import EmrML
from emrml.service.auth import signing_key

PREFIX = "AWS4-HMAC-SHA256 Credential="


def floor_app(home: Path, model_id: str, secret: str) -> Any:
    predictor = EmrML(Settings.load(home=home)).mounted.get(model_id).predictor
    assert predictor is not None

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = dict(scope["headers"])
        body = (await receive())["body"]
        credential, signed, signature = headers[b"authorization"].decode()[len(PREFIX) :].split(", ")
        scope_parts = credential.split("/")
        date, region, scope_text = scope_parts[1], scope_parts[2], "/".join(scope_parts[1:])
        names = signed[len("SignedHeaders=") :].split(";")
        lines = "".join(f"{name}:{headers[name.encode()].decode()}\n" for name in names)
        canonical = f"POST\n/\n\n{lines}\n{';'.join(names)}\n{hashlib.sha256(body).hexdigest()}"
        stamp = headers[b"x-amz-date"].decode()
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        expected = signing_key(secret, date, region).hexdigest(
            f"AWS4-HMAC-SHA256\n{stamp}\n{scope_text}\n{digest}".encode()
        )
        status = 200 if hmac.compare_digest(expected, signature[len("Signature=") :]) else 403
        payload = orjson.dumps({"Prediction": predictor.predict_strings(orjson.loads(body)["Record"])})
        length = str(len(payload)).encode()
        content = [(b"content-type", b"application/x-amz-json-1.1"), (b"content-length", length)]
        await send({"type": "http.response.start", "status": status, "headers": content})
        await send({"type": "http.response.body", "body": payload})

    return app


if __name__ == "__main__":
    home, model_id, secret, port = sys.argv[1:5]
    app = floor_app(Path(home), model_id, secret)
    uvicorn.run(app, host="127.0.0.1", port=int(port), access_log=False, log_level="warning", lifespan="off")
