"""The predictor's requests decoded and its answers encoded, for any algorithm (NAME is the model name,
`--model-name`):

- V1 `POST /v1/models/NAME:predict` with `{"instances": [rows]}` -> `{"predictions": [...]}` (v1_values,
  v1_answer: its JSON written a chunk of rows at a time).
- V2 `POST /v2/models/NAME/infer` (or gRPC ModelInfer): one numeric tensor (FP32, FP64, FP16 or an integer
  type) of rows, in any encoding of the protocol: JSON `data` or the binary tensor extension
  (`binary_data_size`) over REST (rest_request), typed `contents` or `raw_input_contents` over gRPC (v2_values).
  The request's `outputs` pick outputs by name; naming none, every output (the Open Inference Protocol's rule).
  Answers come back as they were asked (v2_answer): over gRPC raw to raw inputs and typed to typed ones; over
  REST JSON, or binary with `binary_data_output` or an output's `binary_data`.
- `text/csv` body on the V1 predict URL: the inference file of docs/FORMATS.md, answered with exactly the
  bytes of `kfts predict` (the algorithm's read_inference and predictions_csv, called by the model).

What a row is, the outputs and the V1 answer are the algorithm's (its Adapter, kfts/algorithms/<name>/
serving.py: InceptionTime a series per row and `label`, `probabilities`, `classes`; LSTM-AD a time step
per row and `score`, `reconstruction` [+ `anomaly`]). Request options (InceptionTime `probabilities`, LSTM-AD
`flag` and `context_rows`) come from the V2 request parameters (`{"parameters": {"probabilities": true}}`) or
from the headers `kfts-NAME` (`kfts-context-rows: N`; REST header or gRPC metadata): options().

What reads a request's values or writes an answer (rest_request, v1_values, v2_values, v1_answer,
RestInferResponse.to_rest) runs off the event loop (kfts.serving.off_loop) and checks the values with numpy on
the whole array: a body may hold as many values as --max-payload-mb lets in. A mistake names its row and
column, as kfts.core.csvio does.
"""

from __future__ import annotations

import itertools
import uuid

import numpy as np
import orjson
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import (
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    RequestedOutput,
    serialize_byte_tensor,
    to_http_parameters,
)

from kfts.core.errors import InputError
from kfts.serving import clip

CSV = "text/csv"
NUMBERS = {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}


def options(adapter, headers: dict, parameters: dict | None = None) -> dict:
    """The request options the adapter knows, from the V2 request parameters, else the headers kfts-NAME."""
    options = {}
    for name, parse in adapter.request_options().items():
        header = "kfts-" + name.replace("_", "-")
        if parameters and name in parameters:
            where, value = f"parameter {name!r}", parameters[name]
        elif header in headers:
            where, value = f"header {header}", headers[header]
        else:
            continue
        try:
            options[name] = parse(value)
        except InputError as e:
            raise InputError(e.message, path=where) from None
    return options


# -- V1 -----------------------------------------------------------------------------------------------------------


def v1_values(body: bytes | dict, adapter) -> np.ndarray:
    """A V1 body's rows as float32 [rows, columns], checked by the adapter."""
    body = _json(body) if isinstance(body, bytes) else body
    if not isinstance(body, dict) or "instances" not in body:
        raise InvalidInput('expected a JSON object with "instances": a list of rows')
    values = matrix(body["instances"], "instances", univariate=adapter.univariate)
    adapter.check(values, "instances")
    return values


def v1_answer(chunks) -> memoryview:
    """{"predictions": [...]} from the adapter's V1 predictions, written a chunk at a time: a whole answer as
    Python objects would take many times its JSON (an LSTM-AD time step is a dict with a list)."""
    out = bytearray(b'{"predictions":[')
    for chunk in chunks:
        if chunk:
            out += orjson.dumps(chunk, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1] + b","
    out[-1:] = b"]}" if out.endswith(b",") else b"[]}"
    return memoryview(out)


def _json(body: bytes):
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidInput(f"Unrecognized request format: {e}") from None


def matrix(rows, where: str, univariate: bool = False) -> np.ndarray:
    """A JSON list of rows as float32 [rows, columns]; a mistake names the row and column, as csvio does."""
    if not isinstance(rows, list):
        raise InvalidInput(f"{where}: expected a list of rows, got {type(rows).__name__}")
    if not rows:
        raise InvalidInput(f"{where}: the list is empty")
    kinds = _types(rows, len(rows))
    # kinds is a numpy array of types: == compares each element (E721 mistakes it for one type)
    if univariate and not (kinds == list).any():  # noqa: E721 - bare numbers, one per row: a column
        return _column(rows, kinds, where)
    if univariate:  # rows and bare numbers mixed
        rows = [r if type(r) is list else [r] for r in rows]
        kinds = _types(rows, len(rows))
    not_row = np.flatnonzero(kinds != list)  # noqa: E721
    if not_row.size:
        r = int(not_row[0])
        raise InputError(f"{_show(rows[r])} is not a row: each row is a list of numbers", path=where, row=r + 1)
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    ragged = np.flatnonzero(lengths != lengths[0])
    if ragged.size:
        r = int(ragged[0])
        raise InputError(f"has {lengths[r]} values, the rows above have {lengths[0]}", path=where, row=r + 1)
    if lengths[0] == 0:
        raise InvalidInput(f"{where}: the rows are empty")
    # numpy alone would quietly read true as 1 and "4" as 4.0: every value's type is checked first
    bad = _first_not_of(_types(itertools.chain.from_iterable(rows), int(lengths.sum())), (int, float))
    if bad is not None:
        r, c = divmod(bad, int(lengths[0]))
        raise InputError(f"{_show(rows[r][c])} is not a number", path=where, row=r + 1, column=c + 1)
    with np.errstate(over="ignore"):  # beyond float32: inf, refused just below
        values = np.array(rows, dtype=np.float32)
    return _finite(values, where, rows)


def _column(values: list, kinds: np.ndarray, where: str) -> np.ndarray:
    """A JSON list of bare numbers as float32 [rows, 1], without a Python list per row (many times the size of
    the value it would hold)."""
    bad = _first_not_of(kinds, (int, float))
    if bad is not None:
        raise InputError(f"{_show(values[bad])} is not a number", path=where, row=bad + 1, column=1)
    with np.errstate(over="ignore"):  # beyond float32: inf, refused just below
        column = np.array(values, dtype=np.float32)[:, None]
    return _finite(column, where, np.asarray(values, dtype=object)[:, None])


def _types(items, count: int = -1) -> np.ndarray:
    """The type of each item, as an object array (map and fromiter loop in C)."""
    return np.fromiter(map(type, items), dtype=object, count=count)


def _first_not_of(types: np.ndarray, kinds: tuple) -> int | None:
    """The index of the first type that is not one of `kinds` (exactly: bool is not int), None if all are."""
    ok = np.zeros(len(types), dtype=bool)
    for kind in kinds:
        ok |= types == kind
    bad = np.flatnonzero(~ok)
    return int(bad[0]) if bad.size else None


def _show(value) -> str:
    """A client's value in a message, cut to a sane length (a string may be as long as the body)."""
    return "null" if value is None else clip(repr(value))


def _finite(values: np.ndarray, where: str, sent: list | np.ndarray | None = None) -> np.ndarray:
    """values, refused where one is not finite. sent: the rows as the client sent them (V1's JSON lists, V2's
    array in its datatype), to show a number beyond float32 (1e39) as itself, not as the infinity it became."""
    if not np.isfinite(values).all():
        row = int(np.argmin(np.isfinite(values).all(axis=1)))
        col = int(np.argmin(np.isfinite(values[row])))
        value = sent[row][col] if sent is not None else values[row, col]
        reason = (
            "is too large: values must fit in float32 (at most 3.4028235e38 in magnitude)"
            if np.isfinite(value)
            else "is not allowed: values must be finite numbers"
        )
        raise InputError(f"{value} {reason}", path=where, row=row + 1, column=col + 1)
    return values


# -- V2 -----------------------------------------------------------------------------------------------------------


def v2_head(request: InferRequest, adapter, headers: dict) -> tuple[dict, list[str]]:
    """What a V2 request asks besides its values: its options, and the outputs to answer (every output the
    model has when it names none, as the Open Inference Protocol says)."""
    if len(request.inputs) != 1:
        raise InvalidInput(f"expected one input tensor, got {len(request.inputs)}")
    parameters = request.parameters or {}
    if not isinstance(parameters, dict):  # gRPC: a protobuf map of InferParameter
        parameters = to_http_parameters(parameters)
    asked_options = options(adapter, headers, parameters)
    names = [o["name"] for o in adapter.output_types()]
    asked = [o.name for o in request.request_outputs or []]
    for name in asked:
        if name not in names:
            raise InvalidInput(f"outputs: no output {clip(repr(name))}; this model answers {', '.join(names)}")
    return asked_options, asked or names


def v2_values(request: InferRequest, adapter) -> np.ndarray:
    """The request's tensor as float32 [rows, columns], checked by the adapter."""
    tensor = request.inputs[0]
    values = _tensor_values(tensor, adapter.univariate, typed=request.from_grpc)
    adapter.check(values, f"input {clip(repr(tensor.name))}")
    return values


def v2_answer(request: InferRequest, arrays: dict[str, np.ndarray], names: list[str], model_name: str) -> InferResponse:
    """The answer of tensors `names`, encoded as the request asks (_outputs, _binary_outputs)."""
    outputs = _outputs(request, arrays, names)
    response_id = request.id or str(uuid.uuid4())
    if request.from_grpc:
        return InferResponse(
            response_id=response_id,
            model_name=model_name,
            infer_outputs=outputs,
            use_binary_outputs=request.use_binary_outputs,
        )
    return RestInferResponse(
        response_id=response_id, model_name=model_name, infer_outputs=outputs, binary=_binary_outputs(request, names)
    )


def _tensor_values(tensor: InferInput, univariate: bool, typed: bool = False) -> np.ndarray:
    """The request's V2 tensor as float32 [rows, columns], whichever encoding and numeric datatype it came in.
    typed: gRPC's typed contents, whose values protobuf has typed already."""
    where = f"input {clip(repr(tensor.name))}"
    if tensor.datatype not in NUMBERS:
        raise InvalidInput(
            f"{where}: datatype {clip(str(tensor.datatype))}: send numbers (FP32, FP64, FP16 or an integer type)"
        )
    json = isinstance(tensor.data, list) and not typed
    if json:
        _check_numbers(tensor.data, tensor.datatype, tensor.shape, where)
    try:
        with np.errstate(over="ignore"):  # JSON beyond FP32: inf, refused by _finite
            data = tensor.as_numpy()  # JSON data, typed gRPC contents or raw bytes, checked against the shape
    except (ValueError, TypeError, OverflowError) as e:
        hint = (
            " FP16 travels only as binary data: binary_data_size over REST, raw_input_contents over gRPC"
            if tensor.datatype == "FP16"
            else ""
        )
        raise InvalidInput(
            f"{where}: the data are not {clip(str(tensor.shape))} {tensor.datatype} numbers ({clip(str(e))}).{hint}"
        ) from None
    if data.ndim == 1 and univariate:
        data = data[:, None]
    if data.ndim != 2:
        raise InvalidInput(f"{where}: expected a 2-D tensor, got shape {list(data.shape)}")
    if data.size == 0:
        raise InvalidInput(f"{where}: the tensor is empty")
    with np.errstate(over="ignore"):  # FP64 beyond float32: inf, refused by _finite
        values = data.astype(np.float32, copy=False)
    if json and not np.isfinite(values).all():  # JSON's 1e40 became inf as FP32: shown as the client wrote it
        data = np.array(tensor.data, dtype=object).reshape(data.shape)
    return _finite(values, where, data)


def _check_numbers(data: list, datatype: str, shape: list, where: str) -> None:
    """JSON data, flat or nested, holds numbers of `datatype`: numpy would quietly read "1.0" and true as 1.0,
    and 0.5 as INT32 0 (V1 rows get the same exact check, in matrix). A mistake names its row and column."""
    kinds, kind = ((int,), "an integer") if datatype.startswith(("INT", "UINT")) else ((int, float), "a number")
    try:
        items = np.array(data, dtype=object).ravel()  # nested lists flattened in C; ragged ones refused
    except ValueError as e:
        raise InvalidInput(f"{where}: the data are not {clip(str(shape))} {datatype} numbers ({e})") from None
    bad = _first_not_of(_types(items, items.size), kinds)
    if bad is not None:
        columns = shape[1] if len(shape) == 2 and isinstance(shape[1], int) and shape[1] > 0 else 1
        raise InputError(
            f"{_show(items[bad])} is not {kind}, as datatype {datatype} needs",
            path=where,
            row=bad // columns + 1,
            column=bad % columns + 1,
        )


def _outputs(request: InferRequest, arrays: dict[str, np.ndarray], names: list[str]) -> list[InferOutput]:
    """The answer's tensors `names`: over gRPC raw_output_contents to raw_input_contents and typed contents
    otherwise (KServe's to_grpc cannot encode numpy data itself); over REST numpy data, which
    RestInferResponse.to_rest writes as JSON or binary data."""
    outputs = []
    for name in names:
        data = arrays[name]
        output = InferOutput(name=name, shape=list(data.shape), datatype="BYTES" if data.dtype == object else "FP32")
        if request.from_grpc:
            output.set_data_from_numpy(data, binary_data=request.use_binary_outputs)
        else:
            output.data = data
        outputs.append(output)
    return outputs


def _binary_outputs(request: InferRequest, names: list[str]) -> dict[str, bool]:
    """REST: which outputs are answered as binary data: an output's `binary_data` parameter, else the
    request's `binary_data_output` (as the binary tensor extension says)."""
    binary = {name: bool(request.use_binary_outputs) for name in names}
    for o in request.request_outputs or []:
        if o.binary_data is not None:
            binary[o.name] = bool(o.binary_data)
    return binary


class RestInferResponse(InferResponse):
    """A V2 answer to a REST request, whose to_rest() orjson writes from the numpy outputs.

    Why a subclass: KServe 0.21's InferResponse.to_rest (kserve/protocol/infer_type.py) turns every output
    into a Python list first (a Python float per value) and leaves the JSON to FastAPI, on the event loop;
    kfts.serving.server.RestRoutes calls this to_rest off the loop instead."""

    def __init__(self, *, binary: dict[str, bool], **kwargs):
        super().__init__(**kwargs)
        self.binary = binary

    def to_rest(self) -> tuple[bytes, int | None]:
        """(body, length of its JSON part when binary data follow it, else None)."""
        tensors, raw = [], []
        for output in self.outputs:
            tensor = {"name": output.name, "shape": output.shape, "datatype": output.datatype}
            data = output.data
            if self.binary[output.name]:
                raw.append(serialize_byte_tensor(data).item() if data.dtype == object else data.tobytes())
                tensor["parameters"] = {"binary_data_size": len(raw[-1])}
            else:
                tensor["data"] = data.tolist() if data.dtype == object else data  # text, else numpy for orjson
            tensors.append(tensor)
        head = orjson.dumps(
            {"id": self.id, "model_name": self.model_name, "model_version": self.model_version, "outputs": tensors},
            option=orjson.OPT_SERIALIZE_NUMPY,
        )  # NaN as null
        return (b"".join([head, *raw]), len(head)) if raw else (head, None)


# the Open Inference Protocol's request, field by field: (JSON type, required)
REQUEST = {"id": (str, False), "parameters": (dict, False), "inputs": (list, True), "outputs": (list, False)}
REQUEST_INPUT = {
    "name": (str, True),
    "shape": (list, True),
    "datatype": (str, True),
    "parameters": (dict, False),
    "data": (list, False),
}
REQUEST_OUTPUT = {"name": (str, True), "parameters": (dict, False)}


def rest_request(body: bytes, headers: dict, model_name: str) -> InferRequest:
    """A V2 REST body as KServe's InferRequest, read as the Open Inference Protocol and Triton read it: JSON,
    followed by its tensors' binary data when the Inference-Header-Content-Length header says where the JSON
    ends, whatever the Content-Type. (KServe 0.21 reads a body as JSON only when its Content-Type says
    application/json, else as binary data: a JSON body without Content-Type, as Triton's clients send it, was
    refused for want of that header.) Binary data stay bytes until the model reads them (KServe's from_bytes
    turns them into a Python list). A body that breaks the protocol's schema is a 400."""
    length = headers.get(INFERENCE_CONTENT_LENGTH_HEADER)
    if length is None:
        length = len(body)
    elif not (length.isascii() and length.isdigit()) or int(length) > len(body):
        raise InvalidInput(
            f"malformed V2 request: header {INFERENCE_CONTENT_LENGTH_HEADER}: "
            f"{clip(repr(length))} is not a length within the body's {len(body)} bytes"
        )
    length = int(length)
    try:
        head = orjson.loads(memoryview(body)[:length])
    except orjson.JSONDecodeError as e:
        raise InvalidInput(
            f"malformed V2 request: the body is not JSON ({e}); binary tensor data need the "
            f"{INFERENCE_CONTENT_LENGTH_HEADER} header"
        ) from None
    _fields(head, REQUEST, "the request")
    _flag(head.get("parameters"), "binary_data_output", "parameters")
    inputs, offset = [], length
    for i, tensor in enumerate(head["inputs"]):
        where = f"inputs[{i}]"
        _fields(tensor, REQUEST_INPUT, where)
        check_shape(tensor["shape"], where)
        parameters = tensor.get("parameters") or {}
        size = parameters.get("binary_data_size")
        infer_input = InferInput(tensor["name"], tensor["shape"], tensor["datatype"], parameters=parameters)
        if "data" in tensor:
            if tensor["datatype"] == "FP16":
                raise InvalidInput(f"{where}: FP16 has no JSON form: send it as binary data (binary_data_size)")
            infer_input.data = tensor["data"]
        elif type(size) is int and 0 <= size <= len(body) - offset:
            # KServe's private field, set as its own InferRequest.from_bytes sets it (kserve/protocol/infer_type.py):
            # InferInput has no setter for raw bytes (InferRequest's raw_inputs gives them to inputs by position)
            infer_input._raw_data = body[offset : offset + size]
            offset += size
        else:
            raise InvalidInput(
                f"malformed V2 request: {where} has no 'data', and its parameters.binary_data_size "
                f"({clip(repr(size))}) is not the size of binary data left in the body "
                f"({len(body) - offset} bytes)"
            )
        inputs.append(infer_input)
    if offset != len(body):  # bytes that no tensor claims: the client miscounted something
        raise InvalidInput(
            f"malformed V2 request: the body has {len(body)} bytes, {offset} expected: {length} of JSON "
            f"({INFERENCE_CONTENT_LENGTH_HEADER}) and {offset - length} of binary data (the inputs' binary_data_size)"
        )
    outputs = []
    for i, output in enumerate(head.get("outputs") or []):
        _fields(output, REQUEST_OUTPUT, f"outputs[{i}]")
        _flag(output.get("parameters"), "binary_data", f"outputs[{i}].parameters")
        outputs.append(RequestedOutput(output["name"], output.get("parameters")))
    return InferRequest(
        model_name=model_name,
        infer_inputs=inputs,
        request_id=head.get("id"),
        parameters=head.get("parameters"),
        request_outputs=outputs or None,
    )


def _flag(parameters: dict | None, name: str, where: str) -> None:
    """A flag of the binary tensor extension is a JSON boolean: KServe 0.21.0 reads any truthy value, "false"
    too, as true (InferRequest.use_binary_outputs, RequestedOutput.binary_data: kserve/protocol/infer_type.py)."""
    if parameters and name in parameters and type(parameters[name]) is not bool:
        raise InvalidInput(
            f"malformed V2 request: {where}.{name}: {_show(parameters[name])} is not a JSON boolean (true or false)"
        )


def check_shape(shape: list, where: str) -> None:
    """A tensor's shape is a list of sizes: numpy would read a -1 as "whatever is left". Over REST and gRPC."""
    if not all(type(n) is int and n >= 0 for n in shape):
        raise InvalidInput(f"malformed V2 request: {where}.shape: {clip(str(shape))} is not a list of sizes")


def check_version(version: str) -> None:
    """The request names no model version: kfts serve serves one model, which has none, and does not answer a
    request for a version with it. Over REST (the path's /versions/VERSION/) and gRPC (model_version)."""
    if version:
        raise InvalidInput(
            f"model_version {clip(repr(version))}: kfts serve serves one model, without versions: "
            "leave model_version empty (REST: /v2/models/NAME/infer)"
        )


def _fields(value, schema: dict, where: str) -> None:
    """`value` is a JSON object with the fields of `schema`, each of its type."""
    if not isinstance(value, dict):
        raise InvalidInput(f"malformed V2 request: {where} is not a JSON object")
    for name, (kind, required) in schema.items():
        if name not in value:
            if required:
                raise InvalidInput(f"malformed V2 request: {where} has no {name!r} field")
        elif not isinstance(value[name], kind):
            raise InvalidInput(
                f"malformed V2 request: {where}.{name} is not a JSON "
                f"{ {str: 'string', dict: 'object', list: 'array'}[kind] }"
            )
