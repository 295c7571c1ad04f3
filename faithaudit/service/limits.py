"""The HTTP edge as one pure ASGI middleware, before any route reads a byte:

- 413 when the body is (or declares itself) over ``max_bytes``, before it is read whole;
- 408 when the client stops sending its body for ``read_timeout`` seconds (a body shorter than its
  Content-Length would otherwise hold the request forever), with ``Connection: close``;
- 415 for a body whose Content-Type is not JSON, or whose Content-Encoding the API does not decode.

Every answer uses the error envelope ``{"error": {"code", "message", "fields"}}``.
"""

from __future__ import annotations

import asyncio
import json

_BODY_METHODS = {"POST", "PUT", "PATCH"}


class BodyTooLarge(Exception):
    pass


class BodyTimedOut(Exception):
    pass


FORM_TYPE = b"application/x-www-form-urlencoded"


def is_json_type(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


class RequestEdge:
    def __init__(self, app, *, max_bytes: int, read_timeout: float, form_paths: tuple[str, ...] = ()) -> None:
        self.app, self.max_bytes, self.read_timeout = app, max_bytes, read_timeout
        self.form_paths = form_paths  # path prefixes whose forms post application/x-www-form-urlencoded

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refusal = self._refuse_headers(scope)
        if refusal is not None:
            return await reject(send, *refusal)
        seen, started, body_done = 0, False, False

        async def guarded_receive():
            nonlocal seen, body_done
            if body_done:  # after the body: waiting for a disconnect is not the client's delay
                return await receive()
            try:
                async with asyncio.timeout(self.read_timeout):  # no task per receive, as wait_for makes on 3.11
                    message = await receive()
            except TimeoutError:
                raise BodyTimedOut from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, guarded_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await reject(send, *self._too_large())
        except BodyTimedOut:
            if not started:
                message = f"the request body did not arrive within {self.read_timeout:g} s"
                await reject(send, 408, "request_timeout", message, close=True)

    def _refuse_headers(self, scope) -> tuple | None:
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return self._too_large()
        if scope.get("method") not in _BODY_METHODS:
            return None
        content_type = headers.get(b"content-type")
        form = content_type is not None and content_type.split(b";")[0].strip().lower() == FORM_TYPE
        if form and scope.get("path", "").startswith(self.form_paths):
            content_type = None
        if content_type is not None and not is_json_type(content_type):
            shown = content_type.decode("latin-1")[:100]
            return 415, "unsupported_media_type", f"the body must be JSON (Content-Type: application/json), not {shown}"
        encoding = headers.get(b"content-encoding", b"identity").strip().lower()
        if encoding not in (b"identity", b""):
            shown = encoding.decode("latin-1")[:50]
            return 415, "unsupported_media_type", f"Content-Encoding {shown} is not decoded here; send the body plain"
        return None

    def _too_large(self) -> tuple:
        return 413, "payload_too_large", f"request body is over the limit of {self.max_bytes} bytes"


async def reject(send, status: int, code: str, message: str, *, close: bool = False) -> None:
    body = json.dumps({"error": {"code": code, "message": message, "fields": []}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
