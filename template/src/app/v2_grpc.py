"""The Open Inference Protocol (KServe V2) over gRPC, on a port of its own (GRPC_PORT).

Every worker serves it beside REST, in the same event loop and with the same model: the port is
bound with SO_REUSEPORT, so the kernel spreads connections over the workers as it does for REST.
Requests are checked as ``/v2`` over REST checks them (``src.app.v2``: names, datatypes, shapes,
values, MAX_ROWS), a message is at most MAX_BODY_BYTES, and messages are charged to the same
per-worker budget of bodies in flight. Refusals carry the REST answer's message with the gRPC
status of its HTTP status: 400 INVALID_ARGUMENT, 404 NOT_FOUND, 413 RESOURCE_EXHAUSTED, 503
UNAVAILABLE.

Input values come in ``contents`` (the field of their datatype) or, for every input at once, in
``raw_input_contents``; the outputs are answered the same way (raw as well when the request's
``binary_data_output`` parameter is true).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import wraps
from time import perf_counter
from typing import Any, TypeVar

import grpc
import numpy as np
from google.protobuf.message import Message

from src.app.deps import infer
from src.app.limits import BUSY, BodiesInFlightError
from src.app.metrics import TALLY
from src.app.v2 import (
    ModelSpec,
    ProtocolError,
    check_complete,
    check_input,
    check_outputs,
    describe,
    from_binary,
    from_values,
    output_tensor,
    server_metadata,
    to_binary,
)
from src.ml.classifier import ModelInputError, finite_outputs
from src.protocol import grpc_predict_v2_pb2 as pb
from src.protocol import grpc_predict_v2_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)
SERVICE = "inference.GRPCInferenceService"
# The contents field that holds each datatype's values (FP16 travels raw only).
CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}

Request = TypeVar("Request", bound=Message)
Reply = TypeVar("Reply", bound=Message)
Method = Callable[[Any, Request, grpc.aio.ServicerContext], Awaitable[Reply]]


def decode(request: pb.ModelInferRequest, model: ModelSpec, max_rows: int) -> dict[str, Any]:
    """The model's inputs in ``request`` as arrays; ProtocolError if refused."""
    if not request.inputs:
        raise ProtocolError(400, "inputs: none given; the model takes at least one")
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise ProtocolError(
            400, f"raw_input_contents: {len(raw)} entries for {len(request.inputs)} inputs"
        )
    arrays: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(request.inputs):
        shape = list(tensor.shape)
        check_input(model, tensor.name, tensor.datatype, shape, arrays, max_rows)
        if raw:
            if tensor.HasField("contents"):
                raise ProtocolError(
                    400, f"inputs: {tensor.name!r} has contents and raw_input_contents both"
                )
            arrays[tensor.name] = from_binary(raw[index], tensor.datatype, shape)
        else:
            arrays[tensor.name] = from_values(_values(tensor), tensor.datatype, shape)
    check_complete(model, arrays)
    check_outputs([output.name for output in request.outputs], model)
    return arrays


def _values(tensor: pb.ModelInferRequest.InferInputTensor) -> list[Any]:
    field = CONTENTS.get(tensor.datatype)
    if field is None:
        raise ProtocolError(400, f"inputs: {tensor.name!r}: {tensor.datatype} is sent raw only")
    filled = {descriptor.name for descriptor, _ in tensor.contents.ListFields()}
    if filled - {field}:
        raise ProtocolError(
            400, f"inputs: {tensor.name!r}: {tensor.datatype} values go in contents.{field}"
        )
    values = list(getattr(tensor.contents, field))
    if tensor.datatype != "BYTES":
        return values
    try:
        return [value.decode("utf-8") for value in values]
    except UnicodeDecodeError:
        raise ProtocolError(400, "inputs: BYTES elements must be UTF-8 text") from None


def _flag(parameters: Any, key: str) -> bool:
    return key in parameters and parameters[key].bool_param


def encode(
    request: pb.ModelInferRequest, model: ModelSpec, names: list[str], results: list[Any]
) -> pb.ModelInferResponse:
    """The answer: every output in ``contents``, or every output raw when the inputs came raw,
    the request asks (``binary_data_output``) or an output has no contents field (FP16)."""
    tensors = [output_tensor(result) for result in results]
    raw = (
        bool(request.raw_input_contents)
        or _flag(request.parameters, "binary_data_output")
        or any(datatype not in CONTENTS for _, datatype in tensors)
    )
    response = pb.ModelInferResponse(
        model_name=model.name, model_version=model.version, id=request.id
    )
    for name, (array, datatype) in zip(names, tensors, strict=True):
        output = response.outputs.add(name=name, datatype=datatype, shape=array.shape)
        if raw:
            response.raw_output_contents.append(to_binary(array, datatype))
            continue
        values = array.reshape(-1).tolist()
        if datatype == "BYTES":
            values = [str(value).encode("utf-8") for value in values]
        getattr(output.contents, CONTENTS[datatype]).extend(values)
    return response


def observed(method: Method[Request, Reply]) -> Method[Request, Reply]:
    """Count the call in the gRPC metrics, and answer a ProtocolError with its status."""
    name = f"/{SERVICE}/{method.__name__}"

    @wraps(method)
    async def call(self: Any, request: Request, context: grpc.aio.ServicerContext) -> Reply:
        started = perf_counter()
        code = grpc.StatusCode.OK
        try:
            return await method(self, request, context)
        except ProtocolError as err:
            code = CODES.get(err.status, grpc.StatusCode.INVALID_ARGUMENT)
            logger.info("gRPC %s refused (%s): %s", method.__name__, code.name, err.message)
            await context.abort(code, err.message)
            raise  # abort raises; this is for the type checker
        except grpc.aio.AbortError:
            raise
        except Exception:
            # Answered without internals, as REST answers 500; the log has the traceback.
            code = grpc.StatusCode.INTERNAL
            logger.exception("gRPC %s failed", method.__name__)
            await context.abort(code, "internal error")
            raise
        finally:
            TALLY.rpc(name, code.name, perf_counter() - started)

    return call


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The protocol's RPCs, answered from the application's state (the model it serves now)."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def _model(self, name: str, version: str) -> ModelSpec:
        model = describe(self.state.classifier)
        model.check(name, version or None)
        return model

    @observed
    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    @observed
    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=bool(self.state.ready))

    @observed
    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        self._model(request.name, request.version)
        return pb.ModelReadyResponse(ready=bool(self.state.ready))

    @observed
    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**server_metadata())

    @observed
    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        metadata = self._model(request.name, request.version).metadata()
        return pb.ModelMetadataResponse(**metadata)

    @observed
    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        if not self.state.ready:
            raise ProtocolError(503, "the model is not ready (starting or stopping)")
        model = self._model(request.model_name, request.model_version)
        size = request.ByteSize()
        try:
            self.state.body_budget.take(size, 0)
        except BodiesInFlightError:
            raise ProtocolError(503, BUSY) from None
        try:
            return await self._infer(request, model)
        finally:
            self.state.body_budget.give_back(size)

    async def _infer(
        self, request: pb.ModelInferRequest, model: ModelSpec
    ) -> pb.ModelInferResponse:
        settings = self.state.settings
        classifier = self.state.classifier
        feeds = decode(request, model, settings.max_rows)
        names = [output.name for output in request.outputs] or [
            tensor.name for tensor in model.outputs
        ]
        try:
            results = await infer(
                settings, lambda arrays: finite_outputs(classifier.run(arrays, names)), feeds
            )
        except ModelInputError as err:
            raise ProtocolError(400, str(err)) from None
        return encode(request, model, names, results)


async def serve(state: Any, host: str, port: int, max_message_bytes: int) -> grpc.aio.Server:
    """Start answering the protocol on ``host:port``; RuntimeError if the port cannot be bound."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.so_reuseport", 1),
        ]
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(state), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if server.add_insecure_port(address) == 0:
        raise RuntimeError(f"GRPC_PORT={port}: cannot listen on {address}")
    await server.start()
    return server
