"""The real `kfts serve` (tiny InceptionTime, on 127.0.0.1) at its limits: request bodies that stop arriving
get 408 and give back their share of the memory budget; ports in use and arguments that cannot start a server
end the command with one line and exit code 2."""

from __future__ import annotations

import select
import socket
import time

import pytest

from helpers import LENGTH, NAME, Server, free_port, run_cli

BODY_TIMEOUT_S = 1
GOOD = {"instances": [[0.5] * LENGTH]}


@pytest.fixture(scope="module")
def server(files):  # noqa: F811 - the imported fixture
    # a budget that two of the largest JSON bodies fill (what decoding them may take: admission.DECODE_EXPANSION)
    server = Server(
        files["model"],
        NAME,
        files["tmp"] / "limits-server.log",
        "--max-payload-mb",
        "1",
        "--max-inflight-mb",
        "40",
        "--body-timeout-s",
        str(BODY_TIMEOUT_S),
    )
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def stalled(port: int, content_length: int) -> socket.socket:
    """A POST whose headers and first byte of body are sent, and nothing more."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(
        f"POST /v1/models/{NAME}:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {content_length}\r\n\r\n{{".encode()
    )
    return s


def read_all(s: socket.socket) -> bytes:
    answer = b""
    while chunk := s.recv(65536):
        answer += chunk
    return answer


def test_a_stalled_body_gets_408_and_gives_back_its_budget(server):
    """Two stalled bodies of the largest size hold the whole budget while they last: each gets 408 and its
    connection closed once no byte came for --body-timeout-s, and the next request is answered."""
    sockets = [stalled(server.http_port, 2**20) for _ in range(2)]
    try:
        for s in sockets:
            answer = read_all(s)  # the server closes the connection after its answer
            assert answer.startswith(b"HTTP/1.1 408"), answer
            assert f"no byte of the request body came for {BODY_TIMEOUT_S} s".encode() in answer
    finally:
        for s in sockets:
            s.close()
    assert server.post(f"/v1/models/{NAME}:predict", GOOD).status_code == 200
    assert "client error 408 POST" in server.log.read_text()


def test_a_trickling_body_gets_408_and_gives_back_its_budget(server):
    """Two bodies of the largest size that come a byte at a time, never --body-timeout-s apart, hold the whole
    budget while they last: once past --body-timeout-s after their first byte they come far slower than the
    least rate, and each gets 408 and its connection closed; the next request is answered."""
    sockets = [stalled(server.http_port, 2**20) for _ in range(2)]
    try:
        deadline = time.monotonic() + 10 * BODY_TIMEOUT_S  # the 408 comes after about one
        answered: list = []
        while len(answered) < len(sockets) and time.monotonic() < deadline:
            answered, _, _ = select.select(sockets, [], [], BODY_TIMEOUT_S / 4)
            for s in set(sockets) - set(answered):
                s.sendall(b" ")
        assert len(answered) == len(sockets), "the trickling bodies are still being read"
        for s in sockets:
            answer = read_all(s)
            assert answer.startswith(b"HTTP/1.1 408"), answer
            assert b"the request body came too slowly" in answer
    finally:
        for s in sockets:
            s.close()
    assert server.post(f"/v1/models/{NAME}:predict", GOOD).status_code == 200


def test_a_second_server_on_a_grpc_port_in_use_fails_in_one_line(server, files):
    """gRPC's SO_REUSEPORT would let the second server start and take a share of the first one's calls."""
    result = run_cli(
        "serve",
        "--model-dir",
        files["model"],
        "--host",
        "127.0.0.1",
        "--http-port",
        free_port(),
        "--grpc-port",
        server.grpc_port,
        timeout=120,
    )
    assert (result.returncode, result.stderr) == (
        2,
        f"error: cannot listen on 127.0.0.1 port {server.grpc_port} (--grpc-port): Address already in use\n",
    )
    assert server.grpc_infer(files["values"][:2])["label"].shape == (2,)


@pytest.fixture
def busy_port():
    """A port that something else listens on."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        yield s.getsockname()[1]


@pytest.mark.parametrize(
    "options, error",
    [
        (["--http-port", "{busy}"], "cannot listen on 127.0.0.1 port {busy} (--http-port): Address already in use"),
        (["--http-port", "99999"], "--http-port must be a port from 1 to 65535, not 99999"),
        (["--grpc-port", "0"], "--grpc-port must be a port from 1 to 65535, not 0"),
        (["--http-port", "{free}", "--grpc-port", "{free}"], "--http-port and --grpc-port are both {free}: each"),
        (["--host", "999.1.1.1"], "--host 999.1.1.1 is not an address: "),
        (["--model-name", ""], "--model-name is empty (''): give a value, or leave it out for its default"),
        (["--model-name", "a/b"], "--model-name 'a/b' cannot be a segment of KServe's paths"),
    ],
    ids=["http port in use", "port over 65535", "port 0", "same ports", "no such host", "empty name", "name with /"],
)
def test_a_server_that_cannot_start_says_why_in_one_line(files, busy_port, options, error):
    free = free_port()
    options = [o.format(busy=busy_port, free=free) for o in options]
    ports = ["--http-port", str(free_port()), "--grpc-port", str(free_port())]
    result = run_cli("serve", "--model-dir", files["model"], "--host", "127.0.0.1", *ports, *options, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: {error.format(busy=busy_port, free=free)}"), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
