"""`kfts serve`: KServe's model server (V1 and V2 REST, V2 gRPC) with one KftsModel.

kfts starts KServe's REST and gRPC servers itself (KftsServer.start, ModelServer.start's single-process path)
for two things ModelServer does not offer:

- the address to listen on (`--host`); KServe always binds 0.0.0.0 (REST) and [::] (gRPC), which stay the
  default;
- one log line per client mistake: KServe logs a traceback for every error, a client's 400 included. Here a
  mistake (4xx, gRPC INVALID_ARGUMENT, NOT_FOUND...) is answered with its reason and logged once, as
  `client error STATUS METHOD PATH request_id=ID: REASON` (uvicorn's access line for it is left out), while a
  fault in the server is answered 500 / INTERNAL and logged with its traceback, once.

Every REST request carries a request id: the client's `x-request-id` header, else a new one, sent back in the
`x-request-id` header of error answers (gRPC: the `x-request-id` metadata, else the request's `id`).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import struct
import uuid
import warnings
from concurrent import futures

from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import FastAPIDeprecationWarning, RequestValidationError
from grpc import StatusCode, aio
from grpc_interceptor import AsyncExceptionToStatusInterceptor
from grpc_interceptor.exceptions import GrpcException
from kserve import model_server
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.errors import (InvalidInput, ModelNotFound, ModelNotReady, ServerNotLive, ServerNotReady,
                           UnsupportedProtocol)
from kserve.logging import KSERVE_LOG_CONFIG, configure_logging
from kserve.model_server import ModelServer
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.rest.server import RESTServer
from kserve.utils.utils import to_headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from kfts.errors import InputError

logger = logging.getLogger("kfts.serving")

# what a refusal answers, by the exception KServe (or kfts through InvalidInput) raises for it
REFUSALS = {InvalidInput: (400, StatusCode.INVALID_ARGUMENT), ModelNotFound: (404, StatusCode.NOT_FOUND),
            UnsupportedProtocol: (501, StatusCode.UNIMPLEMENTED),
            NotImplementedError: (501, StatusCode.UNIMPLEMENTED), ModelNotReady: (503, StatusCode.UNAVAILABLE),
            ServerNotReady: (503, StatusCode.UNAVAILABLE), ServerNotLive: (503, StatusCode.UNAVAILABLE)}


def log_refusal(status, method: str, path: str, request_id: str, reason) -> None:
    """The one line a client's mistake leaves in the log."""
    reason = " ".join(str(reason).split())  # one line, whatever the message held
    logger.warning("client error %s %s %s request_id=%s: %s", status, method, path, request_id,
                   reason if len(reason) <= 500 else reason[:500] + "...")


# -- REST ---------------------------------------------------------------------------------------------------------

class RequestGuard:
    """ASGI middleware that every REST request passes first: it gets its request id, a body over `max_bytes`
    gets 413 before any of it is decoded, and a fault in the server gets 500 with its traceback logged once.

    The body is read here (the endpoints read it whole anyway) so that a body without Content-Length is
    bounded too, then handed on unchanged.
    """

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1") or uuid.uuid4().hex
        if b"x-request-id" not in headers:  # so that KServe's latency line and the model see it too
            scope["headers"] = [*scope["headers"], (b"x-request-id", request_id.encode())]
        scope.setdefault("state", {})["request_id"] = request_id
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(scope, send, request_id)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._refuse(scope, send, request_id)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent, started = False, False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()  # waits for the disconnect, as Starlette expects
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send_started(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, replay, send_started)
        except Exception:  # noqa: BLE001 - what no handler took is a fault in the server: traceback, 500
            logger.exception("server fault %s %s request_id=%s", scope["method"], scope["path"], request_id)
            if not started:
                response = JSONResponse(status_code=500, headers={"x-request-id": request_id}, content={
                    "error": f"internal server error (request id {request_id})"})
                await response(scope, receive, send)

    async def _refuse(self, scope, send, request_id: str):
        reason = (f"the request body is larger than the limit of {self.max_bytes} bytes "
                  "(kfts serve --max-payload-mb)")
        log_refusal(413, scope["method"], scope["path"], request_id, reason)
        response = JSONResponse(status_code=413, content={"error": reason}, headers={"x-request-id": request_id})
        await response({"type": "http"}, None, send)


def _request_id(request) -> str:
    return request.scope.get("state", {}).get("request_id", "")


async def refusal_handler(request, exc):
    """KServe's errors that are not faults (InvalidInput, ModelNotFound...): their status, one log line."""
    status = next(http for cls, (http, _) in REFUSALS.items() if isinstance(exc, cls))
    log_refusal(status, request.method, request.url.path, _request_id(request), exc)
    return JSONResponse(status_code=status, content={"error": str(exc)},
                        headers={"x-request-id": _request_id(request)})


async def http_error_handler(request, exc: HTTPException):
    """Starlette's own refusals (unknown path 404, wrong method 405), as Starlette answers them."""
    log_refusal(exc.status_code, request.method, request.url.path, _request_id(request), exc.detail)
    return await http_exception_handler(request, exc)


async def validation_error_handler(request, exc: RequestValidationError):
    """A V2 JSON body that does not match the protocol's schema: FastAPI's 422, one log line."""
    reason = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in exc.errors()[:3])
    log_refusal(422, request.method, request.url.path, _request_id(request), reason)
    return await request_validation_exception_handler(request, exc)


class RestServer(RESTServer):
    """KServe's REST server on `host`, with kfts's error handlers."""

    def __init__(self, *args, host: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.config.host = host

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


class KftsDataPlane(DataPlane):
    """KServe's data plane, with a malformed request in the V2 binary tensor extension answered as the
    client's mistake: KServe's InferRequest.from_bytes lets KeyError, TypeError, ValueError... through, 500s."""

    def decode_inference_request(self, body, headers, model_name):
        try:
            return super().decode_inference_request(body, headers, model_name)
        except InvalidInput:
            raise
        except KeyError as e:
            raise InvalidInput(f"malformed V2 request: no {e} field") from None
        except (TypeError, ValueError, IndexError, AttributeError, struct.error) as e:
            raise InvalidInput(f"malformed V2 request: {e}") from None


# -- gRPC ---------------------------------------------------------------------------------------------------------

class GrpcErrors(AsyncExceptionToStatusInterceptor):
    """gRPC statuses for KServe's errors (REFUSALS) with one log line; anything else is a fault: INTERNAL and
    its traceback."""

    async def handle_exception(self, ex, request, context, method_name):
        if isinstance(ex, GrpcException):
            await super().handle_exception(ex, request, context, method_name)
        request_id = to_headers(context).get("x-request-id") or getattr(request, "id", "") or uuid.uuid4().hex
        for cls, (_, code) in REFUSALS.items():
            if isinstance(ex, cls):
                log_refusal(code.name, "gRPC", method_name, request_id, ex)
                await context.abort(code, str(ex))
        logger.error("server fault gRPC %s request_id=%s", method_name, request_id, exc_info=ex)
        await context.abort(StatusCode.INTERNAL, f"internal server error (request id {request_id})")


class GrpcServer(GRPCServer):
    """KServe's gRPC server (GRPCServer.start) on `host`, with GrpcErrors as its only interceptor (KServe's
    LoggingInterceptor logs a line per call that says only the method)."""

    def __init__(self, host: str, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.host = host

    async def start(self, max_workers):
        self._server = aio.server(futures.ThreadPoolExecutor(max_workers=max_workers), interceptors=(GrpcErrors(),),
                                  options=[("grpc.max_send_message_length",
                                            self._kwargs.get("grpc_max_send_message_length")),
                                           ("grpc.max_receive_message_length",
                                            self._kwargs.get("grpc_max_receive_message_length"))])
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            InferenceServicer(self._data_plane, self._model_repository_extension), self._server)
        address = f"{self.host}:{self._port}"
        self._server.add_insecure_port(address)
        logger.info("gRPC server listening on %s", address)
        await self._server.start()
        await self._server.wait_for_termination()


# -- the server ---------------------------------------------------------------------------------------------------

class KftsServer(ModelServer):
    """KServe's ModelServer (one process) listening on `host` (None: KServe's 0.0.0.0 and [::])."""

    def __init__(self, *, host: str | None, http_port: int, grpc_port: int):
        super().__init__(http_port=http_port, grpc_port=grpc_port, enable_grpc=True)
        self.host = host
        self.dataplane = KftsDataPlane(model_registry=self.registered_models)

    def start(self, models) -> None:
        self._register_and_check_atleast_one_model_is_ready(models)
        self._rest_server = RestServer(FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension,
                                       self.http_port, host=self.host or "0.0.0.0", grace_period=self.grace_period,
                                       event_loop=self.event_loop, timeout_keep_alive=self.timeout_keep_alive)
        grpc_host = self.host or "[::]"
        if ":" in grpc_host and not grpc_host.startswith("["):  # an IPv6 address: gRPC wants it in brackets
            grpc_host = f"[{grpc_host}]"
        self._grpc_server = GrpcServer(grpc_host, self.grpc_port, self.dataplane, self.model_repository_extension,
                                       kwargs=vars(model_server.args), grace_period=self.grace_period)
        self.servers += [self._rest_server.start(), self._grpc_server.start(self.max_threads)]
        self.setup_event_loop()
        self.register_signal_handler()
        asyncio.run(self._serve())


def configure_server_logging() -> None:
    """KServe's logging configuration, with the kfts loggers on KServe's handler and SkipClientErrors on
    uvicorn's access log."""
    config = copy.deepcopy(KSERVE_LOG_CONFIG)
    config["loggers"]["kfts"] = {"handlers": ["kserve"], "level": config["loggers"]["kserve"]["level"],
                                 "propagate": False}
    config["filters"] = {"skip_client_errors": {"()": SkipClientErrors}}
    config["handlers"]["uvicorn_access"]["filters"] = ["skip_client_errors"]
    configure_logging(config)
    # FastAPI warns on the first request that KServe's ORJSONResponse is deprecated: nothing a user can change
    warnings.filterwarnings("ignore", category=FastAPIDeprecationWarning)


def serve(model_dir: str, *, model_name: str = "model", host: str | None = None, http_port: int = 8080,
          grpc_port: int = 8081, device: str = "auto", max_batch_size: int = 64, max_batch_wait_ms: float = 2.0,
          max_payload_mb: float = 16.0) -> None:
    if not os.path.isdir(model_dir):
        raise InputError("no such model directory (KServe mounts the storageUri at /mnt/models)", path=model_dir)
    for name, value in (("--max-batch-size", max_batch_size), ("--max-payload-mb", max_payload_mb)):
        if not value > 0:
            raise InputError(f"{name} must be positive, not {value}")
    if max_batch_wait_ms < 0:
        raise InputError(f"--max-batch-wait-ms must be 0 or more, not {max_batch_wait_ms}")
    if host is not None and not host.strip():
        raise InputError("--host is empty: give an address such as 127.0.0.1, 0.0.0.0 or ::")
    max_bytes = int(max_payload_mb * 2**20)

    from kfts.serving.model import KftsModel
    from kfts.training import use_cpu_share

    configure_server_logging()
    use_cpu_share()
    model = KftsModel(model_name, model_dir, device=device, max_batch_size=max_batch_size,
                      max_batch_wait=max_batch_wait_ms / 1000)
    model.load()
    model_server.app.add_middleware(RequestGuard, max_bytes=max_bytes)
    # the gRPC server takes its message limits from KServe's parsed flags. Requests are capped; answers are
    # not, as over REST: they are a small multiple of their request (LSTM-AD's score, reconstruction and flag
    # per row), and KServe's default cap of 8 MiB threw away answers already computed
    model_server.args.grpc_max_receive_message_length = max_bytes
    model_server.args.grpc_max_send_message_length = -1
    KftsServer(host=host, http_port=http_port, grpc_port=grpc_port).start([model])
