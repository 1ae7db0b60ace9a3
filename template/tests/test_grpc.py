"""The Open Inference Protocol over gRPC, called with ``tritonclient.grpc`` as any client would.

The service runs as in production (run.sh, two workers) with GRPC_PORT set. Every answer is
compared with the same request's answer over REST (``/v2``, which test_v2 checks against the
model itself): both protocols must give the same outputs and refuse the same requests.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from src.app import config
from tests.live import MODEL, call, free_port, running, sample_body

NAME = config.SERVICE_NAME
# Small enough that a message over it is cheap to send; large enough for the tests' requests.
MAX_BODY_BYTES = 256 * 1024
MAX_ROWS = 100


class Live:
    """The running service: its REST URL and a gRPC client of it."""

    def __init__(self, url: str, target: str) -> None:
        self.url = url
        self.target = target
        self.client = grpcclient.InferenceServerClient(target)

    def tensors(self, rows: int) -> list[dict[str, Any]]:
        """The V2 input tensors of ``rows`` rows (the one-row sample, repeated)."""
        tensors = sample_body(self.url)["inputs"]
        return [
            {**tensor, "shape": [rows, *tensor["shape"][1:]], "data": tensor["data"] * rows}
            for tensor in tensors
        ]

    def rest(self, tensors: list[dict[str, Any]]) -> tuple[int, Any]:
        return call(f"{self.url}{MODEL}/infer", {"inputs": tensors})


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    folder: Path = tmp_path_factory.mktemp("grpc")
    port = free_port()
    environment = {
        "GRPC_PORT": str(port),
        "MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "MAX_ROWS": str(MAX_ROWS),
    }
    with running(folder, **environment) as url:
        service = Live(url, f"127.0.0.1:{port}")
        try:
            yield service
        finally:
            service.client.close()


def infer_inputs(tensors: list[dict[str, Any]]) -> list[grpcclient.InferInput]:
    """The tensors as tritonclient sends them by default: raw_input_contents."""
    inputs = []
    for tensor in tensors:
        dtype = triton_to_np_dtype(tensor["datatype"])
        values = np.array(tensor["data"], dtype=dtype).reshape(tensor["shape"])
        infer_input = grpcclient.InferInput(tensor["name"], tensor["shape"], tensor["datatype"])
        infer_input.set_data_from_numpy(values)
        inputs.append(infer_input)
    return inputs


def same(got: np.ndarray, rest_output: dict[str, Any]) -> None:
    assert list(got.shape) == rest_output["shape"]
    if rest_output["datatype"] == "BYTES":
        assert [value.decode() for value in got.reshape(-1)] == rest_output["data"]
    else:
        np.testing.assert_allclose(got.reshape(-1), rest_output["data"], rtol=1e-6, atol=1e-9)


def test_health_and_metadata_are_reachable(live: Live) -> None:
    assert live.client.is_server_live()
    assert live.client.is_server_ready()
    assert live.client.is_model_ready(NAME)
    assert live.client.is_model_ready(NAME, config.SERVICE_VERSION)
    server = live.client.get_server_metadata()
    assert (server.name, server.version) == (NAME, config.SERVICE_VERSION)
    assert list(server.extensions) == call(f"{live.url}/v2")[1]["extensions"]


def test_model_metadata_is_the_rest_metadata(live: Live) -> None:
    metadata = live.client.get_model_metadata(NAME)
    rest = call(f"{live.url}{MODEL}")[1]
    assert (metadata.name, list(metadata.versions), metadata.platform) == (
        rest["name"],
        rest["versions"],
        rest["platform"],
    )
    pairs = ((metadata.inputs, rest["inputs"]), (metadata.outputs, rest["outputs"]))
    for tensors, rest_tensors in pairs:
        assert [
            {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
            for tensor in tensors
        ] == rest_tensors


@pytest.mark.parametrize("call_name", ["is_model_ready", "get_model_metadata"])
def test_unknown_model_is_not_found(live: Live, call_name: str) -> None:
    with pytest.raises(InferenceServerException) as refused:
        getattr(live.client, call_name)("no-such-model")
    assert refused.value.status() == "StatusCode.NOT_FOUND"
    assert "no-such-model" in refused.value.message()


@pytest.mark.parametrize("rows", [1, 64])
def test_infer_answers_as_rest_does(live: Live, rows: int) -> None:
    tensors = live.tensors(rows)
    status, rest = live.rest(tensors)
    assert status == 200, rest
    result = live.client.infer(NAME, infer_inputs(tensors), request_id="req-7")
    response = result.get_response()
    assert (response.model_name, response.id) == (NAME, "req-7")
    assert [output.name for output in response.outputs] == [out["name"] for out in rest["outputs"]]
    for output in rest["outputs"]:
        same(result.as_numpy(output["name"]), output)


def test_one_requested_output(live: Live) -> None:
    tensors = live.tensors(3)
    rest = live.rest(tensors)[1]["outputs"]
    wanted = rest[-1]["name"]
    result = live.client.infer(
        NAME, infer_inputs(tensors), outputs=[grpcclient.InferRequestedOutput(wanted)]
    )
    assert [output.name for output in result.get_response().outputs] == [wanted]
    same(result.as_numpy(wanted), rest[-1])


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


def contents_request(tensors: list[dict[str, Any]]) -> Any:
    """A request with every value in the typed ``contents`` field (not raw), as the protocol
    allows: what a client without the binary form (grpcurl, say) sends."""
    request = service_pb2.ModelInferRequest(model_name=NAME)
    for tensor in tensors:
        sent = request.inputs.add(
            name=tensor["name"], datatype=tensor["datatype"], shape=tensor["shape"]
        )
        values = tensor["data"]
        if tensor["datatype"] == "BYTES":
            values = [value.encode() for value in values]
        getattr(sent.contents, CONTENTS[tensor["datatype"]]).extend(values)
    return request


def test_values_in_contents_are_answered_in_contents(live: Live) -> None:
    tensors = live.tensors(2)
    rest = live.rest(tensors)[1]["outputs"]
    with grpc.insecure_channel(live.target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        response = stub.ModelInfer(contents_request(tensors), timeout=30)
    assert not response.raw_output_contents
    for output, expected in zip(response.outputs, rest, strict=True):
        assert (output.name, output.datatype, list(output.shape)) == (
            expected["name"],
            expected["datatype"],
            expected["shape"],
        )
        values = list(getattr(output.contents, CONTENTS[output.datatype]))
        if output.datatype == "BYTES":
            assert [value.decode() for value in values] == expected["data"]
        else:
            np.testing.assert_allclose(values, expected["data"], rtol=1e-6, atol=1e-9)


def _refusal(live: Live, tensors: list[dict[str, Any]]) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as refused:
        live.client.infer(NAME, infer_inputs(tensors))
    return refused.value


def test_a_wrong_shape_is_invalid_argument_naming_the_input(live: Live) -> None:
    tensors = live.tensors(2)
    first = tensors[0]
    tensors[0] = {**first, "shape": [*first["shape"], 1]}
    refused = _refusal(live, tensors)
    assert refused.status() == "StatusCode.INVALID_ARGUMENT"
    assert first["name"] in refused.message()
    assert live.rest(tensors)[0] == 400


def test_an_unknown_input_is_invalid_argument_naming_it(live: Live) -> None:
    tensors = live.tensors(1)
    tensors[0] = {**tensors[0], "name": "no_such_input"}
    refused = _refusal(live, tensors)
    assert refused.status() == "StatusCode.INVALID_ARGUMENT"
    assert "no_such_input" in refused.message()


def test_a_wrong_datatype_is_invalid_argument(live: Live) -> None:
    tensors = live.tensors(1)
    other = "FP64" if tensors[0]["datatype"] != "FP64" else "FP32"
    request = contents_request(tensors)
    request.inputs[0].datatype = other
    with grpc.insecure_channel(live.target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(request, timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert other in str(refused.value.details())


def test_too_many_rows_is_resource_exhausted(live: Live) -> None:
    refused = _refusal(live, live.tensors(MAX_ROWS + 1))
    assert refused.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert f"at most {MAX_ROWS}" in refused.message()


def test_a_message_over_max_body_bytes_is_refused(live: Live) -> None:
    request = contents_request(live.tensors(1))
    request.raw_input_contents.append(b"\0" * (MAX_BODY_BYTES + 1))
    with grpc.insecure_channel(live.target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(request, timeout=30)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The service goes on answering.
    assert live.client.infer(NAME, infer_inputs(live.tensors(1))).get_response().outputs


def test_metrics_count_the_calls_by_method_and_code(live: Live) -> None:
    live.client.infer(NAME, infer_inputs(live.tensors(1)))
    tensors = live.tensors(1)
    tensors[0] = {**tensors[0], "name": "no_such_input"}
    _refusal(live, tensors)
    method = 'method="/inference.GRPCInferenceService/ModelInfer"'
    deadline = time.monotonic() + 10
    text = ""
    while time.monotonic() < deadline:
        # Each worker publishes what it counted every half second.
        text = metrics(live.url)
        if f'code="OK",{method}' in text and f'code="INVALID_ARGUMENT",{method}' in text:
            break
        time.sleep(0.2)
    assert f'grpc_requests_total{{code="OK",{method}}}' in text
    assert f'grpc_requests_total{{code="INVALID_ARGUMENT",{method}}}' in text
    assert f"grpc_request_duration_seconds_count{{{method}}}" in text
    assert "model_inference_duration_seconds_count" in text


def metrics(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as answer:
        text: str = answer.read().decode()
        return text
