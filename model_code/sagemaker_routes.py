"""SageMaker Runtime's InvokeEndpoint route in front of the local vLLM server (an ASGI middleware).

In the cloud, boto3's `sagemaker-runtime` client posts to `/endpoints/<name>/invocations` on SageMaker's front
end, which forwards the body to the container's `/invocations` and turns a container error into a 424
`ModelError`. vLLM serves only the container side, so the local engine (model_code/vllm_server.py) loads this
class with vLLM's `--middleware model_code.sagemaker_routes.SageMakerRuntimeRoutes` and an unmodified boto3
client (`endpoint_url` or `AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME` pointing at the server) works against it:

- `POST /endpoints/<name>/invocations` -> vLLM's `POST /invocations`; a 2xx answer passes through with the
  `x-Amzn-Invoked-Production-Variant` header, any other becomes a 424 `ModelError` carrying the container's
  status and body (`OriginalStatusCode`, `OriginalMessage`), as the real service answers.
- With `SAGEMAKER_ENDPOINT_NAME` set in the server's environment, another name gets a 400 `ValidationError`
  ("Endpoint ... not found"), so a misconfigured client fails here as it would in AWS.
Every other path goes to vLLM untouched. Not emulated: the 6 MB payload and 60 s time limits.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

ENDPOINT_NAME_VARIABLE = "SAGEMAKER_ENDPOINT_NAME"
_RUNTIME_PATH_RE = re.compile(r"^/endpoints/(?P<name>[^/]+)/invocations$")
_LOCAL_ACCOUNT = "000000000000"  # what the error messages name in place of an AWS account
_VARIANT = "AllTraffic"


class SageMakerRuntimeRoutes:
    """Pure ASGI middleware (vLLM adds it with `app.add_middleware`)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.endpoint_name = os.environ.get(ENDPOINT_NAME_VARIABLE) or None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _RUNTIME_PATH_RE.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        name = match.group("name")
        if self.endpoint_name is not None and name != self.endpoint_name:
            message = f"Endpoint {name} of account {_LOCAL_ACCOUNT} not found."
            await _reply(send, 400, {"message": message}, "ValidationError")
            return
        forwarded = dict(scope, path="/invocations", raw_path=b"/invocations")
        await self.app(forwarded, receive, _ModelErrors(send))


class _ModelErrors:
    """Wraps `send`: 2xx passes through (plus the variant header); any other answer becomes a 424 ModelError."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._status = 0
        self._body = bytearray()

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._status = int(message["status"])
            if 200 <= self._status < 300:
                headers = [*message.get("headers", []), (b"x-amzn-invoked-production-variant", _VARIANT.encode())]
                await self._send({**message, "headers": headers})
            return
        if message["type"] != "http.response.body" or 200 <= self._status < 300:
            await self._send(message)
            return
        self._body += message.get("body", b"")
        if message.get("more_body", False):
            return
        original = self._body.decode("utf-8", errors="replace")
        kind = "client" if 400 <= self._status < 500 else "server"
        payload = {
            "message": f'Received {kind} error ({self._status}) from primary with message "{original}".',
            "ErrorCode": f"{kind.upper()}_ERROR_FROM_MODEL",
            "OriginalStatusCode": self._status,
            "OriginalMessage": original,
        }
        await _reply(self._send, 424, payload, "ModelError")


async def _reply(send: Send, status: int, payload: dict[str, Any], error_type: str) -> None:
    body = json.dumps(payload).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-amzn-errortype", error_type.encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
