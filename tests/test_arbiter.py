"""The seeds across processes: an arbiter (``daxfs serve`` in its own process), client A in
this process, client B (and C) in processes of their own.

- B pins or maps a range; A truncates, punches, zero-ranges or unlinks it: under ``defer`` the
  change happens now and B's blocks stay busy until B lets go or dies; ``wait`` blocks A until
  B lets go (new pins on the range are refused meanwhile, every other client is still served,
  and a timeout is BusyError); ``break`` runs B's ``on_break`` in B and, if B keeps its lease,
  B's client library migrates the mapping (B's array keeps its bytes); ``refuse`` changes nothing.
- B maps a file whose last name A unlinks: the name goes at once, the blocks when B does.
- A client stopped (SIGSTOP) through a lease break keeps its blocks busy, never reused.
- The arbiter refuses to stop while clients hold references; killed, its clients get
  ServerLost, their mappings are migrated, and a new arbiter never reuses a block a living
  client of the old one still pins.
- Clients killed with SIGKILL holding pins, mappings and leases leave nothing referenced.
- The arbiter killed mid-workload: restarted, fsck is clean and every acknowledged write is there.
- vol.pins() names each holder with its pid and uid.
"""

from __future__ import annotations

import errno
import gc
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import daxfs
from daxfs.adapters.wire import ServerLost
from daxfs.volume import repair

sys.path.insert(0, os.path.dirname(__file__))
from _forked_child import child_reading_later, reap  # noqa: E402
from _puppet import Puppet, PuppetError  # noqa: E402

BS = 4096
POOL_SIZE = 64 << 20
SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def eventually(check: Callable[[], bool], tries: int = 2000, delay: float = 0.005) -> bool:
    """Poll ``check`` a bounded number of times (the outcome is asserted, never a duration)."""
    for _ in range(tries):
        if check():
            return True
        time.sleep(delay)
    return check()


class ServerProcess:
    def __init__(self, pool: str, *args: str) -> None:
        self.pool = pool
        env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen([sys.executable, "-m", "daxfs", "serve", pool, *args],
                                     stderr=subprocess.PIPE, text=True, env=env)
        sock = pool + ".sock"

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daxfs serve exited: {self.proc.stderr.read()}")  # type: ignore[union-attr]
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(sock)
                return True
            except OSError:
                return False
            finally:
                probe.close()
        assert eventually(ready)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(30)
        self.proc.stderr.close()  # type: ignore[union-attr]
        return code


@pytest.fixture
def pool() -> Iterator[str]:
    path = f"/dev/shm/daxfs-arbiter-{os.getpid()}-{uuid.uuid4().hex}.pool"
    daxfs.mkfs(path, POOL_SIZE).close()
    yield path
    for leftover in (path, path + ".sock", path + ".holders"):
        if os.path.exists(leftover):
            os.unlink(leftover)


@pytest.fixture
def serve(pool: str) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(*args: str) -> ServerProcess:
        server = ServerProcess(pool, *args)
        started.append(server)
        return server
    yield start
    for server in started:
        if server.proc.poll() is None:
            server.stop(signal.SIGKILL)


@pytest.fixture
def puppets(pool: str) -> Iterator[Callable[[str], Puppet]]:
    made: list[Puppet] = []

    def make(name: str) -> Puppet:
        puppet = Puppet(pool, name)
        made.append(puppet)
        return puppet
    yield make
    for puppet in made:
        puppet.quit()


@pytest.fixture
def client(pool: str, serve: Callable[..., ServerProcess]) -> Iterator[Any]:
    serve("--lease-break-s", "0.3")
    a = daxfs.connect(pool, name="A")
    yield a
    if not a.closed:
        a.close(force=True, timeout=1)


def _file(vol: Any, path: str, nblocks: int = 8, fill: bytes = b"d") -> None:
    with vol.open(path, "wb", buffering=0) as f:
        f.write(fill * (nblocks * BS))


def _clean(vol: Any) -> None:
    fs = vol.statfs()
    assert fs.free + fs.used + fs.busy + fs.bad == fs.size
    assert vol.fsck() == []


def _change(vol: Any, change: str, policy: str | None = None, timeout: float | None = None) -> None:
    if change == "unlink":
        vol.unlink("/f", policy=policy)
        return
    with vol.open("/f", "r+b", buffering=0) as f:
        if change == "truncate":
            f.truncate(BS, policy=policy, timeout=timeout)
        elif change == "punch_hole":
            f.punch_hole(2 * BS, 4 * BS, policy=policy, timeout=timeout)
        else:
            f.zero_range(2 * BS, 4 * BS)


# ---------------------------------------------------------------- defer

@pytest.mark.parametrize("kind", ["pin", "map"])
@pytest.mark.parametrize("change", ["truncate", "punch_hole", "zero_range", "unlink"])
def test_defer_changes_now_blocks_stay_busy_until_the_other_process_lets_go(
        kind: str, change: str, client: Any, puppets: Callable[[str], Puppet]) -> None:
    a = client
    _file(a, "/f")
    b = puppets("B")
    b.run("f = c.open('/f', 'rb', buffering=0)")
    b.run("r = f.pin(2 * 4096, 4 * 4096)" if kind == "pin" else "r = f.map(2 * 4096, 4 * 4096)")
    _change(a, change, "defer")
    if change == "unlink":
        assert not a.exists("/f")                            # the name goes at once
    elif change != "zero_range":                             # zero_range zeroes referenced blocks in place
        assert a.statfs().busy == 4 * BS
    # B still shows its bytes (or, for zero_range, the zeros written in place): never another file's
    want = "" if change == "zero_range" else "dddd"
    assert b.eval("bytes(r.buffer[:4]).replace(b'\\0', b'').decode()") == want
    _file(a, "/other", 200, b"o")                            # allocation never takes B's blocks
    assert b.eval("bytes(r.buffer[:4]).replace(b'\\0', b'').decode()") == want
    b.run("r.release()" if kind == "pin" else "r.close()")
    b.run("f.close()")
    assert eventually(lambda: a.statfs().busy == 0)
    _clean(a)


def test_defer_blocks_of_a_killed_holder_are_freed(client: Any, puppets: Callable[[str], Puppet]) -> None:
    a = client
    _file(a, "/f")
    b = puppets("B")
    b.run("f = c.open('/f', 'rb', buffering=0); p = f.pin(0, 8 * 4096); m = f.map(0, 4096, lease=True)")
    with a.open("/f", "r+b", buffering=0) as f:
        f.truncate(4 * BS)                                  # half the pinned blocks leave the file
    a.unlink("/f")                                          # and the rest live on in an orphan
    assert a.statfs().busy == 4 * BS and a.statfs().used == 4 * BS
    assert {(i.holder, i.kind, i.path) for i in a.pins()} == {("B", "pin", None), ("B", "lease", None)}
    b.kill()
    assert eventually(lambda: a.statfs().busy == 0 and a.statfs().used == 0 and a.pins() == [])
    _clean(a)


# ---------------------------------------------------------------- wait

def test_wait_blocks_until_the_other_process_releases_and_serves_everyone_meanwhile(
        client: Any, puppets: Callable[[str], Puppet], pool: str) -> None:
    a = client
    _file(a, "/f")
    b = puppets("B")
    b.run("f = c.open('/f', 'rb', buffering=0); p = f.pin(2 * 4096, 4096)")
    done = threading.Event()
    errors: list[BaseException] = []

    def truncate() -> None:
        try:
            with daxfs.connect(pool, name="A-waiter") as waiter:
                _change(waiter, "truncate", "wait")
        except BaseException as exc:        # reported below
            errors.append(exc)
        done.set()

    worker = threading.Thread(target=truncate)
    worker.start()
    # The waiting truncate refuses new pins on its range: that is how we know it waits.
    assert eventually(lambda: _pin_refused(b))
    assert not done.is_set()
    c = puppets("C")                                          # another client is served meanwhile
    assert c.eval("c.stat('/f').st_size") == 8 * BS
    b.run("q = f.pin(0, 4096); q.release()")                  # and B itself, outside the range
    b.run("p.release()")                                      # B lets go: the truncate goes ahead
    worker.join(30)
    assert done.is_set() and not errors, errors
    assert a.stat("/f").st_size == BS
    _clean(a)


def _pin_refused(puppet: Puppet) -> bool:
    try:
        puppet.run("f.pin(2 * 4096, 4096).release()")
    except PuppetError as exc:
        return exc.kind == "BusyError"
    return False


def test_wait_times_out_with_busy_error_and_changes_nothing(client: Any, puppets: Callable[[str], Puppet]) -> None:
    a = client
    _file(a, "/f")
    b = puppets("B")
    b.run("f = c.open('/f', 'rb', buffering=0); p = f.pin(2 * 4096, 4096)")
    with pytest.raises(daxfs.BusyError) as exc:
        _change(a, "truncate", "wait", timeout=0.1)
    assert "B" in exc.value.holders
    assert a.stat("/f").st_size == 8 * BS
    b.run("p.release()")
    _clean(a)


def test_wait_same_client_release_from_another_thread_is_served(client: Any) -> None:
    """The I_MMAP_LOCK deadlock of seed 004 within one client: its own release, sent while
    its truncate waits on the same connection, still gets through."""
    a = client
    _file(a, "/f")
    f = a.open("/f", "rb", buffering=0)
    pin = f.pin(2 * BS, BS)
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(_change(a, "truncate", "wait", timeout=20)))
    worker.start()
    assert eventually(lambda: _pin_refused_here(f))
    pin.release()
    worker.join(30)
    assert result == [None] and a.stat("/f").st_size == BS
    f.close()
    _clean(a)


# (the request, and how to tell it went on once B let go: the open truncates "g")
_REQUESTS_THAT_WAIT: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "write mapping": ("w = g.map(0, 4096, write=True)", lambda a: True),
    "open with truncation": ("h = c.open('/g', 'wb')", lambda a: a.stat("/g").st_size == 0),
}


@pytest.mark.parametrize("request_kind", sorted(_REQUESTS_THAT_WAIT))
def test_a_client_killed_while_its_request_waits_leaves_nothing_held(
        pool: str, serve: Callable[..., ServerProcess], puppets: Callable[[str], Puppet],
        request_kind: str) -> None:
    """C's write mapping of a clone (its shared block copied first) or open with truncation
    waits under 'wait' for B's mapping of the file; C is killed meanwhile, which lets go of
    what C held; then B lets go and C's request goes on — for nobody. What it got is let go
    at once. Before, the write mapping stayed listed (and its blocks held) for a dead pid —
    an unlink of the file under 'wait' then waited forever — or the open kept an unlinked
    file's inode, until the arbiter stopped."""
    serve("--policy", "wait")
    a = daxfs.connect(pool, name="A")
    try:
        files_before = a.statfs().files
        _file(a, "/f")
        a.clone_file("/f", "/g")
        b = puppets("B")
        b.run("g = c.open('/g', 'rb', buffering=0); m = g.map(0, 4096)")
        c = puppets("C")
        c.run("g = c.open('/g', 'r+b', buffering=0)")
        request, went_on = _REQUESTS_THAT_WAIT[request_kind]
        sent = threading.Thread(target=lambda: _ignore(PuppetError, c.run, request))
        sent.start()
        assert eventually(lambda: _refused(b, "g.pin(0, 4096).release()"))   # C's request waits
        c.kill()
        sent.join(30)
        b.run("m.close(); g.close()")
        # (before the unlink: an open by path after it would create "g" anew)
        assert eventually(lambda: went_on(a))
        a.unlink("/g", policy="defer")     # (under 'wait' it would wait on whatever C's request left)
        a.unlink("/f")
        assert eventually(lambda: a.pins() == [] and a.statfs().busy == 0), a.pins()
        assert eventually(lambda: a.statfs().used == 0 and a.statfs().files == files_before), a.statfs()
        assert a.fsck() == []
    finally:
        a.close()


def _refused(puppet: Puppet, code: str) -> bool:
    try:
        puppet.run(code)
    except PuppetError:
        return True
    return False


def _ignore(kind: type[BaseException], call: Callable[..., object], *args: object) -> None:
    try:
        call(*args)
    except kind:
        pass


def _pin_refused_here(f: Any) -> bool:
    try:
        f.pin(2 * BS, BS).release()
    except daxfs.BusyError:
        return True
    return False


# ---------------------------------------------------------------- refuse and break

def test_refuse_is_busy_error_at_once_and_changes_nothing(client: Any, puppets: Callable[[str], Puppet]) -> None:
    a = client
    _file(a, "/f")
    b = puppets("B")
    b.run("f = c.open('/f', 'rb', buffering=0); m = f.map(0, 8 * 4096)")
    for change in ("truncate", "punch_hole", "unlink"):
        with pytest.raises(daxfs.BusyError):
            _change(a, change, "refuse")
    assert a.stat("/f").st_size == 8 * BS and a.statfs().busy == 0
    b.run("m.close()")
    _clean(a)


def test_break_calls_on_break_in_the_holder_and_migrates_a_lease_it_keeps(
        client: Any, puppets: Callable[[str], Puppet]) -> None:
    a = client
    _file(a, "/f")
    b = puppets("B")
    b.run("told = []; f = c.open('/f', 'rb', buffering=0); "
          "m = f.map(0, 8 * 4096, lease=True, on_break=lambda m: told.append(os.getpid())); "
          "arr = m.array('u1')")
    b_pid = b.pid
    _change(a, "truncate", "break")                         # B ignores the break: revoked after 0.3 s
    assert a.stat("/f").st_size == BS
    # on_break ran in B (on B's event thread: a B slower than the 0.3 s may run it only now)
    assert eventually(lambda: b.eval("told") == [b_pid])
    assert eventually(lambda: b.eval("m.revoked"))
    assert b.eval("int(arr[:8 * 4096].sum())") == 8 * BS * ord("d")     # B's array kept its bytes
    assert eventually(lambda: a.statfs().busy == 0 and a.pins() == [])
    b.run("m.close()")
    _clean(a)


def test_break_cooperative_holder_lets_go_in_its_callback(
        pool: str, serve: Callable[..., ServerProcess], puppets: Callable[[str], Puppet]) -> None:
    # A grace period a wait for would hang: the punch goes ahead when B lets go, never because
    # B (on a loaded machine) took longer than lease_break_s to run its callback.
    serve("--lease-break-s", "3600")
    a = daxfs.connect(pool, name="A")
    try:
        _file(a, "/f")
        b = puppets("B")
        b.run("f = c.open('/f', 'rb', buffering=0); "
              "m = f.map(0, 8 * 4096, lease=True, on_break=lambda m: m.close())")
        _change(a, "punch_hole", "break")
        assert b.eval("m.closed and not m.revoked")
        assert eventually(lambda: a.pins() == [] and a.statfs().busy == 0)
        _clean(a)
    finally:
        a.close(force=True, timeout=1)


def test_unlink_of_a_mapped_file_leaves_an_orphan_until_the_mapper_goes(
        client: Any, puppets: Callable[[str], Puppet]) -> None:
    a = client
    _file(a, "/f", 16)
    used = a.statfs().used
    b = puppets("B")
    b.run("f = c.open('/f', 'rb', buffering=0); m = f.map(); f.close()")
    a.unlink("/f")
    assert not a.exists("/f") and a.listdir("/") == []
    assert [(i.path, i.kind) for i in a.pins()] == [(None, "mapping")]      # an orphan
    assert a.statfs().used == used                                           # its blocks still its own
    assert b.eval("bytes(m.buffer[-2:]).decode()") == "dd"
    b.kill()
    assert eventually(lambda: a.statfs().used == used - 16 * BS)
    _clean(a)


def test_stopped_client_keeps_its_blocks_busy_through_a_lease_break(
        client: Any, puppets: Callable[[str], Puppet]) -> None:
    a = client
    _file(a, "/f")
    b = puppets("B")
    b.run("f = c.open('/f', 'rb', buffering=0); m = f.map(0, 8 * 4096, lease=True); arr = m.array('u1')")
    pool_offsets = [e.pool_offset for e in a.open("/f", "rb", buffering=0).extents()]
    b.kill(signal.SIGSTOP)
    try:
        _change(a, "truncate", "break")                     # B cannot answer: revoked, blocks kept
        assert a.stat("/f").st_size == BS
        assert a.statfs().busy >= 7 * BS
        for i in range(40):                                 # fill the pool around B's blocks
            _file(a, f"/fill{i}", 64, b"x")
        for off in pool_offsets:
            for o in a.owners(off, 8 * BS):
                assert o.path in ("/f",), f"B's blocks were handed to {o.path}"
    finally:
        b.kill(signal.SIGCONT)
    assert eventually(lambda: b.eval("m.revoked"))
    assert b.eval("int(arr.sum())") == 8 * BS * ord("d")
    assert eventually(lambda: a.statfs().busy == 0)
    _clean(a)


# ---------------------------------------------------------------- the arbiter stopping and dying

def test_arbiter_refuses_to_stop_while_clients_hold_references(
        pool: str, serve: Callable[..., ServerProcess], puppets: Callable[[str], Puppet]) -> None:
    server = serve()
    a = daxfs.connect(pool, name="A")
    _file(a, "/f")
    b = puppets("B")
    b.run("f = c.open('/f', 'rb', buffering=0); p = f.pin(0, 4096)")
    server.proc.send_signal(signal.SIGTERM)
    assert eventually(lambda: "refusing to stop" in _read_available(server))
    assert server.proc.poll() is None
    assert a.stat("/f").st_size == 8 * BS                   # still serving
    b.run("p.release()")
    a.close()
    b.quit()
    assert server.stop() == 0


def _read_available(server: ServerProcess) -> str:
    import fcntl
    fd = server.proc.stderr.fileno()  # type: ignore[union-attr]
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    try:
        data = os.read(fd, 1 << 16).decode()
    except BlockingIOError:
        data = ""
    server.__dict__.setdefault("seen", "")
    server.seen += data  # type: ignore[attr-defined]
    return server.seen  # type: ignore[attr-defined]


def test_arbiter_killed_clients_get_server_lost_and_a_new_one_never_reuses_pinned_blocks(
        pool: str, serve: Callable[..., ServerProcess], puppets: Callable[[str], Puppet]) -> None:
    server = serve()
    a = daxfs.connect(pool, name="A")
    _file(a, "/f", 8, b"p")
    a.close()
    b = puppets("B")
    b.run("f = c.open('/f', 'rb', buffering=0); p = f.pin(0, 8 * 4096); m = f.map(0, 8 * 4096); arr = m.array('u1')")
    segments = b.eval("p.segments")
    server.stop(signal.SIGKILL)
    with pytest.raises(PuppetError) as lost:
        b.run("c.stat('/f')")
    assert lost.value.kind == "ServerLost"
    assert b.eval("m.revoked")                                       # migrated to private memory
    assert b.eval("int(arr.sum())") == 8 * BS * ord("p")
    serve()
    a = daxfs.connect(pool, name="A2")
    assert a.fsck() == []
    assert a.statfs().busy >= 8 * BS or all(o.path == "/f" for seg in segments for o in a.owners(seg[2], seg[1]))
    a.unlink("/f")                                                   # the pinned blocks leave the file ...
    for i in range(50):                                              # ... and are never reused
        _file(a, f"/fill{i}", 64, b"x")
    assert b.eval("bytes(p.buffer[:4]).decode()") == "pppp"
    assert a.statfs().busy >= 8 * BS
    b.run("p.release(); m.close()")                                  # B lets go: the new arbiter frees them
    assert eventually(lambda: a.statfs().busy == 0)
    _clean(a)
    a.close()


def _write_held_up(pool: str) -> tuple[Any, "_GatedPool", threading.Thread, list[BaseException]]:
    """A client whose large write (64 blocks to /big) is held up at its first store into the
    blocks the arbiter prepared; what the write raised, once let through, lands in the list."""
    c = daxfs.connect(pool, name="copier")
    f = c.open("/big", "wb", buffering=0)
    gate = _GatedPool(c.pool)
    c.pool = gate
    outcome: list[BaseException] = []

    def write() -> None:
        try:
            f.write(b"W" * (64 * BS))
        except BaseException as exc:  # noqa: BLE001 — what the writer got, asserted by the test
            outcome.append(exc)
    writer = threading.Thread(target=write)
    writer.start()
    assert gate.entered.wait(60)
    return c, gate, writer, outcome


def _write_held_up_as_the_arbiter_dies(pool: str, server: ServerProcess
                                       ) -> tuple[Any, "_GatedPool", threading.Thread, list[BaseException]]:
    """``_write_held_up``, then the arbiter SIGKILLed and the client aware it is lost."""
    held = _write_held_up(pool)
    server.stop(signal.SIGKILL)
    assert eventually(lambda: held[0].lost)
    return held


class _GatedPool:
    """The client's view of the pool, holding up the first store into it until ``go``."""

    def __init__(self, pool: memoryview) -> None:
        self.pool, self.entered, self.go = pool, threading.Event(), threading.Event()

    def __getitem__(self, key: Any) -> Any:
        return self.pool[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        if not self.entered.is_set():
            self.entered.set()
            assert self.go.wait(60)
        self.pool[key] = value


def test_a_write_copying_into_prepared_blocks_as_the_arbiter_dies_keeps_them_from_the_next_one(
        pool: str, serve: Callable[..., ServerProcess]) -> None:
    # A large write copies into blocks the arbiter prepared, then commits.  The arbiter is
    # killed after it prepared them and the client learns of it while the copy is still
    # under way: the next arbiter must not give those blocks to anything before the copy
    # ends (the client would store into another file's data), and frees them after.
    c, gate, writer, outcome = _write_held_up_as_the_arbiter_dies(pool, serve())
    serve()
    a = daxfs.connect(pool, name="filler")
    assert a.statfs().busy == 64 * BS                                # kept for the copy still going
    fills = _fill_every_free_block(a)                                # every free block given out
    gate.go.set()
    writer.join(60)
    assert len(outcome) == 1 and isinstance(outcome[0], ServerLost)
    for name in fills:
        with a.open(name, "rb", buffering=0) as g:
            assert set(g.read()) == {ord("F")}, name                  # no byte of the lost write
    c.close()
    assert eventually(lambda: a.statfs().busy == 0)                  # the copy over, the blocks go
    assert a.fsck() == []
    a.close()


def test_closing_a_client_while_another_thread_copies_a_write_lets_no_one_else_have_its_blocks(
        pool: str, serve: Callable[..., ServerProcess]) -> None:
    # close() in one thread while another copies a large write into prepared blocks: the
    # close waits for the whole write (its stores, then its commit) before it says goodbye,
    # after which the arbiter lets whatever it still holds go
    serve()
    c, gate, writer, outcome = _write_held_up(pool)
    closer = threading.Thread(target=c.close)
    closer.start()
    a = daxfs.connect(pool, name="filler")
    fills = _fill_every_free_block(a)
    gate.go.set()
    writer.join(60)
    closer.join(60)
    assert not writer.is_alive() and not closer.is_alive()
    assert c.closed and outcome == []                                # the write went through
    with a.open("/big", "rb", buffering=0) as g:
        assert g.read() == b"W" * (64 * BS)
    for name in fills:
        with a.open(name, "rb", buffering=0) as g:
            assert set(g.read()) == {ord("F")}, name                  # no byte of the write astray
    assert eventually(lambda: a.statfs().busy == 0)
    assert a.fsck() == []
    a.close()


def test_a_pin_asked_for_while_a_close_waits_for_a_write_is_refused(
        pool: str, serve: Callable[..., ServerProcess]) -> None:
    # close() waits for another thread's large write; a pin asked for meanwhile (by a third
    # thread) must be refused: the close counted the references before, and its "bye"
    # lets the arbiter give the pinned blocks to other files (the pin's stores landed in
    # another file's data)
    serve()
    a = daxfs.connect(pool, name="other")
    with a.open("/victim", "wb", buffering=0) as g:
        g.write(b"v" * (8 * BS))
    c, gate, writer, outcome = _write_held_up(pool)
    closer = threading.Thread(target=c.close)
    closer.start()
    assert eventually(lambda: len(c._copies_done._waiters) == 1)      # close() waits for the write
    victim = c.open("/victim", "r+b", buffering=0)                    # (after close() let files go)
    with pytest.raises(ValueError, match="closed"):
        victim.pin(0, 8 * BS, write=True)
    with pytest.raises(ValueError, match="closed"):
        victim.map(0, 8 * BS)
    gate.go.set()
    writer.join(60)
    closer.join(60)
    assert c.closed and outcome == [] and a.pins() == []
    a.unlink("/victim")
    assert eventually(lambda: a.statfs().busy == 0)                  # nothing kept it
    assert a.fsck() == []
    a.close()


def test_two_closes_racing_a_write_close_once(pool: str, serve: Callable[..., ServerProcess]) -> None:
    # Two threads close while a third copies a large write: the second waits for the
    # first's outcome; the holder slot is cleared once (a second clear, after the first
    # dropped the slot's lock, could wipe another client's slot)
    serve()
    c, gate, writer, outcome = _write_held_up(pool)
    clears: list[int] = []
    clear = c._table.clear
    c._table.clear = lambda slot: (clears.append(slot), clear(slot))[1]
    errors: list[BaseException] = []

    def close() -> None:
        try:
            c.close()
        except BaseException as exc:  # noqa: BLE001 — asserted below
            errors.append(exc)
    closers = [threading.Thread(target=close) for _ in range(2)]
    closers[0].start()
    assert eventually(lambda: len(c._copies_done._waiters) == 1)
    closers[1].start()
    assert eventually(lambda: len(c._copies_done._waiters) == 2)      # both inside close()
    gate.go.set()
    writer.join(60)
    for t in closers:
        t.join(60)
    assert c.closed and errors == [] and outcome == [] and len(clears) == 1


def test_a_file_closed_while_its_write_copies_lets_the_prepared_blocks_go(
        pool: str, serve: Callable[..., ServerProcess]) -> None:
    # Another thread closes the file while a large write into it copies: the commit fails
    # as a write on a closed file does (EBADF), and the blocks prepared for it are freed
    # (they stayed busy for good: the failed commit neither used nor freed them)
    serve()
    c, gate, writer, outcome = _write_held_up(pool)
    c.files.copy().pop().close()
    gate.go.set()
    writer.join(60)
    assert len(outcome) == 1 and isinstance(outcome[0], OSError) and outcome[0].errno == errno.EBADF
    a = daxfs.connect(pool, name="checker")
    assert eventually(lambda: a.statfs().busy == 0)
    assert a.stat("/big").st_size == 0
    c.close()
    assert a.fsck() == []
    a.close()


def _digest(path: str) -> str:
    import hashlib
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def test_an_embedded_open_is_refused_while_a_lost_client_still_copies_into_the_pool(
        pool: str, serve: Callable[..., ServerProcess]) -> None:
    # The arbiter dies while a client copies a large write into prepared blocks; the pool
    # opened embedded (not by a new arbiter, which keeps them) would give those blocks to
    # other files while the stores still land: refused, naming the client, until it ends
    c, gate, writer, outcome = _write_held_up_as_the_arbiter_dies(pool, serve())
    with pytest.raises(daxfs.BusyError, match="copier") as refused:
        daxfs.open_volume(pool)
    assert refused.value.holders == [os.getpid()]
    image = _digest(pool)
    with pytest.raises(daxfs.BusyError, match="copier"):
        daxfs.mkfs(pool, force=True)                         # would give every block away
    with pytest.raises(daxfs.BusyError, match="copier"):
        repair(pool)                                         # rewrites the allocation
    assert _digest(pool) == image                            # and neither changed a byte
    daxfs.open_volume(pool, readonly=True).close()          # a follower allocates nothing
    gate.go.set()
    writer.join(60)
    assert len(outcome) == 1 and isinstance(outcome[0], ServerLost)
    vol = daxfs.open_volume(pool)                            # the copy over, the slot let go
    assert vol.statfs().busy == 0 and vol.fsck() == []
    vol.close()
    c.close()


@pytest.mark.parametrize("then", ["arbiter-killed", "client-closed"])
@pytest.mark.parametrize("kind", ["pin", "mapping"])
def test_memory_still_exported_after_its_reference_went_goes_to_no_other_file(
        pool: str, serve: Callable[..., ServerProcess], kind: str, then: str) -> None:
    # A pin released (or a mapping closed) while an export of its buffer lives stays mapped
    # until the export dies.  If the arbiter is killed meanwhile, the lost client's slot
    # must list that memory so the next arbiter gives it to no one (it listed unreleased
    # pins only, and the stores through the export landed in another file); if the client
    # closes instead, the slot keeps it from other files the same way.  Either way the
    # blocks (and the slot) go when the export dies.
    server = serve()
    c = daxfs.connect(pool, name="holder")
    with c.open("/v", "wb", buffering=0) as g:
        g.write(b"v" * (8 * BS))
    f = c.open("/v", "r+b", buffering=0)
    ref = f.pin(0, 8 * BS, write=True) if kind == "pin" else f.map(0, 8 * BS, write=True)
    export = ref.buffer[:]
    ref.release() if kind == "pin" else ref.close()
    f.close()
    if then == "arbiter-killed":
        server.stop(signal.SIGKILL)
        assert eventually(lambda: c.lost)
        serve()
    else:
        c.close()
    a = daxfs.connect(pool, name="other")
    a.unlink("/v")
    assert a.statfs().busy == 8 * BS                                 # kept for the export
    fills = _fill_every_free_block(a)
    export[:] = b"X" * (8 * BS)
    for name in fills:
        with a.open(name, "rb", buffering=0) as g:
            assert set(g.read()) == {ord("F")}, name
    export.release()
    del export
    gc.collect()
    assert eventually(lambda: a.statfs().busy == 0)                  # the export gone, the blocks go
    c.close()
    assert not c._slot_held and c._table.read(c._slot) is None
    assert a.fsck() == []
    a.close()


def test_a_forked_child_letting_go_of_its_copy_of_a_client_frees_nothing_of_the_parents(
        pool: str, serve: Callable[..., ServerProcess]) -> None:
    # A child forked from a client's process gets copies of its socket, holder slot lock
    # and views.  Its finalizers (an export dying) and its close() spoke for the parent:
    # release_blocks, "bye", a shutdown of the shared socket and an unlock of the slot,
    # and the arbiter freed the parent's pin and lingering mapping under it
    serve()
    c = daxfs.connect(pool, name="parent")
    with c.open("/v", "wb", buffering=0) as g:
        g.write(b"v" * (8 * BS))
    with c.open("/v", "r+b", buffering=0) as f:
        pin = f.pin(0, 4 * BS, write=True)
        mapping = f.map(4 * BS, 4 * BS, write=True)
    exports = [pin.buffer[:], mapping.buffer[:]]
    pin.release()
    mapping.close()                             # both linger: their blocks held for the exports
    pid = os.fork()
    if pid == 0:
        try:
            for export in exports:
                export.release()
            del exports[:]
            gc.collect()
            c.close()
        finally:
            os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    assert not c.lost and not c.closed
    a = daxfs.connect(pool, name="other")
    a.unlink("/v")
    assert a.statfs().busy == 8 * BS                                 # kept for the exports
    fills = _fill_every_free_block(a)
    for export in exports:
        export[:] = b"X" * (4 * BS)
    for name in fills:
        with a.open(name, "rb", buffering=0) as g:
            assert set(g.read()) == {ord("F")}, name
    for export in exports:
        export.release()
    del exports[:]
    gc.collect()
    c.close()
    assert eventually(lambda: a.statfs().busy == 0)
    assert a.fsck() == []
    a.close()


def test_a_connection_whose_slot_cannot_be_locked_leaves_no_descriptor_open(
        pool: str, serve: Callable[..., ServerProcess], monkeypatch: pytest.MonkeyPatch) -> None:
    # (the socket and the three descriptors the arbiter passed stayed open)
    import daxfs.adapters.client as client_module
    serve()
    daxfs.connect(pool).close()                       # whatever a first connection leaves
    gc.collect()                                      # earlier tests' garbage closes its files now,
    gc.disable()                                      # not between the two listings
    try:
        before = sorted(os.listdir("/proc/self/fd"))
        monkeypatch.setattr(client_module, "take_slot_lock", lambda fd, slot: False)
        with pytest.raises(ServerLost, match="slot"):
            daxfs.connect(pool)
        assert sorted(os.listdir("/proc/self/fd")) == before
    finally:
        gc.enable()


def _fill_every_free_block(a: Any) -> list[str]:
    """Files of F bytes over every free block (64-block files, then single blocks)."""
    fills: list[str] = []
    for size in (64 * BS, BS):
        while True:
            name = f"/fill{len(fills)}"
            try:
                with a.open(name, "wb", buffering=0) as g:
                    g.write(b"F" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                a.unlink(name)
                break
            fills.append(name)
    assert a.statfs().free < BS
    return fills


def test_arbiter_killed_mid_workload_restarts_with_every_acknowledged_write(
        pool: str, serve: Callable[..., ServerProcess], puppets: Callable[[str], Puppet]) -> None:
    server = serve()
    b = puppets("writer")
    acked = []
    for i in range(30):
        b.run(f"g = c.open('/w{i}', 'wb', buffering=0); g.write(bytes([{i}]) * {5000 + 997 * i}); g.close()")
        acked.append(i)
        if i == 17:
            b.run("h = c.open('/big', 'wb', buffering=0); h.write(b'B' * 300000); h.close()")   # a prepared write
    server.stop(signal.SIGKILL)
    serve()
    a = daxfs.connect(pool, name="checker")
    assert a.fsck() == []
    for i in acked:
        with a.open(f"/w{i}", "rb", buffering=0) as g:
            assert g.read() == bytes([i]) * (5000 + 997 * i)
    with a.open("/big", "rb", buffering=0) as g:
        assert g.read() == b"B" * 300000
    a.close()


# ---------------------------------------------------------------- holders

def test_pins_name_each_holder_with_pid_and_uid(client: Any, puppets: Callable[[str], Puppet]) -> None:
    a = client
    _file(a, "/f")
    b = puppets("loader-3")
    b.run("f = c.open('/f', 'rb', buffering=0); p = f.pin(0, 4096)")
    b.run("h = c.holder('dma-engine'); g = h.open('/f', 'rb', buffering=0); q = g.pin(4096, 4096)")
    infos = sorted((i.holder, i.pid, i.uid, i.kind) for i in a.pins())
    assert infos == [("dma-engine", b.pid, os.getuid(), "pin"), ("loader-3", b.pid, os.getuid(), "pin")]
    b.run("h.close()")
    assert [i.holder for i in a.pins()] == ["loader-3"]
    b.run("p.release()")
    _clean(a)


def test_embedded_open_of_a_served_pool_names_the_arbiter(pool: str, serve: Callable[..., ServerProcess]) -> None:
    server = serve()
    with pytest.raises(daxfs.BusyError) as exc:
        daxfs.open_volume(pool)
    assert exc.value.holders == [server.proc.pid]


def test_client_calls_after_the_arbiter_stops_are_server_lost(pool: str, serve: Callable[..., ServerProcess]) -> None:
    server = serve()
    a = daxfs.connect(pool)
    assert server.stop() == 0
    with pytest.raises(ServerLost):
        a.stat("/")
    with pytest.raises(ConnectionError):
        a.listdir("/")
    a.close()


# ---------------------------------------------------------------- the CLI on a served pool

def test_cli_commands_go_through_the_arbiter(pool: str, serve: Callable[..., ServerProcess], tmp_path: Any,
                                             capsys: Any) -> None:
    from daxfs.adapters.cli import main

    serve()
    local = tmp_path / "local.bin"
    local.write_bytes(b"served bytes\n" * 1000)

    def run(*argv: str) -> str:
        assert main(list(argv)) == 0, capsys.readouterr().err
        return capsys.readouterr().out

    run("mkdir", f"{pool}:/d")
    run("put", str(local), f"{pool}:/d/")
    assert run("ls", f"{pool}:/d").split() == ["local.bin"]
    assert run("cat", f"{pool}:/d/local.bin") == (b"served bytes\n" * 1000).decode()
    run("cp", f"{pool}:/d/local.bin", f"{pool}:/d/copy.bin")
    run("mv", f"{pool}:/d/copy.bin", f"{pool}:/moved.bin")
    assert "Extents:" in run("stat", f"{pool}:/moved.bin")
    run("get", f"{pool}:/moved.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == local.read_bytes()
    assert "clean" in run("fsck", pool)
    assert pool in run("df", pool)
    info = run("info", pool)
    assert "writer:          the arbiter (daxfs serve), process " in info and "readonly" not in info
    assert "\nfiles:           4\n" in info            # /, /d, /d/local.bin, /moved.bin
    holder = daxfs.connect(pool, name="cli-test-holder")
    f = holder.open("/moved.bin", "rb", buffering=0)
    p = f.pin(0, 100)
    out = run("pins", pool)
    assert "served by the arbiter" in out and "cli-test-holder" in out and str(os.getpid()) in out
    p.release()
    f.close()
    holder.close()
    run("rm", "-r", f"{pool}:/d")
    assert run("ls", pool).split() == ["moved.bin"]


# ---------------------------------------------------------------- memory failure through the arbiter

def test_memory_failure_reaches_clients(client: Any, puppets: Callable[[str], Puppet], pool: str) -> None:
    a = client
    _file(a, "/f", 4, b"m")
    with a.open("/f", "rb", buffering=0) as f:
        bad = f.extents()[0].pool_offset + BS            # the file's second block
    b = puppets("B")
    b.run("told = []; f = c.open('/f', 'rb', buffering=0); "
          "m = f.map(on_poison=lambda m, off, n: told.append(('map', off, n))); "
          "p = f.pin(0, 4 * 4096, on_poison=lambda p, off, n: told.append(('pin', off, n)))")
    owners = a.memory_failure(bad, BS)
    assert [(o.path, o.file_offset, o.length) for o in owners] == [("/f", BS, BS)]
    assert eventually(lambda: sorted(b.eval("told")) == [["map", BS, BS], ["pin", BS, BS]])
    assert b.eval("m.poisoned") == [[BS, BS]] and b.eval("p.poisoned") == [[BS, BS]]
    assert b.eval("bytes(m.buffer[:4]).decode() + bytes(m.buffer[2 * 4096:2 * 4096 + 4]).decode()") == "mmmmmmmm"
    with a.open("/f", "rb", buffering=0) as f:
        assert f.pread(4, 0) == b"mmmm" and f.pread(4, 2 * BS) == b"mmmm"
        with pytest.raises(daxfs.PoisonError) as exc:
            f.pread(10, BS + 5)                           # EIO naming the file range
        assert exc.value.errno == 5 and exc.value.file_offset == BS
    with pytest.raises(PuppetError) as lost:
        b.run("f.pread(10, 4096)")                        # B's own reads say so too
    assert lost.value.kind == "PoisonError"
    assert a.badblocks() == [(bad, BS)] and a.statfs().bad == BS
    with a.open("/f", "r+b", buffering=0) as f:
        f.pwrite(b"n" * BS, BS)                           # a whole-block write gives a fresh block
        assert f.pread(2, BS) == b"nn"
    b.run("m.close(); p.release(); f.close()")
    assert a.badblocks() == [(bad, BS)]                   # the bad block stays quarantined
    _clean(a)


@pytest.mark.parametrize("kind, let_go", [("mapping", "close"), ("mapping", "revoke"), ("mapping", "client-close"),
                                          ("pin", "close")])     # (pins are never revoked, a close waits for them)
def test_blocks_a_forked_child_of_a_client_shows_go_to_no_other_file_until_it_is_gone(
        pool: str, serve: Callable[..., ServerProcess], kind: str, let_go: str) -> None:
    # A child forked while a client's view is mapped shows its copy of it whatever the
    # client then does (closes or revokes it, closes the connection); the arbiter keeps the
    # blocks until the child is gone (they went to the next file at once: the child read
    # another file's bytes through its arrays).
    serve()
    c = daxfs.connect(pool, name="parent")
    with c.open("/a", "wb", buffering=0) as g:
        g.write(b"A" * (16 * BS))
    f = c.open("/a", "rb", buffering=0)
    ref = f.map() if kind == "mapping" else f.pin(0, 16 * BS)
    buffer = ref.buffer
    pid, go = child_reading_later(buffer, ord("A"))
    del buffer
    if let_go == "revoke":
        ref.revoke("migrate")
    if let_go == "client-close":
        c.close(force=True, timeout=0)
        c = daxfs.connect(pool, name="checker")
    else:
        ref.close() if kind == "mapping" else ref.release()
        f.close()
    c.unlink("/a")
    assert c.statfs().busy == 16 * BS
    fills = _fill_every_free_block(c)
    assert reap(pid, go) == 0
    assert eventually(lambda: c.statfs().busy == 0)
    for name in fills:
        c.unlink(name)
    assert c.fsck() == []
    c.close()


def test_a_lease_revoked_in_a_client_whose_forked_child_shows_it_keeps_its_blocks_until_the_child_is_gone(
        client: Any, pool: str) -> None:
    # The client migrates its own view when its lease runs out; the child's copy still
    # shows the pool blocks, so the client tells the arbiter they may go only once the
    # child has gone (it told it at once).
    a = client
    _file(a, "/f")
    f = a.open("/f", "rb", buffering=0)
    m = f.map(0, 8 * BS, lease=True)
    buffer = m.buffer
    pid, go = child_reading_later(buffer, ord("d"))
    other = daxfs.connect(pool, name="truncator")
    _change(other, "truncate", "break")                     # nobody lets go: revoked after 0.3 s
    assert eventually(lambda: m.revoked)
    assert other.statfs().busy == 7 * BS                    # the child shows them
    fills = _fill_every_free_block(other)
    assert reap(pid, go) == 0
    assert eventually(lambda: other.statfs().busy == 0)
    del buffer
    m.close()
    f.close()
    for name in fills:
        other.unlink(name)
    assert other.fsck() == []
    other.close()


def test_a_close_with_a_timeout_gives_up_on_another_threads_large_write_and_stays_open(
        pool: str, serve: Callable[..., ServerProcess]) -> None:
    # (it waited for the write with no bound, whatever the timeout)
    serve()
    c, gate, writer, outcome = _write_held_up(pool)
    with c.open("/m", "wb", buffering=0) as g:
        g.write(b"m" * BS)
    m = c.open("/m", "r+b", buffering=0).map(write=True)
    with pytest.raises(daxfs.BusyError, match="still copies"):
        c.close(force=True, timeout=0.05)
    assert not c.closed and c.stat("/").st_mode                     # still open, still serving
    assert not m.revoked                                             # and nothing was changed
    m.buffer[:1] = b"M"
    m.close()
    gate.go.set()
    writer.join(60)
    assert not writer.is_alive() and outcome == []                   # the write went through
    c.close(timeout=0.05)
    assert c.closed
    a = daxfs.connect(pool, name="checker")
    with a.open("/big", "rb", buffering=0) as g:
        assert g.read() == b"W" * (64 * BS)
    with a.open("/m", "rb", buffering=0) as g:
        assert g.read(2) == b"Mm"                                    # the store went to the file
    assert eventually(lambda: a.statfs().busy == 0)
    assert a.fsck() == []
    a.close()


def test_a_restarted_arbiter_keeps_every_block_while_a_live_clients_slot_cannot_be_read(
        pool: str, serve: Callable[..., ServerProcess]) -> None:
    """A live client's slot that stays unreadable (its CRC never matches) could name any
    blocks: the restarted arbiter keeps them all from other files until the client's lock
    goes, then gives them back."""
    from daxfs.volume.holders import HolderTable, drop_slot_lock, holders_path, take_slot_lock
    serve().stop(signal.SIGKILL)                            # (leaves the holder table)
    table = HolderTable(holders_path(pool))
    table.write(0, 999_999, 0, 0, "torn", [(0, BS)])
    os.pwrite(table.fd, b"\xff" * 16, 2 * 4096 - 16)         # slot 0's last bytes: its CRC fails
    lock = os.open(table.path, os.O_RDWR | os.O_CLOEXEC)
    try:
        assert take_slot_lock(lock, 0)                        # the client, alive
        serve()
        c = daxfs.connect(pool)
        try:
            with pytest.raises(OSError) as caught:
                with c.open("/f", "wb") as f:
                    f.write(b"x" * (1 << 20))
            assert caught.value.errno == errno.ENOSPC
            drop_slot_lock(lock, 0)                          # the client is gone: all given back

            def writes() -> bool:
                try:
                    with c.open("/g", "wb") as f:
                        f.write(b"y" * (1 << 20))
                    return True
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    return False
            assert eventually(writes)
            assert eventually(lambda: c.statfs().busy == 0)
        finally:
            c.close()
    finally:
        os.close(lock)
        table.close()


def test_a_restarted_arbiter_lets_go_of_what_a_living_client_no_longer_lists(
        pool: str, serve: Callable[..., ServerProcess]) -> None:
    """A client of an arbiter that died rewrites its slot as it lets go of pins; the next
    arbiter let go of the blocks only when the client exited (space held for its whole
    life).  Now what the slot no longer lists goes back at once, and the rest on exit."""
    from daxfs.volume.holders import HolderTable, drop_slot_lock, holders_path, take_slot_lock
    vol = daxfs.open_volume(pool)
    base = vol._journal.layout.data_offset
    vol.close()
    serve().stop(signal.SIGKILL)                            # (leaves the holder table)
    table = HolderTable(holders_path(pool))
    first, second = (base + 16 * BS, 8 * BS), (base + 64 * BS, 4 * BS + 1)   # the second ends 1 byte into a block
    table.write(0, os.getpid(), 0, 0, "lost client", [first, second])
    lock = os.open(table.path, os.O_RDWR | os.O_CLOEXEC)
    try:
        assert take_slot_lock(lock, 0)
        serve()
        c = daxfs.connect(pool)
        try:
            assert c.statfs().busy == 8 * BS + 5 * BS
            table.write(0, os.getpid(), 0, 0, "lost client", [first])      # it let go of a pin
            assert eventually(lambda: c.statfs().busy == 8 * BS)
            table.write(0, os.getpid(), 0, 0, "lost client", [(first[0] + 4 * BS, 1)])   # one byte of a block
            assert eventually(lambda: c.statfs().busy == BS)
            # A slot of an older client library (no CRC) is never trusted to list less: a read
            # racing its rewrite could miss runs.  (50 passes of the watch, every 10 ms.)
            os.pwrite(table.fd, struct.pack("<4sIIII64s", b"DXSL", os.getpid(), 0, 0, 0, b"old"), 4096)
            time.sleep(0.5)
            assert c.statfs().busy == BS
            drop_slot_lock(lock, 0)                          # it exits
            assert eventually(lambda: c.statfs().busy == 0)
            assert c.fsck() == []
        finally:
            c.close()
    finally:
        os.close(lock)
        table.close()


def test_a_client_that_lost_its_arbiter_gets_each_pins_blocks_freed_as_it_releases_it(
        pool: str, serve: Callable[..., ServerProcess], puppets: Callable[[str], Puppet]) -> None:
    server = serve()
    a = daxfs.connect(pool, name="A")
    _file(a, "/f", 8, b"f")
    _file(a, "/g", 8, b"g")
    a.close()
    b = puppets("B")
    b.run("pf = c.open('/f', 'rb', buffering=0).pin(0, 8 * 4096); pg = c.open('/g', 'rb', buffering=0).pin(0, 8 * 4096)")
    server.stop(signal.SIGKILL)
    with pytest.raises(PuppetError):
        b.run("c.stat('/f')")
    serve()
    a = daxfs.connect(pool, name="A2")
    a.unlink("/f")
    a.unlink("/g")
    assert a.statfs().busy == 16 * BS                     # both pins' blocks, out of their files
    b.run("pf.release()")
    assert eventually(lambda: a.statfs().busy == 8 * BS)  # (was: only once B exited)
    assert b.eval("bytes(pg.buffer[:4]).decode()") == "gggg"
    b.run("pg.release()")
    assert eventually(lambda: a.statfs().busy == 0)
    _clean(a)
    a.close()


def test_a_client_whose_connection_ended_gets_each_pins_blocks_freed_as_it_releases_it(
        pool: str, serve: Callable[..., ServerProcess], puppets: Callable[[str], Puppet]) -> None:
    """The arbiter keeps what a living client held when its connection ended (the client may
    still store through its pins) until the client's slot no longer lists it."""
    serve()
    a = daxfs.connect(pool, name="A")
    _file(a, "/f", 8, b"f")
    _file(a, "/g", 8, b"g")
    b = puppets("B")
    b.run("pf = c.open('/f', 'rb', buffering=0).pin(0, 8 * 4096); pg = c.open('/g', 'rb', buffering=0).pin(0, 8 * 4096)")
    a.unlink("/f")
    a.unlink("/g")
    free = a.statfs().free                              # (the pinned files' blocks: none of it)
    b.run("import socket; c._sock.shutdown(socket.SHUT_RDWR)")
    with pytest.raises(PuppetError):
        b.run("c.stat('/')")
    assert a.statfs().free == free                      # B lives on, storing through its pins
    b.run("pf.release()")
    assert eventually(lambda: a.statfs().free == free + 8 * BS)   # (was: only once B exited)
    assert b.eval("bytes(pg.buffer[:4]).decode()") == "gggg"
    b.run("pg.release()")
    assert eventually(lambda: a.statfs().free == free + 16 * BS)
    assert a.statfs().busy == 0 and a.fsck() == []
    a.close()


def test_a_reference_whose_reply_came_as_the_connection_ended_is_refused_not_left_unlisted(
        pool: str, serve: Callable[..., ServerProcess]) -> None:
    """The reply to a pin arrives, then the connection ends before the client registers the
    pin: its slot, rewritten when the loss was noticed, does not list it, and the arbiter lets
    go of what a living client's slot does not list.  Handing the pin out would have let
    the client store into blocks another file gets (found by a review: it did)."""
    serve()
    a = daxfs.connect(pool, name="A")
    _file(a, "/f", 8, b"f")
    _file(a, "/g", 8, b"g")
    b = daxfs.connect(pool, name="B")
    keep = b.open("/g", "rb", buffering=0).pin(0, 8 * BS)         # keeps B's slot locked
    register = b.register

    def register_late(ref: Any) -> None:
        b._sock.shutdown(socket.SHUT_RDWR)
        assert eventually(lambda: b.lost)                          # _lose ran first
        register(ref)
    f = b.open("/f", "r+b", buffering=0)
    b.register = register_late                                     # type: ignore[method-assign]
    with pytest.raises(ServerLost):
        f.pin(0, 8 * BS, write=True)
    b.register = register                                          # type: ignore[method-assign]
    a.unlink("/f")
    assert eventually(lambda: a.statfs().busy == 0)                # nothing lists /f's blocks
    assert bytes(keep.buffer[:4]) == b"gggg"
    keep.release()
    b.close()
    assert a.fsck() == []
    a.close()


def test_a_fill_read_after_the_mapping_was_revoked_never_maps_the_pool_into_it(
        pool: str, serve: Callable[..., ServerProcess]) -> None:
    """A write fills a hole a client's mapping shows; the fill event is read only after the
    user revoked the mapping (migrated to private memory, its blocks given back).  Laying the
    fill in mapped those pool blocks into the private view again (found by review)."""
    serve()
    a = daxfs.connect(pool, name="A")
    with a.open("/h", "wb", buffering=0) as h:
        h.truncate(8 * BS)
    b = daxfs.connect(pool, name="B")
    m = b.open("/h", "rb", buffering=0).map(0, 8 * BS)
    fill, late = b._fill, []
    b._fill = late.append                                          # type: ignore[method-assign]
    with a.open("/h", "r+b", buffering=0) as ha:
        ha.pwrite(b"x" * BS, 0)
    assert eventually(lambda: late)
    m.revoke("migrate")
    b._fill = fill                                                 # type: ignore[method-assign]
    for event in late:
        b._fill(event)                                             # the event, read late
    assert bytes(m.buffer[:BS]) == bytes(BS)                       # what it showed at the revoke
    a.unlink("/h")
    _file(a, "/victim", 64, b"v")
    assert bytes(m.buffer[:BS]) == bytes(BS)
    m.close()
    b.close()
    a.close()


def test_a_mapping_the_client_fails_to_make_is_given_back_at_once(
        pool: str, serve: Callable[..., ServerProcess], monkeypatch: pytest.MonkeyPatch) -> None:
    """The arbiter granted a mapping, then the client could not map its view (no memory): the
    arbiter kept the reference, and its blocks, until the client disconnected."""
    from daxfs.adapters import client_refs
    serve()
    a = daxfs.connect(pool, name="A")
    _file(a, "/f", 8, b"f")
    b = daxfs.connect(pool, name="B")
    f = b.open("/f", "rb", buffering=0)

    def no_memory(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOMEM, "Cannot allocate memory")
    monkeypatch.setattr(client_refs, "PoolView", no_memory)
    with pytest.raises(OSError) as caught:
        f.map(0, 8 * BS)
    assert caught.value.errno == errno.ENOMEM
    monkeypatch.undo()
    assert eventually(lambda: a.pins() == [])
    with f.map(0, 8 * BS) as m:                                    # (what pins() lists: it does)
        assert [p.holder for p in a.pins()] == ["B"] and bytes(m.buffer[:1]) == b"f"
    f.close()
    b.close()
    a.close()
