"""The arbiter's wire format: length-prefixed msgpack frames on a Unix stream socket.

A frame is a 4-byte little-endian length and a msgpack body.  Requests are
``[id, op, args]``; replies ``[id, "ok", result]`` or ``[id, "err", error]``;
the server's own messages (a lease to break, blocks to show, a revocation)
are ``[0, "event", body]``.  File descriptors (the pool, the change table,
the holder table) travel once, with the server's first frame (SCM_RIGHTS).

The hello's reply carries the protocol version: 2 adds a write that also closes its
file (``pwrite``'s ``close``) and an open that leaves the layout to later; a client
asks for neither of an arbiter that says 1, and an arbiter serves a client that never
asks as before.

Errors cross as their class name, errno, message and filenames, and come back
as the same exception type with the same errno, so a client raises exactly
what an embedded volume would.  Anything that does not decode is the
sender's fault: the connection is dropped, never the server.
"""

from __future__ import annotations

import errno as errno_mod
import os
import socket
import struct
import threading
from time import perf_counter
from typing import Any

import msgpack

from daxfs.errors import BusyError, CorruptVolumeError, InvalidPathError, PoisonError
from daxfs.volume.holders import side_path

LENGTH = struct.Struct("<I")
MAX_REQUEST = 1 << 20           # a client's frame: metadata and inline writes only
MAX_REPLY = 256 << 20           # a server's frame (a listing of a huge directory)
INLINE_WRITE = 64 * 1024        # writes up to this size travel in the request

# Busy-waiting before sleeping in recv.  Waking a process that sleeps on another CPU
# costs tens of microseconds on many machines (35 µs each way on the 2-core VMs these
# numbers come from: a Python echo between two processes takes 70 µs, 6 µs when the
# reader polls), several times the arbiter's own work per request.  So a client waiting
# for its reply polls the socket for up to SPIN_REPLY_S first (and the arbiter, for the
# next request of a client it has just answered: server.SPIN_REQUEST_S), yielding the
# CPU between polls to anything runnable, which on a busy machine is often the other
# side.  One thread per process polls at a time (the others sleep, leaving the CPU and
# the GIL to work).  Measured on 2 cores, quiet: stat by path 24 µs polling, 100 µs not;
# with one CPU taken by another program: 46 µs polling, 40 µs not (a learning poller, which
# chose by the waits it saw, was no better loaded and worse quiet).  DAXFS_SPIN_US=0
# turns polling off; a number sets the client's window (µs).
_SPIN_ENV = os.environ.get("DAXFS_SPIN_US", "")
SPIN_REPLY_S = (float(_SPIN_ENV) if _SPIN_ENV.replace(".", "", 1).isdigit() else 250.0) * 1e-6
_spinning = threading.Lock()     # one spinner per process


NOTHING: Any = object()         # FrameReader.pop: no whole frame buffered yet


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame: drop the connection."""


class ServerLost(ConnectionError):
    """The arbiter went away (exited, was killed, or dropped this connection)."""


def default_socket(pool: str) -> str:
    """Where ``daxfs serve POOL`` listens unless told otherwise: next to a pool file
    (``POOL.sock``); for a device, in ``/run/daxfs`` (``/run/daxfs/dax0.0.sock``)."""
    return side_path(pool, ".sock")


def pack(message: Any) -> bytes:
    body = msgpack.packb(message, use_bin_type=True, unicode_errors="surrogateescape")
    return LENGTH.pack(len(body)) + body


def send(sock: socket.socket, message: Any, fds: list[int] | None = None) -> None:
    data = pack(message)
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.sendall(data)


class FrameReader:
    """Frames from a stream socket, read in large pieces (one recv often brings several
    frames, or a whole one with its length: a syscall per frame saved on every call).
    Not thread-safe: one reader at a time."""

    def __init__(self, sock: socket.socket, limit: int, spin_s: float = 0.0) -> None:
        self.sock = sock
        self.limit = limit
        self._buf = bytearray()
        self.spin_s = spin_s            # how long a recv polls before it sleeps

    def feed(self, data: bytes) -> None:
        self._buf += data

    def pending(self) -> bool:
        """Whether a whole frame (or one over the limit) is already buffered: ``pop`` needs
        no recv for it."""
        buf = self._buf
        if len(buf) < LENGTH.size:
            return False
        (length,) = LENGTH.unpack_from(buf)
        return len(buf) >= LENGTH.size + length or length > self.limit

    def pop(self) -> Any:
        """The next buffered frame's message, or NOTHING if no whole frame is buffered
        (never reads the socket); ProtocolError for a frame over the limit or garbage."""
        buf = self._buf
        if len(buf) < LENGTH.size:
            return NOTHING
        (length,) = LENGTH.unpack_from(buf)
        if length > self.limit:
            raise ProtocolError(f"frame of {length} bytes is over the limit of {self.limit}")
        end = LENGTH.size + length
        if len(buf) < end:
            return NOTHING
        body = bytes(buf[LENGTH.size:end])
        del buf[:end]
        return unpack(body)

    def next(self) -> Any:
        """The next frame's message, reading the socket as needed; EOFError at a clean end,
        ProtocolError for garbage."""
        buf = self._buf
        while True:
            message = self.pop()
            if message is not NOTHING:
                return message
            missing = (LENGTH.size if len(buf) < LENGTH.size else LENGTH.size + LENGTH.unpack_from(buf)[0]) \
                - len(buf)
            chunk = self._recv(max(missing, 1 << 16))
            if not chunk:
                raise EOFError("peer closed the connection")
            buf += chunk

    def _recv(self, size: int) -> bytes:
        if self.spin_s and _spinning.acquire(blocking=False):
            sock = self.sock
            try:
                t0 = perf_counter()
                while perf_counter() - t0 < self.spin_s:
                    try:
                        return sock.recv(size, socket.MSG_DONTWAIT)
                    except BlockingIOError:
                        os.sched_yield()
            finally:
                _spinning.release()
        return self.sock.recv(size)


def recv(sock: socket.socket, limit: int) -> Any:
    """One frame's message, read exactly (no bytes of the next frame are taken)."""
    head = _recv_exact(sock, LENGTH.size)
    (length,) = LENGTH.unpack(head)
    if length > limit:
        raise ProtocolError(f"frame of {length} bytes is over the limit of {limit}")
    return unpack(_recv_exact(sock, length))


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise EOFError("peer closed the connection")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def recv_with_fds(sock: socket.socket, reader: FrameReader, max_fds: int) -> tuple[Any, list[int]]:
    """The first frame, with the descriptors that came with it (what follows it stays in
    ``reader``)."""
    data, fds, _flags, _addr = socket.recv_fds(sock, 1 << 16, max_fds)
    if not data:
        raise EOFError("peer closed the connection")
    reader.feed(data)
    return reader.next(), list(fds)


def unpack(body: bytes) -> Any:
    try:
        return msgpack.unpackb(body, raw=False, unicode_errors="surrogateescape", strict_map_key=False)
    except Exception as exc:
        raise ProtocolError(f"frame does not decode ({exc})") from None


# ---------------------------------------------------------------- errors across the wire

_PLAIN = {cls.__name__: cls for cls in (TypeError, ValueError, OverflowError, KeyError, IndexError,
                                        NotImplementedError, RuntimeError)}


def encode_error(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, OSError):
        out: dict[str, Any] = {"type": type(exc).__name__, "errno": exc.errno,
                               "strerror": exc.strerror if exc.strerror is not None else str(exc),
                               "filename": _text(exc.filename), "filename2": _text(exc.filename2)}
        if isinstance(exc, BusyError):
            out["holders"] = [h if isinstance(h, (int, str)) else str(h) for h in exc.holders]
        if isinstance(exc, CorruptVolumeError):
            out["what"], out["where"] = exc.what, exc.where
        if isinstance(exc, PoisonError):
            out["pool_offset"], out["length"] = exc.pool_offset, exc.length
            out["file_offset"] = exc.file_offset
        return out
    name = type(exc).__name__ if type(exc).__name__ in _PLAIN else "RuntimeError"
    return {"type": name, "message": str(exc)}


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else os.fsdecode(value) if isinstance(value, bytes) else str(value)


def decode_error(error: Any) -> BaseException:
    """The exception a reply's error stands for (a garbled one is an EIO OSError)."""
    if not isinstance(error, dict):
        return OSError(errno_mod.EIO, "malformed error from the server")
    kind = error.get("type")
    if kind in _PLAIN:
        return _PLAIN[kind](error.get("message", ""))
    code = error.get("errno")
    text = error.get("strerror") or ""
    filename, filename2 = error.get("filename"), error.get("filename2")
    if kind == "BusyError":
        return BusyError(text, holders=error.get("holders") or [], filename=filename)
    if kind == "CorruptVolumeError":
        exc = CorruptVolumeError(str(error.get("what") or text), where=error.get("where"))
        return exc
    if kind == "PoisonError":
        return PoisonError(text, pool_offset=error.get("pool_offset"), length=error.get("length"),
                           filename=filename, file_offset=error.get("file_offset"))
    if kind == "InvalidPathError":
        return InvalidPathError(code, text, filename)
    if not isinstance(code, int):
        return OSError(errno_mod.EIO, text or "error from the server")
    if filename2 is not None:
        return OSError(code, text, filename, None, filename2)
    if filename is not None:
        return OSError(code, text, filename)     # OSError picks FileNotFoundError etc. from errno
    return OSError(code, text)
