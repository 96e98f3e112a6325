"""The arbiter's trust boundary: peers' credentials, and requests nobody should send.

- Mode bits are checked per request with the peer's uid/gid (SO_PEERCRED): reading, writing,
  creating and removing names, chmod/chown, the sticky bit; root passes; new files belong to
  the peer.  The socket is no more open than the pool, so a user who may not open the pool
  cannot even connect.
- Malformed frames, oversized frames, truncated frames, unknown operations, arguments of the
  wrong type, a client that floods requests and never reads its replies: that connection gets
  an error or is dropped, the arbiter and every other client carry on, and the volume is never
  changed by the bad request.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import socket
import struct
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import daxfs
from daxfs.adapters import wire
from daxfs.testing import snapshot

sys.path.insert(0, os.path.dirname(__file__))
from _puppet import Puppet, PuppetError  # noqa: E402
from test_arbiter import ServerProcess, eventually, pool, serve  # noqa: E402,F401  (fixtures)

BS = 4096
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="changing users needs root")


def _user(pool_path: str, name: str, uid: int) -> Puppet:
    return Puppet(pool_path, name, env={"PUPPET_UID": str(uid)})


@pytest.fixture
def shared(pool: str, serve: Callable[..., ServerProcess]) -> Iterator[Any]:
    """A served pool every user may open (0666), a root client, and the users' puppets."""
    os.chmod(pool, 0o666)
    serve()
    root = daxfs.connect(pool, name="root")
    root.mkdir("/open", 0o777)
    root.mkdir("/closed", 0o755)
    root.mkdir("/sticky", 0o777)
    root.chmod("/open", 0o777)
    root.chmod("/sticky", 0o1777)
    with root.open("/closed/secret", "wb", buffering=0) as f:
        f.write(b"root only")
    root.chmod("/closed/secret", 0o600)
    made: list[Puppet] = []
    yield root, made
    for p in made:
        p.quit()
    root.close()


@root_only
def test_new_files_belong_to_the_peer_and_mode_bits_hold(shared: Any, pool: str) -> None:
    root, made = shared
    alice = _user(pool, "alice", 1000)
    bob = _user(pool, "bob", 1001)
    made += [alice, bob]
    alice.run("f = c.open('/open/a', 'wb', buffering=0); f.write(b'alice'); f.close(); c.chmod('/open/a', 0o644)")
    st = root.stat("/open/a")
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    assert bob.eval("c.open('/open/a', 'rb', buffering=0).read().decode()") == "alice"         # others may read
    for attempt, code in [("write", "c.open('/open/a', 'r+b', buffering=0)"), ("read secret", "c.open('/closed/secret', 'rb', buffering=0)"),
                          ("create in 0755", "c.open('/closed/new', 'wb', buffering=0)"),
                          ("mkdir in 0755", "c.mkdir('/closed/d')"), ("unlink in 0755", "c.unlink('/closed/secret')")]:
        with pytest.raises(PuppetError) as exc:
            bob.run(code)
        assert exc.value.errno == errno.EACCES, attempt
    with pytest.raises(PuppetError) as exc:
        bob.run("c.chmod('/open/a', 0o666)")
    assert exc.value.errno == errno.EPERM
    with pytest.raises(PuppetError) as exc:
        alice.run("c.chown('/open/a', 1001, -1)")                               # only root gives files away
    assert exc.value.errno == errno.EPERM
    root.chown("/open/a", 1001, 1001)                                            # root passes
    assert root.stat("/open/a").st_uid == 1001
    assert root.fsck() == []


@root_only
def test_sticky_directory_keeps_others_from_removing_a_users_files(shared: Any, pool: str) -> None:
    root, made = shared
    alice = _user(pool, "alice", 1000)
    bob = _user(pool, "bob", 1001)
    made += [alice, bob]
    alice.run("c.open('/sticky/mine', 'wb', buffering=0).close()")
    with pytest.raises(PuppetError) as exc:
        bob.run("c.unlink('/sticky/mine')")
    assert exc.value.errno == errno.EPERM
    with pytest.raises(PuppetError) as exc:
        bob.run("c.rename('/sticky/mine', '/sticky/stolen')")
    assert exc.value.errno == errno.EPERM
    bob.run("c.open('/sticky/bobs', 'wb', buffering=0).close(); c.unlink('/sticky/bobs')")   # his own: fine
    alice.run("c.unlink('/sticky/mine')")
    assert root.listdir("/sticky") == []


@root_only
def test_a_user_who_may_not_open_the_pool_cannot_connect(pool: str, serve: Callable[..., ServerProcess]) -> None:
    os.chmod(pool, 0o600)
    serve()
    assert os.stat(pool + ".sock").st_mode & 0o777 == 0o600      # no more open than the pool
    with pytest.raises(PuppetError) as exc:
        _user(pool, "mallory", 1002)
    assert exc.value.kind == "PermissionError"


# ---------------------------------------------------------------- requests nobody should send

def _raw(pool: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(pool + ".sock")
    return sock


def _hello(sock: socket.socket) -> list[int]:
    wire.send(sock, [1, "hello", {"name": "fuzzer"}])
    _reply, fds = wire.recv_with_fds(sock, wire.FrameReader(sock, wire.MAX_REPLY), 3)
    for fd in fds:
        os.close(fd)
    return fds


def _call(sock: socket.socket, rid: int, op: Any, args: Any) -> Any:
    wire.send(sock, [rid, op, args])
    while True:
        reply = wire.recv(sock, wire.MAX_REPLY)
        if reply[0] == rid:
            return reply


def _dropped(sock: socket.socket) -> bool:
    """Whether the arbiter closed this connection (reads EOF, or the socket errs)."""
    sock.settimeout(5)
    try:
        while True:
            data = sock.recv(1 << 16)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


@pytest.fixture
def victim(pool: str, serve: Callable[..., ServerProcess]) -> Iterator[Any]:
    serve()
    vol = daxfs.connect(pool, name="bystander")
    vol.mkdir("/d")
    with vol.open("/d/f", "wb", buffering=0) as f:
        f.write(b"keep" * 2000)
    before = snapshot(vol)
    yield vol, before
    assert vol.fsck() == []
    assert snapshot(vol) == before, "a bad request changed the volume"
    vol.close()


@pytest.mark.parametrize("frame", [
    pytest.param(b"\xff" * 64, id="garbage"),
    pytest.param(struct.pack("<I", wire.MAX_REQUEST + 1) + b"x" * 100, id="oversized"),
    pytest.param(struct.pack("<I", 1000) + b"\x93\x01", id="truncated"),
    pytest.param(wire.pack({"not": "a list"}), id="not-a-request"),
    pytest.param(wire.pack([1, 2, 3, 4, 5]), id="wrong-arity"),
    pytest.param(struct.pack("<I", 6) + b"\xdd\xff\xff\xff\xff\x00", id="msgpack-bomb"),
])
def test_malformed_frames_drop_only_that_connection(frame: bytes, victim: Any, pool: str) -> None:
    vol, _before = victim
    sock = _raw(pool)
    _hello(sock)
    sock.sendall(frame)
    if frame.startswith(struct.pack("<I", 1000)):
        sock.shutdown(socket.SHUT_WR)                  # the rest never comes
    assert _dropped(sock)
    sock.close()
    assert vol.listdir("/d") == ["f"]                  # the others carry on


def test_no_hello_and_garbage_before_it(victim: Any, pool: str) -> None:
    vol, _before = victim
    for first in (wire.pack([1, "stat", ["/"]]), b"\x00\x00\x00\x00"):
        sock = _raw(pool)
        sock.sendall(first)
        assert _dropped(sock)
        sock.close()
    assert vol.stat("/d/f").st_size == 8000


# Valid argument lists for each operation; the fuzz changes one argument to a wrong type.
_TEMPLATES: dict[str, list[Any]] = {
    "stat": ["/d/f"], "listdir": ["/d"], "mkdir": ["/x", 0o755, False, False, 0o22], "rmdir": ["/d"],
    "unlink": ["/d/f", None], "rename": ["/d/f", "/d/g", True], "link": ["/d/f", "/d/h"],
    "chmod": ["/d/f", 0o600], "chown": ["/d/f", 0, 0], "utime": ["/d/f", [1, 2]],
    "open": ["/d/f", "r+b", None, 0o22], "clone_file": ["/d/f", "/d/k", 0o22],
    "copy_file_range": ["/d/f", 0, "/d/f", 9000, 10], "owners": [0, 4096],
}
_WRONG = [1.5, [1, 2], {"a": 1}, b"\xff\x00", 2**64 - 1, -(2**63), True, None, "\udcff", ""]


def test_arguments_of_the_wrong_type_are_errors_and_change_nothing(victim: Any, pool: str) -> None:
    vol, _before = victim
    rng = random.Random(7)
    sock = _raw(pool)
    _hello(sock)
    rid = 10
    replies = 0
    for op, template in _TEMPLATES.items():
        for i in range(len(template)):
            for wrong in _WRONG:
                args = list(template)
                if type(args[i]) is type(wrong) or (wrong is None and args[i] is None):
                    continue
                if wrong is True and type(args[i]) is int:
                    continue           # a bool is an int, as os takes it (mkdir(p, True) is mode 1)
                args[i] = wrong
                if op == "open" and i == 2 and isinstance(wrong, str):
                    continue           # a holder name of "" or "\udcff" is just a name
                if op == "utime" and i == 1 and wrong is None:
                    continue           # utime(path, None) is "now", as os.utime
                reply = _call(sock, rid, op, args)
                rid += 1
                replies += 1
                assert reply[1] == "err", f"{op}{args} was accepted: {reply}"
                assert reply[2].get("type") in ("TypeError", "ValueError", "OverflowError", "FileNotFoundError",
                                                "OSError", "InvalidPathError", "UnicodeEncodeError", "RuntimeError",
                                                "IsADirectoryError", "NotADirectoryError", "FileExistsError"), reply
    for _ in range(200):                       # random operations and argument lists
        op = rng.choice(["nosuchop", "", "__init__", "_handle", "op_stat", *_TEMPLATES])
        args = [rng.choice(_WRONG) for _ in range(rng.randrange(0, 7))]
        reply = _call(sock, rid, op, args)
        rid += 1
        assert reply[1] == "err"
    assert replies > 100
    assert _call(sock, rid, "stat", ["/d/f"])[1] == "ok"      # the connection itself is fine
    sock.close()


def test_a_client_that_never_reads_its_replies_is_dropped(victim: Any, pool: str) -> None:
    vol, _before = victim
    sock = _raw(pool)
    _hello(sock)
    handle = _call(sock, 2, "open", ["/d/f", "rb", None, 0o22])[2]["h"]
    sock.settimeout(10)
    request = wire.pack([5, "pread", [handle, 8000, 0]]) * 16      # 8 KB replies it never reads
    dropped = False
    try:
        for _ in range(20000):                # at most 64 MiB wait for it, then it goes
            sock.sendall(request)
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        dropped = True
    assert dropped or _dropped(sock)
    sock.close()
    assert vol.listdir("/d") == ["f"] and vol.stat("/d/f").st_size == 8000


_OPEN_AS = """
import importlib, os, pkgutil, sys, daxfs
# Every daxfs module is loaded before the user changes: the interpreter's own directory (root's,
# in CI) may not be readable by that user, and daxfs imports a few modules only when first used.
for module in pkgutil.walk_packages(daxfs.__path__, "daxfs."):
    importlib.import_module(module.name)
os.setgroups([]); os.setgid(int(sys.argv[2])); os.setuid(int(sys.argv[2]))
daxfs.open_volume(sys.argv[1]).close()
print("opened")
"""


@root_only
@pytest.mark.parametrize("table_mode", ["as the arbiter made it", "0600 (an older arbiter's)"])
def test_another_user_may_open_a_pool_an_arbiter_served(table_mode: str, pool: str,
                                                        serve: Callable[..., ServerProcess]) -> None:
    """The holder table is read by every read-write open; one the opener may not read must not
    lock them out of a pool they may open (it did: EACCES from a 0600 root-owned table)."""
    import subprocess
    os.chmod(pool, 0o666)
    server = serve()
    table = pool + ".holders"
    assert os.stat(table).st_mode & 0o777 == 0o666              # as open as the pool, no more
    server.stop(signal.SIGKILL)                                 # a clean stop removes the table
    assert os.path.exists(table)
    if table_mode.startswith("0600"):
        os.chmod(table, 0o600)
    done = subprocess.run([sys.executable, "-c", _OPEN_AS, pool, "1000"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "opened"


@root_only
def test_a_file_put_at_the_sockets_place_after_the_bind_is_not_given_away(
        pool: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever may write the pool's directory could replace the arbiter's new socket with a
    second name of another file between the bind and the chown/chmod, which went by path:
    the arbiter (root) gave that file to the pool's owner.  Now it refuses, and the file
    keeps its owner and mode."""
    from daxfs.adapters.server import Server
    victim = pool + ".victim"             # (a hard link: on the pool's file system)
    with open(victim, "wb") as f:
        f.write(b"root's")
    os.chmod(victim, 0o600)
    os.chmod(pool, 0o666)
    os.chown(pool, 1000, 1000)
    real_bind = socket.socket.bind

    def bind_then_swap(self: socket.socket, address: Any) -> None:
        real_bind(self, address)
        if isinstance(address, str) and address.endswith(".sock"):
            os.unlink(address)
            os.link(victim, address)

    monkeypatch.setattr(socket.socket, "bind", bind_then_swap)
    with pytest.raises(daxfs.BusyError, match="replaced"):
        Server(pool, log=None)
    info = os.stat(victim)
    assert (info.st_uid, info.st_mode & 0o777) == (0, 0o600)
    os.unlink(pool + ".sock")
    os.unlink(victim)
