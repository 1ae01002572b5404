"""`kfts serve`: KServe's model server (V1 and V2 REST, V2 gRPC) with one KftsModel.

kfts starts KServe's REST and gRPC servers itself (KftsServer.start, ModelServer.start's single-process path)
for what ModelServer does not offer:

- the address to listen on (`--host`); KServe always binds 0.0.0.0 (REST) and [::] (gRPC), which stay the
  default;
- one log line per client mistake: KServe logs a traceback for every error, a client's 400 included. Here a
  mistake (4xx, gRPC INVALID_ARGUMENT, NOT_FOUND...) is answered with its reason and logged once, as
  `client error STATUS METHOD PATH request_id=ID: REASON` (uvicorn's access line for it is left out), while a
  fault in the server is answered 500 / INTERNAL and logged with its traceback, once;
- a memory budget (admission.py): what it has no room for is answered 503 / UNAVAILABLE before it is read;
- request bodies decoded and answers written off the event loop (RestRoutes, Servicer), V2 REST bodies read
  as the Open Inference Protocol's other clients send them (rest_request).
- one model for as long as the server runs: KServe's model repository extension (load, unload) is refused,
  403 / PERMISSION_DENIED (OneModel).

Every REST request carries a request id: the client's `x-request-id` header, else a new one, sent back in the
`x-request-id` header of every answer (gRPC: the `x-request-id` metadata, else the request's `id`).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import socket
import uuid
import warnings
from concurrent import futures

from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import FastAPIDeprecationWarning, RequestValidationError
from grpc import StatusCode, aio
from grpc_interceptor import AsyncExceptionToStatusInterceptor
from grpc_interceptor.exceptions import GrpcException
from kserve import model_server
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING, INFERENCE_CONTENT_LENGTH_HEADER
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady, ServerNotLive, ServerNotReady, UnsupportedProtocol
from kserve.logging import KSERVE_LOG_CONFIG, configure_logging
from kserve.model_server import ModelServer
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.infer_type import InferRequest
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from kserve.protocol.rest.server import RESTServer
from kserve.utils.utils import to_headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from kfts.core.errors import InputError
from kfts.serving import clip, off_loop
from kfts.serving.admission import (
    CURRENT,
    MIN_CHARGE,
    Admission,
    Overloaded,
    TooLarge,
    decoding,
    default_limit,
    malloc_returns_memory,
    smallest_limit,
)
from kfts.serving.decoding import check_shape, check_version, rest_request

logger = logging.getLogger("kfts.serving")


class Forbidden(Exception):
    """What kfts serve does not let a client do (load or unload its model): 403, gRPC PERMISSION_DENIED."""


# what a refusal answers, by the exception KServe (or kfts through InvalidInput) raises for it
REFUSALS = {
    InvalidInput: (400, StatusCode.INVALID_ARGUMENT),
    ModelNotFound: (404, StatusCode.NOT_FOUND),
    UnsupportedProtocol: (501, StatusCode.UNIMPLEMENTED),
    NotImplementedError: (501, StatusCode.UNIMPLEMENTED),
    ModelNotReady: (503, StatusCode.UNAVAILABLE),
    ServerNotReady: (503, StatusCode.UNAVAILABLE),
    ServerNotLive: (503, StatusCode.UNAVAILABLE),
    Overloaded: (503, StatusCode.UNAVAILABLE),
    TooLarge: (413, StatusCode.RESOURCE_EXHAUSTED),
    Forbidden: (403, StatusCode.PERMISSION_DENIED),
}
MESSAGE = 500  # characters of a refusal's message that its answer and its log line show


def log_refusal(status, method: str, path: str, request_id: str, reason) -> None:
    """The one line a refusal leaves in the log: a client's mistake, or a request the predictor has no room
    for (Overloaded)."""
    reason = clip(" ".join(str(reason).split()), MESSAGE)  # one line, whatever the message held
    what = "overloaded" if status in (503, StatusCode.UNAVAILABLE.name) else "client error"
    logger.warning("%s %s %s %s request_id=%s: %s", what, status, method, clip(path), clip(request_id), reason)


def refusal(status: int, reason, request_id: str) -> JSONResponse:
    """A refusal's answer: its message (cut to MESSAGE), the request id, and when to retry an Overloaded."""
    headers = {"x-request-id": request_id}
    if isinstance(reason, Overloaded):
        headers["retry-after"] = str(reason.retry_after_s)
    return JSONResponse(status_code=status, content={"error": clip(str(reason), MESSAGE)}, headers=headers)


# -- REST ---------------------------------------------------------------------------------------------------------


# the least rate at which a request body must come, on average, once it has had --body-timeout-s (the mechanism of
# Apache's mod_reqtimeout MinRate, at a rate for clients in and near a cluster): a body that trickles slower would
# hold its share of the memory budget for as long as its sender likes
MIN_BODY_RATE = 64 * 2**10


class RequestGuard:
    """ASGI middleware that every REST request passes first: it gets its request id (sent back with every
    answer), a body over `max_bytes` gets 413 before any of it is decoded, a body in a Content-Encoding (gzip...)
    415 and a request with a body that the memory budget (`admission`) has no room for 503 with Retry-After,
    both before any of it is read, a body that stops arriving (no byte for `body_timeout` seconds) or trickles
    (slower than MIN_BODY_RATE, body_timeout after its first byte) gets 408 and its connection closed, and a
    fault in the server gets 500 with its traceback logged once.

    The body is read here (the endpoints read it whole anyway) so that a body without Content-Length is
    bounded too, then handed on unchanged. A request holds its share of the budget until its answer is sent:
    without the timeouts, clients that send headers and then stall or trickle would hold all of it (uvicorn
    times out no body).
    """

    def __init__(self, app, max_bytes: int, admission: Admission, body_timeout: float):
        self.app, self.max_bytes, self.admission, self.body_timeout = app, max_bytes, admission, body_timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        request_id = clip(headers.get(b"x-request-id", b"").decode("latin-1")) or uuid.uuid4().hex
        if b"x-request-id" not in headers:  # so that KServe's latency line and the model see it too
            scope["headers"] = [*scope["headers"], (b"x-request-id", request_id.encode())]
        scope.setdefault("state", {})["request_id"] = request_id
        declared = headers.get(b"content-length")
        declared = int(declared) if declared is not None and declared.isdigit() else None
        if declared is not None and declared > self.max_bytes:
            return await self._refuse(scope, send, request_id, 413, self._too_large())
        if scope["method"] not in ("POST", "PUT"):  # no body: health probes and metadata are never refused
            return await self._answer(scope, receive, send, request_id, declared, False)
        encoding = headers.get(b"content-encoding", b"").decode("latin-1")
        if any(coding.strip().lower() not in ("", "identity") for coding in encoding.split(",")):
            return await self._refuse(scope, send, request_id, 415, self._encoded(encoding))
        media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        binary = INFERENCE_CONTENT_LENGTH_HEADER.encode() in headers or media_type == b"text/csv"
        try:  # a body of unknown length holds what the largest one would until it is read
            ticket = self.admission.enter(self.max_bytes if declared is None else declared, binary)
        except (Overloaded, TooLarge) as e:
            return await self._refuse(scope, send, request_id, REFUSALS[type(e)][0], e)
        token = CURRENT.set(ticket)  # for the model's estimate of its rows (admission.decoded)
        try:
            await self._answer(scope, receive, send, request_id, declared, binary)
        finally:
            CURRENT.reset(token)
            ticket.close()

    async def _answer(self, scope, receive, send, request_id: str, declared: int | None, binary: bool) -> None:
        loop = asyncio.get_running_loop()
        chunks, size, more = [], 0, True
        last = first = loop.time()  # first: when the first byte came
        while more:
            # a byte every so often keeps a body from stalling: past body_timeout from its first byte, it must
            # also have come at MIN_BODY_RATE on average, else it would hold its share of the budget for ever
            stall_at = last + self.body_timeout
            slow_at = first + self.body_timeout + size / MIN_BODY_RATE if size else stall_at
            try:
                message = await asyncio.wait_for(receive(), min(stall_at, slow_at) - loop.time())
            except asyncio.TimeoutError:
                late = self._stalled(size) if stall_at <= slow_at else self._slow(size, loop.time() - first)
                return await self._refuse(scope, send, request_id, 408, late)
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            last = loop.time()
            first = first if size else last
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._refuse(scope, send, request_id, 413, self._too_large())
            more = message.get("more_body", False)
        body = b"".join(chunks)
        ticket = CURRENT.get()
        if ticket is not None and declared is None:  # the size is known now: hold what it takes (less)
            ticket.close()
            ticket.body_size = size
            ticket.add(decoding(size, binary))
        sent, started = False, False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()  # waits for the disconnect, as Starlette expects
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send_with_id(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                names = {name.lower() for name, _ in message.get("headers", [])}
                if b"x-request-id" not in names:
                    message = {
                        **message,
                        "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())],
                    }
            await send(message)

        try:
            await self.app(scope, replay, send_with_id)
        except Exception:  # noqa: BLE001 - what no handler took is a fault in the server: traceback, 500
            logger.exception("server fault %s %s request_id=%s", scope["method"], scope["path"], request_id)
            if not started:
                response = JSONResponse(
                    status_code=500,
                    headers={"x-request-id": request_id},
                    content={"error": f"internal server error (request id {request_id})"},
                )
                await response(scope, receive, send)

    def _stalled(self, size: int) -> str:
        return (
            f"no byte of the request body came for {self.body_timeout:g} s (kfts serve --body-timeout-s), "
            f"after {size} bytes"
        )

    @staticmethod
    def _encoded(encoding: str) -> str:
        """Nothing here decodes a compressed body: refused before it is read (RFC 9110: 415)."""
        return (
            f"Content-Encoding {clip(repr(encoding.strip()))} is not supported: send the body uncompressed "
            "(Content-Encoding: identity)"
        )

    def _slow(self, size: int, seconds: float) -> str:
        return (
            f"the request body came too slowly: {size} bytes in {seconds:.1f} s since its first byte; kfts serve "
            f"--body-timeout-s {self.body_timeout:g} allows {self.body_timeout:g} s, then "
            f"{MIN_BODY_RATE // 2**10} KiB/s on average"
        )

    def _too_large(self) -> str:
        return f"the request body is larger than the limit of {self.max_bytes} bytes (kfts serve --max-payload-mb)"

    async def _refuse(self, scope, send, request_id: str, status: int, reason):
        log_refusal(status, scope["method"], scope["path"], request_id, reason)
        response = refusal(status, reason, request_id)
        if status == 408:  # the rest of the body may still come: it must not be read as the next request
            response.headers["connection"] = "close"
        await response({"type": "http"}, None, send)  # type: ignore[arg-type]  # reads no body


def _request_id(request) -> str:
    return request.scope.get("state", {}).get("request_id", "")


async def refusal_handler(request, exc):
    """KServe's errors that are not faults (InvalidInput, ModelNotFound...): their status, one log line."""
    status = next(http for cls, (http, _) in REFUSALS.items() if isinstance(exc, cls))
    log_refusal(status, request.method, request.url.path, _request_id(request), exc)
    return refusal(status, exc, _request_id(request))


async def http_error_handler(request, exc: HTTPException):
    """Starlette's own refusals (unknown path 404, wrong method 405), as Starlette answers them."""
    log_refusal(exc.status_code, request.method, request.url.path, _request_id(request), exc.detail)
    return await http_exception_handler(request, exc)


async def validation_error_handler(request, exc: RequestValidationError):
    """A V2 JSON body that does not match the protocol's schema: FastAPI's 422, one log line."""
    reason = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in exc.errors()[:3])
    log_refusal(422, request.method, request.url.path, _request_id(request), reason)
    return await request_validation_exception_handler(request, exc)


class RestRoutes:
    """kfts's own V1 predict and V2 infer endpoints, in front of KServe's: the same paths and data plane, but the
    body is decoded and the answer written off the event loop, so that health probes keep answering while a
    large request is read; and a V2 body is read as the Open Inference Protocol's other clients send it
    (decoding.rest_request).

    Why not KServe's: in KServe 0.21.0 (kserve/protocol/rest/v1_endpoints.py, v2_endpoints.py) the V1 route
    has DataPlane.decode parse the JSON on the event loop and the V2 route has FastAPI read the JSON and
    pydantic check it there, value by value; the answers are encoded there too."""

    def __init__(self, dataplane):
        self.dataplane = dataplane

    def register(self, app) -> None:
        app.add_api_route("/v1/models/{model_name}:predict", self.v1_predict, methods=["POST"])
        app.add_api_route("/v2/models/{model_name}/infer", self.v2_infer, methods=["POST"])
        app.add_api_route(
            "/v2/models/{model_name}/versions/{model_version}/infer", self.v2_infer_version, methods=["POST"]
        )

    async def v1_predict(self, model_name: str, request: Request) -> Response:
        """The model decodes the V1 body (JSON or CSV) itself, and answers bytes with their Content-Type."""
        body, headers = await self._read(model_name, request)
        answer, answer_headers = await self.dataplane.infer(model_name=model_name, request=body, headers=headers)
        return _send(answer, answer_headers)

    async def v2_infer(self, model_name: str, request: Request) -> Response:
        body, headers = await self._read(model_name, request)
        infer_request = await off_loop(rest_request, body, headers, model_name)
        answer, answer_headers = await self.dataplane.infer(
            model_name=model_name, request=infer_request, headers=headers
        )
        content, json_length = await off_loop(answer.to_rest)  # decoding.RestInferResponse
        answer_headers["content-type"] = "application/json" if json_length is None else "application/octet-stream"
        if json_length is not None:
            answer_headers[INFERENCE_CONTENT_LENGTH_HEADER] = str(json_length)
        return _send(content, answer_headers)

    async def v2_infer_version(self, model_name: str, model_version: str) -> None:
        """A version asked for: 400 as over gRPC (check_version), where KServe 0.21.0's route for it
        (kserve/protocol/rest/v2_endpoints.py) answered 501, which says the server is missing something."""
        check_version(model_version)

    async def _read(self, model_name: str, request: Request) -> tuple[bytes, dict]:
        if not await self.dataplane.model_ready(model_name, True):  # ModelNotFound for an unknown name
            raise ModelNotReady(model_name)
        return await request.body(), dict(request.headers)


SEND_CHUNK = 2**20


def _send(content: bytes | memoryview | str, headers: dict) -> Response:
    """An answer, sent SEND_CHUNK bytes at a time when larger: the socket's write buffer would otherwise take a
    copy of all that the client has not read yet."""
    content = memoryview(content.encode() if isinstance(content, str) else content).cast("B")
    if len(content) <= SEND_CHUNK:
        return Response(content, headers=headers)
    chunks = (content[i : i + SEND_CHUNK] for i in range(0, len(content), SEND_CHUNK))
    return StreamingResponse(chunks, headers={**headers, "content-length": str(len(content))})


class RestServer(RESTServer):
    """KServe's REST server on `sock` (bound to `host`), with kfts's routes (RestRoutes) and error handlers.

    Why a subclass: KServe 0.21.0's RESTServer (kserve/protocol/rest/server.py) gives uvicorn host 0.0.0.0,
    with no parameter for it, and adds its routes, TimingMiddleware and exception handlers (kserve/errors.py's
    log a traceback for every 400) as it starts (create_application), over anything set on the app before:
    its hooks are where kfts's routes go first and KServe's middleware and handlers are left out. Its start()
    has uvicorn bind the port, which on a port in use logs three tracebacks and exits 3."""

    def __init__(self, *args, host: str, sock: socket.socket, **kwargs):
        super().__init__(*args, **kwargs)
        self.config.host, self.socket = host, sock

    async def start(self):
        self.create_application()
        await self._server.serve(sockets=[self.socket])

    def _register_endpoints(self, app):
        RestRoutes(self.dataplane).register(app)  # first: FastAPI takes the first route that matches
        super()._register_endpoints(app)

    def _add_middlewares(self, app):
        """None of KServe's: its TimingMiddleware logs two more lines per request (wall and CPU time of what
        the access line already shows); the latencies are in /metrics. RequestGuard is added in serve()."""

    def _add_exception_handlers(self, app):
        for cls in REFUSALS:
            app.add_exception_handler(cls, refusal_handler)
        app.add_exception_handler(HTTPException, http_error_handler)
        app.add_exception_handler(RequestValidationError, validation_error_handler)


class SkipClientErrors(logging.Filter):
    """Leaves out uvicorn's access line of a 4xx answer: the line log_refusal wrote for it says more."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        status = args[4] if isinstance(args, tuple) and len(args) == 5 else None
        return not (isinstance(status, int) and 400 <= status < 500)


# -- gRPC ---------------------------------------------------------------------------------------------------------


class GrpcErrors(AsyncExceptionToStatusInterceptor):
    """What every gRPC call passes: a ModelInfer that the memory budget (`admission`) has no room for is
    UNAVAILABLE at once (with gRPC's retry pushback); KServe's errors get their statuses (REFUSALS) with one log
    line; anything else is a fault: INTERNAL and its traceback."""

    def __init__(self, admission: Admission | None = None):
        super().__init__()
        self.admission = admission

    async def intercept(self, method, request, context, method_name):
        if self.admission is None or not method_name.endswith("/ModelInfer"):  # health, metadata: never refused
            return await super().intercept(method, request, context, method_name)
        try:
            ticket = self.admission.enter(request.ByteSize(), binary=bool(request.raw_input_contents))
        except (Overloaded, TooLarge) as e:
            await self.handle_exception(e, request, context, method_name)
        token = CURRENT.set(ticket)  # for the model's estimate of its rows (admission.decoded)
        try:
            return await super().intercept(method, request, context, method_name)
        finally:
            CURRENT.reset(token)
            ticket.close()

    async def handle_exception(self, ex, request, context, method_name):
        if isinstance(ex, GrpcException):
            await super().handle_exception(ex, request, context, method_name)
        request_id = clip(to_headers(context).get("x-request-id") or getattr(request, "id", "") or uuid.uuid4().hex)
        for cls, (_, code) in REFUSALS.items():
            if isinstance(ex, cls):
                log_refusal(code.name, "gRPC", method_name, request_id, ex)
                if isinstance(ex, Overloaded):
                    context.set_trailing_metadata((("grpc-retry-pushback-ms", str(ex.retry_after_s * 1000)),))
                await context.abort(code, clip(str(ex), MESSAGE))
        logger.error("server fault gRPC %s request_id=%s", method_name, request_id, exc_info=ex)
        await context.abort(StatusCode.INTERNAL, f"internal server error (request id {request_id})")


class Servicer(InferenceServicer):
    """KServe's gRPC servicer, with ModelInfer's request checked as REST's is, decoded and its answer encoded off
    the event loop.

    Why a subclass: KServe 0.21.0's InferenceServicer.ModelInfer (kserve/protocol/grpc/servicer.py) runs
    InferRequest.from_grpc, which copies typed contents into a Python list, and to_grpc on the event loop, and
    its validate_grpc_request lets through a negative size in a shape (read as "what is left") and a
    model_version (ignored); its other methods serve as they are."""

    @classmethod
    def validate_grpc_request(cls, request) -> None:
        """KServe's checks, and those of REST (rest_request): the tensors' shapes and no model_version."""
        super().validate_grpc_request(request)
        check_version(request.model_version)
        for i, tensor in enumerate(request.inputs):
            check_shape(list(tensor.shape), f"inputs[{i}]")

    async def ModelInfer(self, request, context):
        headers = to_headers(context)
        self.validate_grpc_request(request)
        infer_request = await off_loop(InferRequest.from_grpc, request)
        answer, _ = await self._data_plane.infer(request=infer_request, headers=headers, model_name=request.model_name)
        return await off_loop(answer.to_grpc)


class GrpcServer(GRPCServer):
    """KServe's gRPC server (GRPCServer.start) on `host`, with kfts's Servicer and GrpcErrors as its only
    interceptor, and its port its own: bind() then serve() instead of KServe's start().

    Why a subclass: KServe 0.21.0's GRPCServer.start (kserve/protocol/grpc/server.py) listens on [::] only,
    creates its own InferenceServicer, installs LoggingInterceptor (a line per call that says only the
    method) and ExceptionToStatusInterceptor (a traceback for every INVALID_ARGUMENT), and leaves gRPC's
    SO_REUSEPORT on: a second server started on a port in use shared its calls instead of failing."""

    def __init__(self, host: str, *args, admission: Admission, **kwargs):
        super().__init__(*args, **kwargs)
        self.host, self.admission = host, admission

    def bind(self, max_workers: int) -> None:
        """The server, on its port; InputError when that port is in use (called on the event loop)."""
        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=(GrpcErrors(self.admission),),
            options=[
                ("grpc.max_send_message_length", self._kwargs.get("grpc_max_send_message_length")),
                ("grpc.max_receive_message_length", self._kwargs.get("grpc_max_receive_message_length")),
                ("grpc.so_reuseport", 0),
            ],
        )
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            Servicer(self._data_plane, self._model_repository_extension), self._server
        )
        address = f"{self.host}:{self._port}"
        try:
            self._server.add_insecure_port(address)
        except RuntimeError:  # grpc says no more than that it failed; its own log line says why
            raise InputError(f"cannot listen on {address} (--grpc-port): the port is in use") from None
        logger.info("gRPC server listening on %s", address)

    async def serve(self) -> None:
        await self._server.start()
        await self._server.wait_for_termination()


class OneModel(ModelRepositoryExtension):
    """KServe's model repository extension with load and unload refused (Forbidden): kfts serve serves the one
    model of --model-dir for as long as it runs, and readiness says that this model answers.

    Why: KServe 0.21.0's extension (kserve/protocol/model_repository_extension.py), which its REST routes
    (POST /v2/repository/models/NAME/load and /unload, kserve/protocol/rest/v2_endpoints.py) and gRPC
    RepositoryModelLoad/Unload (kserve/protocol/grpc/servicer.py) call, lets any client unload the model while
    /v2/health/ready still answers 200, and cannot load it back; ModelServer takes it as an attribute."""

    async def load(self, model_name: str) -> None:
        raise Forbidden(self._refusal(model_name, "loaded"))

    async def unload(self, model_name: str) -> None:
        raise Forbidden(self._refusal(model_name, "unloaded"))

    @staticmethod
    def _refusal(model_name: str, done: str) -> str:
        return (
            f"model {clip(model_name)!r} cannot be {done}: kfts serve serves the model of its --model-dir for as long "
            "as it runs (the model repository extension is not offered); start another server for another model"
        )


class OneModelDataPlane(DataPlane):
    """KServe's data plane, whose server metadata (GET /v2, gRPC ServerMetadata) leaves out the model repository
    extension, which OneModel refuses: KServe 0.21.0's (kserve/protocol/dataplane.py) lists it always."""

    def metadata(self) -> dict:
        return {**super().metadata(), "extensions": []}


# -- the server ---------------------------------------------------------------------------------------------------


class KftsServer(ModelServer):
    """KServe's ModelServer (one process) listening on `host` (None: KServe's 0.0.0.0 and [::]).

    Why a subclass: KServe 0.21.0's ModelServer.start (kserve/model_server.py) creates its own RESTServer and
    GRPCServer; start() here is its single-process path with kfts's RestServer and GrpcServer instead."""

    def __init__(self, *, host: str | None, http: socket.socket, grpc_port: int, admission: Admission, max_bytes: int):
        super().__init__(http_port=http.getsockname()[1], grpc_port=grpc_port, enable_grpc=True)
        self.host, self.http, self.admission, self.max_bytes = host, http, admission, max_bytes
        self.model_repository_extension = OneModel(self.registered_models)
        self.dataplane = OneModelDataPlane(self.registered_models)

    def start(self, models) -> None:
        self._register_and_check_atleast_one_model_is_ready(models)
        self._rest_server = RestServer(
            FASTAPI_APP_IMPORT_STRING,
            self.dataplane,
            self.model_repository_extension,
            self.http_port,
            host=self.host or "0.0.0.0",
            sock=self.http,
            grace_period=self.grace_period,
            event_loop=self.event_loop,
            timeout_keep_alive=self.timeout_keep_alive,
        )
        grpc_host = self.host or "[::]"
        if ":" in grpc_host and not grpc_host.startswith("["):  # an IPv6 address: gRPC wants it in brackets
            grpc_host = f"[{grpc_host}]"
        # the gRPC message limits, which GRPCServer reads from `kwargs` (ModelServer.start gives it KServe's parsed
        # flags). Requests are capped; answers are not, as over REST: they are a small multiple of their request
        # (LSTM-AD's score, reconstruction and flag per row), and KServe's default cap of 8 MiB threw away
        # answers already computed
        limits = {"grpc_max_receive_message_length": self.max_bytes, "grpc_max_send_message_length": -1}
        self._grpc_server = GrpcServer(
            grpc_host,
            self.grpc_port,
            self.dataplane,
            self.model_repository_extension,
            kwargs=limits,
            grace_period=self.grace_period,
            admission=self.admission,
        )
        self.setup_event_loop()
        self.register_signal_handler()
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._grpc_server.bind(self.max_threads)  # before uvicorn starts: a port in use ends the start here
        await asyncio.gather(self._rest_server.start(), self._grpc_server.serve())


def check_model_name(name: str) -> None:
    """A name that KServe's paths can carry, /v1/models/NAME:predict and /v2/models/NAME/infer: its routes take
    any path segment (no '/'), and URL clients drop the segments '.' and '..'."""
    if not name:
        raise InputError("--model-name is empty: give the NAME that clients put in /v1/models/NAME:predict")
    if "/" in name or name in (".", ".."):
        raise InputError(
            f"--model-name {clip(name)!r} cannot be a segment of KServe's paths (/v1/models/NAME:predict): "
            "give a name without '/' (and other than '.' or '..')"
        )


def bound(host: str, port: int, flag: str) -> socket.socket:
    """A TCP socket bound to `host`:`port` as uvicorn and gRPC bind theirs (SO_REUSEADDR, and no SO_REUSEPORT:
    a port in use is refused), or InputError naming `flag`: the port is in use, or `host` is not an address
    of this machine."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except socket.gaierror as e:
        sock.close()
        raise InputError(f"--host {host} is not an address: {e.strerror}") from None
    except OSError as e:
        sock.close()
        raise InputError(f"cannot listen on {host} port {port} ({flag}): {e.strerror}") from None
    return sock


def configure_server_logging() -> None:
    """KServe's logging configuration, with the kfts loggers on KServe's handler and SkipClientErrors on
    uvicorn's access log."""
    config = copy.deepcopy(KSERVE_LOG_CONFIG)
    config["loggers"]["kfts"] = {
        "handlers": ["kserve"],
        "level": config["loggers"]["kserve"]["level"],
        "propagate": False,
    }
    config["filters"] = {"skip_client_errors": {"()": SkipClientErrors}}
    config["handlers"]["uvicorn_access"]["filters"] = ["skip_client_errors"]
    configure_logging(config)
    # FastAPI warns on the first request that KServe's ORJSONResponse is deprecated: nothing a user can change
    warnings.filterwarnings("ignore", category=FastAPIDeprecationWarning)


def serve(
    model_dir: str,
    *,
    model_name: str = "model",
    host: str | None = None,
    http_port: int = 8080,
    grpc_port: int = 8081,
    device: str = "auto",
    max_batch_size: int = 64,
    max_batch_wait_ms: float = 2.0,
    max_payload_mb: float = 16.0,
    max_inflight_mb: float | None = None,
    body_timeout_s: float = 10.0,
) -> None:
    """max_inflight_mb: the memory that requests may take at once (admission.py); None: what the memory limit
    leaves. body_timeout_s: how long a request body may go without a byte, or since its first byte before it
    must have come at MIN_BODY_RATE, before its 408 (RequestGuard)."""
    if not os.path.isdir(model_dir):
        raise InputError("no such model directory (KServe mounts the storageUri at /mnt/models)", path=model_dir)
    for name, value in (
        ("--max-batch-size", max_batch_size),
        ("--max-payload-mb", max_payload_mb),
        ("--body-timeout-s", body_timeout_s),
    ):
        if not value > 0:
            raise InputError(f"{name} must be positive, not {value}")
    least = smallest_limit(int(max_payload_mb * 2**20)) / 2**20
    if max_inflight_mb is not None and not max_inflight_mb >= least:
        raise InputError(
            f"--max-inflight-mb must be at least {least:g} (what decoding a body of --max-payload-mb "
            f"{max_payload_mb:g} may take), not {max_inflight_mb:g}"
        )
    if max_batch_wait_ms < 0:
        raise InputError(f"--max-batch-wait-ms must be 0 or more, not {max_batch_wait_ms}")
    if host is not None and not host.strip():
        raise InputError("--host is empty: give an address such as 127.0.0.1, 0.0.0.0 or ::")
    check_model_name(model_name)
    for name, port in (("--http-port", http_port), ("--grpc-port", grpc_port)):
        if not 0 < port < 2**16:
            raise InputError(f"{name} must be a port from 1 to 65535, not {port}")
    if http_port == grpc_port:
        raise InputError(f"--http-port and --grpc-port are both {http_port}: each needs a port of its own")
    max_bytes = int(max_payload_mb * 2**20)
    # ports in use said before the model loads: HTTP's is kept (listening already) for uvicorn, gRPC's tried
    # (GrpcServer.bind refuses it too if it is taken meanwhile)
    http = bound(host or "0.0.0.0", http_port, "--http-port")
    http.listen()
    bound(host or "0.0.0.0", grpc_port, "--grpc-port").close()

    from kfts.core.training import use_cpu_share
    from kfts.serving.model import KftsModel

    configure_server_logging()
    use_cpu_share()
    malloc_returns_memory()
    model = KftsModel(
        model_name, model_dir, device=device, max_batch_size=max_batch_size, max_batch_wait=max_batch_wait_ms / 1000
    )
    model.load()
    # measured with the model loaded: the default budget is what the memory limit leaves beside it
    admission = Admission(default_limit(max_bytes) if max_inflight_mb is None else int(max_inflight_mb * 2**20))
    model.worker.max_waiting = admission.limit // MIN_CHARGE  # as many as the budget admits at once
    logger.info("requests may take %.0f MiB of memory at once (--max-inflight-mb)", admission.limit / 2**20)
    # on the app KServe's RESTServer serves, kserve.model_server's module-level FastAPI app
    # (FASTAPI_APP_IMPORT_STRING): none of KServe 0.21.0's parameters takes a middleware
    model_server.app.add_middleware(RequestGuard, max_bytes=max_bytes, admission=admission, body_timeout=body_timeout_s)
    KftsServer(host=host, http=http, grpc_port=grpc_port, admission=admission, max_bytes=max_bytes).start([model])
