"""`kfts serve`: start KServe's model server (REST and gRPC) with one KftsModel."""

from __future__ import annotations

import os

from kfts.errors import InputError


class PayloadLimit:
    """ASGI middleware: a request body over `max_bytes` gets 413 before any of it is decoded.

    The body is read here (the endpoints read it whole anyway) so that a body without Content-Length is
    bounded too, then handed on unchanged.
    """

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._refuse(send)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()  # waits for the disconnect, as Starlette expects
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send):
        from starlette.responses import JSONResponse
        response = JSONResponse(status_code=413, content={
            "error": f"the request body is larger than the limit of {self.max_bytes} bytes "
                     "(kfts serve --max-payload-mb)"})
        await response({"type": "http"}, None, send)


def serve(model_dir: str, *, model_name: str = "model", http_port: int = 8080, grpc_port: int = 8081,
          device: str = "auto", max_batch_size: int = 64, max_batch_wait_ms: float = 2.0,
          max_payload_mb: float = 16.0) -> None:
    if not os.path.isdir(model_dir):
        raise InputError("no such model directory (KServe mounts the storageUri at /mnt/models)", path=model_dir)
    for name, value in (("--max-batch-size", max_batch_size), ("--max-payload-mb", max_payload_mb)):
        if not value > 0:
            raise InputError(f"{name} must be positive, not {value}")
    if max_batch_wait_ms < 0:
        raise InputError(f"--max-batch-wait-ms must be 0 or more, not {max_batch_wait_ms}")
    max_bytes = int(max_payload_mb * 2**20)

    # kserve.model_server reads its own flags from sys.argv at import; kfts passes everything explicitly.
    from kserve import model_server
    from kserve.model_server import ModelServer

    from kfts.serving.model import KftsModel

    model = KftsModel(model_name, model_dir, device=device, max_batch_size=max_batch_size,
                      max_batch_wait=max_batch_wait_ms / 1000)
    model.load()
    model_server.app.add_middleware(PayloadLimit, max_bytes=max_bytes)
    # the gRPC server takes its message limits from KServe's parsed flags
    model_server.args.grpc_max_receive_message_length = max_bytes
    ModelServer(http_port=http_port, grpc_port=grpc_port, enable_grpc=True).start([model])
