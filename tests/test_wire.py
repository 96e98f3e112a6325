"""The arbiter's transport: frames, when a reader spins, and a log that must never stop it."""

from __future__ import annotations

import io
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import daxfs
from daxfs.adapters import wire
from daxfs.adapters.server import Server

def test_a_polling_reader_gets_every_frame_whether_it_came_early_or_late() -> None:
    a, b = wire.socket.socketpair()
    try:
        for spin_s in (1.0, 1e-9):          # polls until it comes; gives up polling at once
            reader = wire.FrameReader(b, 1 << 20, spin_s)
            a.sendall(wire.pack(["early", spin_s]))
            assert reader.next() == ["early", spin_s]
            go = threading.Event()
            big = b"x" * (300 << 10)        # several recvs' worth
            sender = threading.Thread(target=lambda: (go.wait(), a.sendall(wire.pack(["late", big]))))
            sender.start()
            go.set()
            assert reader.next() == ["late", big]
            sender.join()
    finally:
        a.close()
        b.close()


def test_frames_pop_whole_or_not_at_all() -> None:
    a, b = wire.socket.socketpair()
    try:
        reader = wire.FrameReader(b, 1 << 10)
        data = wire.pack([1, "stat", ["/x"]]) + wire.pack([2, "stat", ["/y"]])
        reader.feed(data[:3])
        assert not reader.pending() and reader.pop() is wire.NOTHING
        reader.feed(data[3:len(data) - 1])
        assert reader.pending() and reader.pop() == [1, "stat", ["/x"]]
        assert not reader.pending() and reader.pop() is wire.NOTHING
        a.sendall(data[-1:])
        assert reader.next() == [2, "stat", ["/y"]]      # next reads the missing byte
        reader.feed(wire.LENGTH.pack(1 << 11))
        assert reader.pending()                          # over the limit: pop must say so
        with pytest.raises(wire.ProtocolError):
            reader.pop()
    finally:
        a.close()
        b.close()


class _StuckStream(io.TextIOBase):
    """A log nobody drains: every write blocks until released (a full stderr pipe)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.writing = threading.Event()    # the writer is inside write(), stuck
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        self.writing.set()
        self.release.wait()
        self.lines.append(text)
        return len(text)


def test_a_log_nobody_reads_never_stops_the_arbiter(shm_pool: str) -> None:
    log = _StuckStream()
    server = Server(shm_pool, log=log)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for i in range(3):              # each connection logs two lines; the log is stuck
            with daxfs.connect(shm_pool, name=f"c{i}") as client:
                client.mkdir(f"/d{i}")
                assert client.listdir("/") == [f"d{j}" for j in range(i + 1)]
        assert log.lines == []
    finally:
        log.release.set()
        assert server.stop()
        thread.join(5)
    text = "".join(log.lines)
    assert "daxfs serve: serving" in text and "c2" in text and text.rstrip().endswith("stopped")


def test_log_lines_past_the_backlog_are_counted_not_kept(shm_pool: str, monkeypatch: Any) -> None:
    import daxfs.adapters.server as server_module

    monkeypatch.setattr(server_module, "LOG_BACKLOG", 3)
    log = _StuckStream()
    server = Server(shm_pool, log=log)
    try:
        server.log("line 0")
        assert log.writing.wait(5)      # the writer took line 0 and is stuck writing it
        for i in range(1, 10):
            server.log(f"line {i}")
        log.release.set()
        server.flush_log()
        written = [line for line in "".join(log.lines).splitlines() if line]
        # Three lines waited behind the stuck one; the other six were counted, not kept.
        assert written == ["daxfs serve: line 0",
                           "daxfs serve: (6 log line(s) dropped: the log was not read)",
                           "daxfs serve: line 1", "daxfs serve: line 2", "daxfs serve: line 3"]
    finally:
        log.release.set()
        server.stop()


def test_clients_that_read_their_replies_cost_the_arbiter_no_thread(served_pool: str) -> None:
    before = {t.name for t in threading.enumerate()}
    clients = [daxfs.connect(served_pool, name=f"c{i}") for i in range(20)]
    try:
        for i, client in enumerate(clients):
            client.mkdir(f"/d{i}")
            assert client.stat(f"/d{i}").st_mode & 0o040000
        started = {t.name for t in threading.enumerate()} - before
        assert not [name for name in started if name.startswith("daxfs-session")]
    finally:
        for client in clients:
            client.close()


def _raw_client(pool: str) -> tuple[Any, wire.FrameReader]:
    """A connection speaking the wire format by hand (so requests can be pipelined)."""
    sock = wire.socket.socket(wire.socket.AF_UNIX, wire.socket.SOCK_STREAM)
    sock.connect(pool + ".sock")
    wire.send(sock, [1, "hello", {"name": "raw"}])
    reader = wire.FrameReader(sock, wire.MAX_REPLY)
    hello, fds = wire.recv_with_fds(sock, reader, 3)
    for fd in fds:
        os.close(fd)
    assert hello[1] == "ok"
    return sock, reader


def eventually(check: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def _call(sock: Any, reader: wire.FrameReader, rid: int, op: str, *args: Any) -> Any:
    sock.sendall(wire.pack([rid, op, list(args)]))
    reply = reader.next()
    assert reply[0] == rid and reply[1] == "ok", reply
    return reply[2]


def test_a_request_that_waits_leaves_the_ones_read_with_it_to_the_next_loop(served_pool: str) -> None:
    """A truncate that waits for a pin, and the release of that pin, arrive in one piece:
    the loop that blocks in the truncate must leave the release to its successor."""
    sock, reader = _raw_client(served_pool)
    try:
        h = _call(sock, reader, 2, "open", "/f", "w+b", None, 0o022, True)["h"]
        assert _call(sock, reader, 3, "pwrite", h, b"x" * 8192, 0) == 8192
        r = _call(sock, reader, 4, "pin", h, 0, 4096, False, None)["r"]
        sock.sendall(wire.pack([5, "truncate", [h, 0, "wait", 10.0]]) + wire.pack([0, "release", [r, True]])
                     + wire.pack([0, "release_blocks", [r]]))
        assert reader.next() == [5, "ok", 0]          # not BusyError after 10 s
        with daxfs.connect(served_pool) as other:
            assert other.stat("/f").st_size == 0 and other.pins() == []
    finally:
        sock.close()


def test_a_half_sent_request_keeps_no_one_else_waiting(served_pool: str) -> None:
    sock, reader = _raw_client(served_pool)
    try:
        frame = wire.pack([2, "mkdir", ["/slow", 0o755, False, False, 0o022]])
        sock.sendall(frame[:7])                       # the rest comes later
        with daxfs.connect(served_pool) as other:
            other.mkdir("/fast")
            assert other.listdir("/") == ["fast"]
        sock.sendall(frame[7:])
        assert reader.next() == [2, "ok", None]
        with daxfs.connect(served_pool) as other:
            assert sorted(other.listdir("/")) == ["fast", "slow"]
    finally:
        sock.close()


def _flood(pool: str, batches: int, sent: Any, started: Any, stop: Any) -> None:
    """Another process: keeps up to ``batches`` x 100 stat requests coming until ``stop``,
    reading every reply."""
    sock, reader = _raw_client(pool)
    batch = b"".join(wire.pack([3, "stat", ["/"]]) for _ in range(100))
    # The requests sent, as the sender sends them, then 0 when it is done: the reader waits
    # for a reply only when one is due (a reader that waited while the sender was between
    # its last send and its stop would wait forever).
    due: queue.SimpleQueue[int] = queue.SimpleQueue()

    def send() -> None:
        try:
            for _ in range(batches):
                if stop.is_set():
                    break
                sock.sendall(batch)
                sent.value += 100
                due.put(100)
        finally:
            due.put(0)

    sender = threading.Thread(target=send)
    sender.start()
    got = 0
    while n := due.get():
        for _ in range(n):
            assert reader.next()[1] == "ok"
            got += 1
            if got == 1:
                started.set()
    sender.join()
    sock.close()


def test_a_client_that_floods_requests_does_not_starve_the_others(served_pool: str) -> None:
    """The loop takes each ready client in turn, a socket's worth at a time: another client's
    ten requests are answered while a process keeps requests coming (it would take the
    arbiter tens of seconds to answer all it may send; it stops once ours are done)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    sent, started, stop = ctx.Value("q", 0), ctx.Event(), ctx.Event()
    batches = 50_000
    flooder = ctx.Process(target=_flood, args=(served_pool, batches, sent, started, stop))
    flooder.start()
    try:
        assert started.wait(60)
        with daxfs.connect(served_pool, name="other") as other:
            for i in range(10):
                other.mkdir(f"/other{i}")
            assert len(other.listdir("/")) == 10
    finally:
        stop.set()
        flooder.join(300)
    assert flooder.exitcode == 0
    assert sent.value < batches * 100        # ours were answered before the flood ran out


# ---------------------------------------------------------------- a close that rides on the last write


def _error(sock: Any, reader: wire.FrameReader, rid: int, op: str, *args: Any) -> BaseException:
    sock.sendall(wire.pack([rid, op, list(args)]))
    reply = reader.next()
    assert reply[0] == rid and reply[1] == "err", reply
    return wire.decode_error(reply[2])


def test_a_write_that_closes_replies_then_closes_the_file_failed_or_not(served_pool: str) -> None:
    sock, reader = _raw_client(served_pool)
    try:
        h = _call(sock, reader, 2, "open", "/f", "wb", None, 0o022, True)["h"]
        assert _call(sock, reader, 3, "pwrite", h, b"abc", 0, True) == 3
        assert _error(sock, reader, 4, "pwrite", h, b"x", 0).errno == 9       # closed: EBADF
        # a write that fails still closes its file (as close() does when its flush fails)
        h = _call(sock, reader, 5, "open", "/g", "wb", None, 0o022, True)["h"]
        assert isinstance(_error(sock, reader, 6, "pwrite", h, "not bytes", 0, True), TypeError)
        assert _error(sock, reader, 7, "pwrite", h, b"x", 0).errno == 9
        # a malformed flag is refused before anything happens: the file stays open
        h = _call(sock, reader, 8, "open", "/h", "wb", None, 0o022, True)["h"]
        assert isinstance(_error(sock, reader, 9, "pwrite", h, b"x", 0, 1), TypeError)
        assert _call(sock, reader, 10, "pwrite", h, b"yz", 0) == 2
        # the close frees an orphan's blocks, as a close sent alone does
        with daxfs.connect(served_pool) as other:
            free = other.statfs().f_bfree
            h = _call(sock, reader, 11, "open", "/o", "wb", None, 0o022, True)["h"]
            assert _call(sock, reader, 12, "pwrite", h, b"o" * 40960, 0) == 40960
            other.unlink("/o")
            assert other.statfs().f_bfree == free - 10          # an orphan, held by the handle
            assert _call(sock, reader, 13, "pwrite", h, b"p", 0, True) == 1
            assert other.statfs().f_bfree == free
            assert other.open("/f", "rb").read() == b"abc" and other.open("/h", "rb").read() == b"yz"
    finally:
        sock.close()


def test_open_for_writing_only_may_leave_the_layout_to_later(served_pool: str) -> None:
    sock, reader = _raw_client(served_pool)
    try:
        opened = _call(sock, reader, 2, "open", "/f", "wb", None, 0o022, True, False)
        assert opened["layout"] is None
        assert _call(sock, reader, 3, "layout", opened["h"])["stat"]       # asked for, it comes
        assert _call(sock, reader, 4, "open", "/f", "rb", None, 0o022, True)["layout"]["stat"]
        assert isinstance(_error(sock, reader, 5, "open", "/f", "wb", None, 0o022, True, "no"), TypeError)
    finally:
        sock.close()


class _Requests:
    """Counts the writes and closes an in-process arbiter serves (patched into Requests)."""

    def __init__(self, monkeypatch: Any, fail: bool = False) -> None:
        from daxfs.adapters.requests import Requests

        self.writes: list[bool] = []        # each write's ``close`` flag
        self.closes = 0
        pwrite, close = Requests.op_pwrite, Requests.op_close

        def op_pwrite(this: Any, rid: int, h: object, data: object, offset: object, close: object = False) -> Any:
            self.writes.append(close)  # type: ignore[arg-type]
            if fail:
                data = "not bytes"      # the write fails (TypeError), as ENOSPC would
            return pwrite(this, rid, h, data, offset, close)

        def op_close(this: Any, rid: int, h: object) -> Any:
            self.closes += 1
            return close(this, rid, h)

        monkeypatch.setattr(Requests, "op_pwrite", op_pwrite)
        monkeypatch.setattr(Requests, "op_close", op_close)


@pytest.fixture
def arbiter(shm_pool: str) -> Iterator[Callable[..., Server]]:
    """Starts an arbiter of ``shm_pool`` on a thread of this process (so its state can be
    looked at), with the options given; stopped after the test."""
    started: list[tuple[Server, threading.Thread]] = []

    def start(**options: Any) -> Server:
        server = Server(shm_pool, log=None, **options)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        started.append((server, thread))
        return server

    yield start
    for server, thread in started:
        server.stop()
        thread.join(5)


def test_a_buffered_client_file_closes_with_its_last_write(
        shm_pool: str, arbiter: Callable[..., Server], monkeypatch: Any) -> None:
    counted = _Requests(monkeypatch)
    server = arbiter()
    with daxfs.connect(shm_pool) as c:
        with c.open("/a", "xb") as f:
            f.write(b"hello")
        assert counted.writes == [True] and counted.closes == 0
        c.stat("/")         # the close follows the write's reply; whatever comes next sees it
        assert not server.volume.namespace.open_files          # closed there, by the write
        with c.open("/a", "rb") as f:
            assert f.read() == b"hello"
        # nothing to flush (or a file read): the close goes alone
        c.open("/b", "wb").close()
        c.stat("/")         # (a close sent alone is not waited for)
        assert counted.writes == [True] and counted.closes == 2
        # a write-only file's stat, size and end come from the layout it fetches when asked
        f = c.open("/a", "ab")
        f.write(b"!")
        f.flush()
        assert f.stat().st_size == 6 and f.seek(0, os.SEEK_END) == 6 and f.tell() == 6
        f.close()
        c.stat("/")
        assert counted.writes == [True, False] and counted.closes == 3
        # an older arbiter (protocol 1) is sent the close on its own
        c.version = 1
        with c.open("/c", "wb") as f:
            f.write(b"old")
        c.stat("/")
        assert counted.writes == [True, False, False] and counted.closes == 4


def test_a_close_whose_write_fails_raises_and_leaves_the_file_closed(
        shm_pool: str, arbiter: Callable[..., Server], monkeypatch: Any) -> None:
    counted = _Requests(monkeypatch, fail=True)
    server = arbiter()
    with daxfs.connect(shm_pool) as c:
        f = c.open("/a", "wb")
        f.write(b"lost")
        with pytest.raises(TypeError):
            f.close()
        assert f.closed and counted.writes == [True] and counted.closes == 0
        c.stat("/")
        assert not server.volume.namespace.open_files
        assert c.stat("/a").st_size == 0


def test_a_close_interrupted_before_its_flush_leaves_later_writes_plain(
        shm_pool: str, arbiter: Callable[..., Server], monkeypatch: Any) -> None:
    """^C (or any error) between marking the file closing and the flush: the file stays
    open, and a later ordinary flush must not close it on the arbiter."""
    from daxfs.adapters.client_files import ClientFile

    server = arbiter()
    with daxfs.connect(shm_pool) as c:
        f = c.open("/a", "wb")
        f.write(b"x")
        closing = ClientFile.closing

        def interrupted(self: ClientFile, on: bool) -> None:
            closing(self, on)
            if on:
                raise KeyboardInterrupt
        monkeypatch.setattr(ClientFile, "closing", interrupted)
        with pytest.raises(KeyboardInterrupt):
            f.close()
        monkeypatch.setattr(ClientFile, "closing", closing)
        assert not f.closed
        f.write(b"y")
        f.flush()                   # an ordinary flush: the file stays open
        c.stat("/")
        assert len(server.volume.namespace.open_files) == 1
        f.write(b"z")
        f.close()
        assert c.open("/a", "rb").read() == b"xyz"


def test_a_closing_write_interrupted_before_it_is_sent_still_closes_the_file(
        shm_pool: str, arbiter: Callable[..., Server], monkeypatch: Any) -> None:
    server = arbiter()
    with daxfs.connect(shm_pool) as c:
        f = c.open("/a", "wb")
        f.write(b"x")
        call = type(c).call

        def interrupted(self: Any, op: str, *args: Any) -> Any:
            if op == "pwrite" and args[-1] is True:
                raise KeyboardInterrupt     # before anything was sent
            return call(self, op, *args)
        monkeypatch.setattr(type(c), "call", interrupted)
        with pytest.raises(KeyboardInterrupt):
            f.close()
        monkeypatch.setattr(type(c), "call", call)
        assert f.closed
        c.stat("/")
        assert not server.volume.namespace.open_files     # the close went alone


def test_the_request_after_a_closing_write_that_waited_sees_the_file_closed(
        shm_pool: str, arbiter: Callable[..., Server], monkeypatch: Any) -> None:
    """A closing write that waits (copy on write under the "wait" policy, the block pinned)
    hands the loop to another thread, which serves the client's next request: by then the
    file must be closed, however late the waiting thread runs."""
    from daxfs.access import file as file_module

    server = arbiter(policy="wait")
    sock = None
    try:
        with daxfs.connect(shm_pool) as c:
            with c.open("/f", "wb", buffering=0) as f:
                f.write(b"a" * 4096)
            c.clone_file("/f", "/g")            # /f's block is shared: a write copies it
            pinned = c.open("/f", "rb", buffering=0)
            pin = pinned.pin(0, 4096)
            pinned.close()
            sock, reader = _raw_client(shm_pool)
            h = _call(sock, reader, 2, "open", "/f", "r+b", None, 0o022, True)["h"]
            close = file_module.File.close

            def late_close(self: Any) -> None:  # the waiting thread, descheduled a while
                time.sleep(0.3)
                close(self)
            monkeypatch.setattr(file_module.File, "close", late_close)
            owner = server._loop_owner
            sock.sendall(wire.pack([3, "pwrite", [h, b"z" * 10, 0, True]]))
            assert eventually(lambda: server._loop_owner is not owner)      # it waits; the loop moved on
            pin.release()
            assert reader.next() == [3, "ok", 10]
            sock.sendall(wire.pack([4, "stat", ["/"]]))
            assert reader.next()[1] == "ok"
            assert not server.volume.namespace.open_files     # closed before that was answered
            monkeypatch.setattr(file_module.File, "close", close)
    finally:
        if sock is not None:
            sock.close()


def test_the_loop_stops_looking_for_a_request_once_a_yield_gives_its_cpu_away(
        shm_pool: str, arbiter: Callable[..., Server], monkeypatch: Any) -> None:
    """Between requests the loop polls for the client's next one, yielding the CPU each turn;
    a yield that comes back late means another task took the CPU (more runnable tasks than
    CPUs): the loop then sleeps instead, rather than keep taking the CPU from it."""
    import subprocess
    import sys

    import daxfs.adapters.server as server_module

    yields: list[int] = []

    class SlowYield:
        """``os`` for the server module, whose sched_yield comes back after 30 µs (the CPU
        given away a while; the loop looks for a request for 100 µs)."""

        def __getattr__(self, name: str) -> Any:
            return getattr(os, name)

        @staticmethod
        def sched_yield() -> None:
            yields.append(1)
            until = time.perf_counter() + 30e-6
            while time.perf_counter() < until:
                pass

    monkeypatch.setattr(server_module, "os", SlowYield())
    arbiter()
    requests = 50
    script = ("import daxfs, sys, time\n"
              "c = daxfs.connect(sys.argv[1])\n"
              f"for _ in range({requests}):\n"
              "    c.stat('/')\n"
              "    time.sleep(0.0002)\n"       # the next request comes after the loop's first yield
              "c.close()\n")
    done = subprocess.run([sys.executable, "-c", script, shm_pool], timeout=120, capture_output=True)
    assert done.returncode == 0, done.stderr
    # one yield a served request at most (before: a yield each turn for 100 µs, four)
    assert 0 < len(yields) <= requests + 5
