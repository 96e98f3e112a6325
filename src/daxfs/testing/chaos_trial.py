"""Where a thread-chaos trial runs (see ``daxfs.testing.chaos`` for the workers and the
property they hold): an embedded volume, clients of ``daxfs serve`` in another process, or
that server's FUSE mount with tools making plain system calls beside clients that map and
pin; optionally a follower process reading all along, or a forced close half way through.

``python -m daxfs.testing.chaos_trial follow POOL STOPFILE`` is the follower;
``... victim POOL SEED OPS`` a client process that is killed half way (see ``Reaper``).
"""

from __future__ import annotations

import errno
import gc
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Any

import daxfs
from daxfs.testing.chaos import (BLOCK, EXPECTED, FAMILIES, MAX_SIZE, Leak, SharedLock, Worker, check_volume, check_words,
                                 tagged)


class MountWorker(Worker):
    """A thread of a tool working on the mount with plain system calls (``daxfs serve --mount``),
    beside clients that map and pin the same files."""

    def __init__(self, root: str, *args: Any) -> None:
        super().__init__(None, *args)
        self.root = root

    def menu(self) -> list[Any]:
        return MOUNT_OPS

    def os_path(self, family: int) -> str:
        return os.path.join(self.root, f"f{family}", str(self.rng.randrange(2)))

    def let_go(self) -> None:
        pass

    def os_pwrite(self) -> None:
        family = self.rng.randrange(FAMILIES)
        off = self.rng.randrange(0, MAX_SIZE, 8)
        n = min(self.rng.choice([1, 16, 512, 1024]), (MAX_SIZE - off) // 8) or 1
        # (write-only half the time: the mount serves those differently, no FLUSH at close)
        access = os.O_WRONLY if self.rng.random() < 0.5 else os.O_RDWR
        fd = os.open(self.os_path(family), access | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, tagged(family, self.next_serial(n), n), off)
        finally:
            os.close(fd)

    def os_pread(self) -> None:
        family = self.rng.randrange(FAMILIES)
        fd = os.open(self.os_path(family), os.O_RDONLY)
        try:
            check_words(os.pread(fd, MAX_SIZE + BLOCK, 0), family, f"a read on the mount, family {family}")
        finally:
            os.close(fd)

    def os_truncate(self) -> None:
        family = self.rng.randrange(FAMILIES)
        os.truncate(self.os_path(family), self.rng.randrange(0, MAX_SIZE, 8))

    def os_share(self) -> None:
        family = self.rng.randrange(FAMILIES)
        src, dst = (os.path.join(self.root, f"f{family}", n) for n in ("0", "1"))
        if self.rng.random() < 0.5:
            src, dst = dst, src
        a = os.open(src, os.O_RDONLY)
        try:
            b = os.open(dst, os.O_RDWR)
            try:
                # (block-aligned half the time: the mount shares whole blocks then)
                step = BLOCK if self.rng.random() < 0.5 else 8
                so, do = self.rng.randrange(0, MAX_SIZE, step), self.rng.randrange(0, MAX_SIZE, step)
                os.copy_file_range(a, b, self.rng.randrange(step, 3 * BLOCK + 1, step), so, do)
            finally:
                os.close(b)
        finally:
            os.close(a)

    def os_unlink(self) -> None:
        os.unlink(self.os_path(self.rng.randrange(FAMILIES)))

    def os_rename(self) -> None:
        family = self.rng.randrange(FAMILIES)
        a, b = (os.path.join(self.root, f"f{family}", n) for n in ("0", "1"))
        os.rename(*((a, b) if self.rng.random() < 0.5 else (b, a)))


MOUNT_OPS = [MountWorker.os_pwrite, MountWorker.os_pwrite, MountWorker.os_pread, MountWorker.os_pread,
             MountWorker.os_truncate, MountWorker.os_share, MountWorker.os_unlink, MountWorker.os_rename]


def follow(path: str, stop: str) -> int:
    """A read-only opener in its own process, reading every file while the writer's threads
    churn: what it reads must never be another family's word either (a follower copies
    from blocks the writer may free and reuse meanwhile).  Prints its counts; 1 on a leak."""
    reads = gone = 0
    with daxfs.open_volume(path, readonly=True) as vol:
        print("ready", flush=True)
        while not os.path.exists(stop):
            for family in range(FAMILIES):
                try:
                    names = vol.listdir(f"/f{family}")
                except FileNotFoundError:
                    continue
                for name in names:
                    try:
                        with vol.open(f"/f{family}/{name}", "rb", buffering=0) as f:
                            data = f.pread(MAX_SIZE + BLOCK, 0)
                    except OSError as exc:
                        if exc.errno not in (errno.ENOENT, errno.ESTALE, errno.EIO):
                            raise
                        gone += 1
                        continue
                    try:
                        check_words(data, family, f"follower: /f{family}/{name}")
                    except Leak as leak:
                        print(f"LEAK {leak}", flush=True)
                        return 1
                    reads += 1
    print(f"reads {reads} gone {gone}", flush=True)
    return 0


def victim(path: str, seed: int, ops: int) -> int:
    """A client in its own process working like a chaos thread until it is killed: it prints
    ``ready`` once connected and a line after each operation answered, so that whoever
    kills it picks how many it got through.  On SIGUSR1 it drops its connection and lives
    on (``_drop_and_watch``); when its arbiter is killed it stops, holding what it holds, and
    watches (``_watch``); started while no arbiter listens, it says ``noserver`` and ends.
    1 (and a ``FAIL`` line) on a leak or a wrong answer."""
    try:
        client = daxfs.connect(path, name=f"victim-{seed}")
    except ConnectionError:
        print("noserver", flush=True)       # (the arbiter is being restarted: see Reaper)
        return 0
    # serials of its own: words stay unique across processes (only the family is checked)
    worker = Worker(client, random.Random(seed), ops, [(seed & 0xFFFF) << 24], threading.Lock(), 0.01,
                    SharedLock(), False)
    worker.outlives_arbiter = True      # its arbiter killed (kill_server): it stops, holding on
    drop = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: drop.set())

    def after_op(i: int) -> None:
        print(i, flush=True)
        if drop.is_set():
            _drop_and_watch(path, client, worker)

    worker.after_op = after_op
    print("ready", flush=True)
    worker.run()
    if worker.error is not None:
        print("FAIL " + repr(worker.error) + " | " + worker.traceback.replace("\n", " | "), flush=True)
        return 1
    if worker.lost:
        _watch(worker)
    client.close()
    print("done", flush=True)
    return 0


def _watch(worker: Worker) -> None:
    """Its arbiter was killed: read every pin and mapping until killed (a line each round, so
    the reaper's count goes on); a word of another family is a Leak, as in ``victim``."""
    print("lost", flush=True)
    while True:
        for family, ref, _writable in list(worker.refs):
            try:
                view = ref.buffer
            except ValueError:
                continue
            check_words(view, family, f"a client of a killed arbiter: its {type(ref).__name__} of family {family}")
        print("watch", flush=True)
        time.sleep(0.005)


def _drop_and_watch(path: str, client: Any, worker: Worker) -> None:
    """The connection goes while the process lives on, holding what it held: the arbiter must
    keep those blocks until the process dies (its slot's lock), and the client's pins keep
    showing the pool meanwhile.  Until killed, it cuts the pinned files through a second
    connection and writes another family's words into fresh blocks (what a freed block
    would go to), and reads every pin, and every mapping (migrated to private memory when
    the arbiter went): a word of another family is a Leak."""
    for _ in range(3):      # pins first (what a device would still write into)
        try:
            worker.pin()
        except (OSError, ValueError):
            pass
    client._sock.shutdown(socket.SHUT_RDWR)
    for _ in range(2000):
        if client.lost:
            break
        time.sleep(0.001)
    try:
        other: Any = daxfs.connect(path, name=f"{client.name}-after")
    except ConnectionError:
        other = None            # (the arbiter was killed meanwhile: it only reads its pins)
    print("dropped", flush=True)
    serial = worker.next_serial(0)
    while True:
        for family, ref, _writable in list(worker.refs):
            try:
                view = ref.buffer
            except ValueError:
                continue        # closed
            check_words(view, family, f"a dropped client's {type(ref).__name__} of family {family}")
            if not hasattr(ref, "release") or other is None:
                continue        # (a mapping: migrated, nothing of the pool left to cut)
            other_family = (family + 1) % FAMILIES
            try:
                other.truncate(ref.path, 0)
                with other.open(f"/f{other_family}/{worker.rng.randrange(2)}", "wb", buffering=0) as f:
                    f.write(tagged(other_family, serial, 2 * BLOCK // 8))
            except ConnectionError:
                other = None    # (the arbiter was killed: from now on it only reads its pins)
            except OSError as exc:
                if exc.errno not in EXPECTED:
                    raise


class Reaper(threading.Thread):
    """Starts victim clients one after another and kills each with SIGKILL after a random
    number of answered operations (0 to ``most``): mid-write, mid-map, holding pins, with
    prepared blocks not yet committed.  A third of them first drop their connection and
    live on a moment, reading what they still show, before the kill.  Whatever a dead
    client held must go back."""

    def __init__(self, path: str, rng: random.Random, most: int = 60) -> None:
        super().__init__(daemon=True)
        self.path, self.rng, self.most = path, rng, most
        self.stop = threading.Event()
        self.kills = self.drops = self.outlived = 0
        self.error: str | None = None

    def run(self) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        while not self.stop.is_set() and self.error is None:
            seed = self.rng.randrange(1 << 30)
            dropping = self.rng.random() < 1 / 3
            proc = subprocess.Popen([sys.executable, "-m", "daxfs.testing.chaos_trial", "victim", self.path,
                                     str(seed), "100000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=env)
            try:
                said = [proc.stdout.readline()]                          # type: ignore[union-attr]
                if said[0].strip() == "noserver":                        # (an arbiter being restarted)
                    proc.wait()
                    time.sleep(0.01)
                    continue
                if said[0].strip() == "ready":
                    for _ in range(self.rng.randrange(self.most + 1)):
                        said.append(proc.stdout.readline())              # type: ignore[union-attr]
                        if not said[-1] or said[-1].startswith("FAIL"):
                            break
                    if dropping and said[-1] and not said[-1].startswith("FAIL"):
                        proc.send_signal(signal.SIGUSR1)
                        # (a victim whose arbiter was killed only watches: it drops nothing)
                        while said[-1] and said[-1].strip() not in ("dropped", "lost", "watch") \
                                and not said[-1].startswith("FAIL"):
                            said.append(proc.stdout.readline())          # type: ignore[union-attr]
                        if said[-1].strip() == "dropped":
                            self.drops += 1
                            time.sleep(self.rng.uniform(0.05, 0.3))      # it reads while the others churn
            finally:
                proc.kill()
                out, err = proc.communicate()
            lines = [line for line in said + out.splitlines() if line.startswith("FAIL")]
            if lines or said[0].strip() != "ready":
                self.error = f"victim {seed}: {lines[0] if lines else said[0] + err[-2000:]}"
            else:
                self.kills += 1
                self.outlived += "lost\n" in said or "lost" in out.splitlines()


def _stop(reapers: list[Reaper]) -> None:
    for r in reapers:
        r.stop.set()
    for r in reapers:
        r.join()


def _released(client: Any, tries: int = 400) -> bool:
    """Whether no reference is left and no block is busy (polled a bounded number of times:
    an arbiter learns of a client's death from the socket's end, between other requests)."""
    for _ in range(tries):
        st = client.statfs()
        if not client.pins() and st.busy == 0:
            return True
        time.sleep(0.025)
    return False


def _serve(path: str, policy: str, mount: str | None = None) -> subprocess.Popen:
    """``daxfs serve path`` in another process, once its socket answers."""
    proc = subprocess.Popen([sys.executable, "-m", "daxfs", "serve", path, "--policy", policy,
                             "--lease-break-s", "0.02", *(["--mount", mount] if mount else [])],
                            stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    for _ in range(400):
        if proc.poll() is not None:
            raise RuntimeError(f"daxfs serve exited: {proc.stderr.read()}")  # type: ignore[union-attr]
        try:
            daxfs.connect(path).close()
            return proc
        except OSError:
            time.sleep(0.025)
    proc.kill()
    raise RuntimeError("daxfs serve did not answer")


def _after_a_killed_arbiter(path: str, policy: str, old: list[Worker], rng: random.Random, ops: int,
                            wait_s: float, serial: list[int], lock: threading.Lock,
                            fence: SharedLock) -> tuple[subprocess.Popen, list[Any], dict[str, int]]:
    """The arbiter was SIGKILLed under the ``old`` workers, which stopped holding their
    references.  A new arbiter starts: it must keep busy every block their pins hold (their
    slots in the holder table say which) while new clients churn, cutting the pinned files
    and writing other families' words into fresh blocks, and the old workers read their pins
    and store through the writable ones (a device still at work).  Then the old workers let
    go, and the new arbiter must free it all.  Returns the new arbiter, its clients and counts."""
    held = [(w, family, ref, write) for w in old for family, ref, write in w.refs]
    for w, family, ref, _write in held:
        w.touch(family, ref, False)
    server = _serve(path, policy)
    try:
        clients, counts = _churn_and_let_go(path, old, held, rng, ops, wait_s, serial, lock, fence)
    except BaseException:
        server.kill()       # (the trial only knows of the arbiter it started itself)
        server.wait()
        raise
    return server, clients, counts


def _churn_and_let_go(path: str, old: list[Worker], held: list[tuple[Worker, int, Any, bool]], rng: random.Random,
                      ops: int, wait_s: float, serial: list[int], lock: threading.Lock,
                      fence: SharedLock) -> tuple[list[Any], dict[str, int]]:
    """New clients churn while the ``old`` workers' references are read and stored through;
    then those let go.  The new clients and the counts."""
    clients = [daxfs.connect(path, name=f"after-{i}") for i in range(len(old))]
    fresh = [Worker(c, random.Random(rng.random()), ops, serial, lock, wait_s, fence, False) for c in clients]
    for w in fresh:
        w.start()
    cutter = clients[0]
    cuts = 0
    while any(w.is_alive() for w in fresh):
        for w, family, ref, write in held:
            w.touch(family, ref, write)
            if not hasattr(ref, "release"):
                continue        # a mapping, migrated to private memory: nothing of the pool to cut
            other = (family + 1) % FAMILIES
            try:
                cutter.truncate(ref.path, 0)
                with cutter.open(f"/f{other}/{rng.randrange(2)}", "wb", buffering=0) as f:
                    f.write(tagged(other, w.next_serial(2 * BLOCK // 8), 2 * BLOCK // 8))
                cuts += 1
            except OSError as exc:
                if exc.errno not in EXPECTED:
                    raise
        if not held:
            time.sleep(0.01)
    for w in fresh:
        w.join()
        if w.error is not None:
            raise AssertionError(f"a thread after the arbiter's restart failed: {w.error!r}\n{w.traceback}")
    for w, family, ref, _write in held:
        w.touch(family, ref, False)
    for w in old:
        w.let_go()
        try:
            w.vol.close()
        except OSError:
            pass        # (a client that had not yet read the end of its connection)
    counts = {"arbiter-killed-refs-held": len(held), "arbiter-killed-cuts": cuts}
    for w in fresh:
        for k, v in w.counts.items():
            counts[f"after-restart {k}"] = counts.get(f"after-restart {k}", 0) + v
    return clients, counts


def trial(seed: int, threads: int, ops: int, wait_s: float, pool_dir: str = "/dev/shm",
          front: str = "embedded", close_during: bool = False, follower: bool = False,
          kill_clients: int = 0, kill_server: bool = False) -> dict[str, int]:
    """One run; raises on any failure.  Returns the operation counts.

    ``front="client"``: the volume is served by ``daxfs serve`` in another process and each
    thread is a client of its own (a holder, as a process would be); no thread reports memory
    failures then: a client learns of a fence in its mappings from an event that comes when
    it comes (as SIGBUS does), so no lock of the threads' could keep them off fenced pages.
    ``close_during`` (embedded): half way through, ``close(force=True)`` races the threads;
    each stops at its first "closed" answer, and the pool must mount clean after.
    ``follower``: a read-only opener in another process reads every file all along.
    ``front="mount"``: ``daxfs serve --mount`` in another process; half the threads are tools
    making plain system calls on the mount (pwrite, pread, truncate,
    copy_file_range, unlink, rename), the others clients mapping and pinning the same files.
    ``kill_clients`` (client front): that many victim clients in processes of their own work
    beside the threads, each killed with SIGKILL after a random number of operations and
    replaced.  ``kill_server`` (client front): half way through, the arbiter is SIGKILLed
    under the threads and another started (``_after_a_killed_arbiter``).  On every front, once the threads are done (and the victims dead) no
    reference may be left and no block busy."""
    path = os.path.join(pool_dir, f"chaos-{uuid.uuid4().hex}.pool")
    rng = random.Random(seed)
    switch = sys.getswitchinterval()
    server = None
    mount: str | None = None
    clients: list[Any] = []
    reapers: list[Reaper] = []
    try:
        vol = daxfs.mkfs(path, 32 << 20)
        for family in range(FAMILIES):
            vol.mkdir(f"/f{family}")
        vol.close()
        policy = rng.choice(["defer", "break", "refuse"])
        if front in ("client", "mount"):
            if front == "mount":
                mount = tempfile.mkdtemp(prefix="daxfs-chaos-")
                os.chmod(mount, 0o755)
            server = _serve(path, policy, mount)
            vol = None
            clients = [daxfs.connect(path, name=f"chaos-{i}") for i in range(threads)]
        else:
            vol = daxfs.open_volume(path, policy=policy, lease_break_s=0.02,
                                    durability=rng.choice(["sync", "lazy"]))
            clients = [vol] * threads
        reader, reads = None, 0
        if follower:
            reader = subprocess.Popen([sys.executable, "-m", "daxfs.testing.chaos_trial", "follow", path, path + ".stop"],
                                      stdout=subprocess.PIPE, text=True,
                                      env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
            if reader.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
                raise AssertionError("the follower did not open the volume")
        serial, lock, fence = [1], threading.Lock(), SharedLock()
        workers = [Worker(clients[i], random.Random(rng.random()), ops, serial, lock, wait_s, fence,
                          front == "embedded")
                   for i in range(threads)]
        if mount is not None:       # half the threads are tools on the mount
            workers[::2] = [MountWorker(mount, random.Random(rng.random()), ops, serial, lock, wait_s, fence, False)
                            for _ in workers[::2]]
        if close_during or kill_server:
            halfway, closing = threading.Barrier(threads + 1), threading.Event()
            for w in workers:
                w.halfway, w.closing = halfway, closing
        reapers += [Reaper(path, random.Random(rng.random())) for _ in range(kill_clients if server else 0)]
        sys.setswitchinterval(2e-5)
        for w in workers + reapers:
            w.start()
        if close_during:
            # Half way through, a forced close races the threads: leases broken, mappings
            # revoked to private memory, pins waited for (BusyError while one stays: again).
            halfway.wait()
            closing.set()
            while not vol.closed:
                try:
                    vol.close(force=True, timeout=0.01)
                except daxfs.BusyError:
                    pass
        if kill_server and server is not None:
            closing.set()       # (before the kill: a thread told ServerLost stops, holding on)
            halfway.wait()
            server.kill()
            server.wait()
            server = None
        for w in workers:
            w.join()
        if not kill_server:
            _stop(reapers)
        sys.setswitchinterval(switch)
        for w in workers:
            if w.error is not None:
                raise AssertionError(f"thread failed: {w.error!r}\n{w.traceback}")
        restarted: dict[str, int] = {}
        if kill_server and front == "client":
            # (the victims live on across the restart: those the old arbiter served stop and
            # watch their pins, which the new one must keep until they are killed)
            server, clients, restarted = _after_a_killed_arbiter(path, policy, workers, rng, ops // 2, wait_s,
                                                                 serial, lock, fence)
            _stop(reapers)
        for r in reapers:
            if r.error is not None:
                raise AssertionError(f"a victim client failed: {r.error}")
        if close_during:
            vol = daxfs.open_volume(path)
            clients = [vol]
        gc.collect()        # exports of let-go views caught in cycles go, and their holds with them
        if not _released(clients[0]):
            raise AssertionError(f"held after every thread{' and killed client' if reapers else ''} let go: "
                                 f"{clients[0].pins()[:3]}, busy {clients[0].statfs().busy}")
        if reader is not None:
            with open(path + ".stop", "w"):
                pass
            said = reader.communicate(timeout=60)[0].strip()
            if reader.returncode != 0 or not said.startswith("reads "):
                raise AssertionError(f"the follower: {said.strip()} (exit {reader.returncode})")
            reads = int(said.split()[1])
            if reads == 0:
                raise AssertionError(f"the follower read nothing: {said.strip()}")
        check_volume(clients[0], "after the threads")
        if server is not None:
            for c in clients:
                c.close()
            clients = []
            server.send_signal(signal.SIGTERM)
            if server.wait(30) != 0:
                raise AssertionError(f"daxfs serve exited {server.returncode}: {server.stderr.read()}")  # type: ignore[union-attr]
            server = None
        else:
            vol.close()
        vol = daxfs.open_volume(path)
        check_volume(vol, "after a remount")
        vol.close()
        counts: dict[str, int] = {"follower-reads": reads} if follower else {}
        counts.update(restarted)
        if reapers:
            counts["victims-killed"] = sum(r.kills for r in reapers)
            counts["victims-dropped-first"] = sum(r.drops for r in reapers)
            if kill_server:
                counts["victims-outlived-their-arbiter"] = sum(r.outlived for r in reapers)
        for w in workers:
            for k, v in w.counts.items():
                counts[k] = counts.get(k, 0) + v
        return counts
    finally:
        sys.setswitchinterval(switch)
        for r in reapers:
            r.stop.set()
        if server is not None:
            server.kill()
            server.wait()
            if mount is not None:
                subprocess.run([sys.executable, "-m", "daxfs", "umount", "-l", mount], check=False,
                               stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
        if mount is not None:
            try:
                os.rmdir(mount)
            except OSError:
                pass
        for leftover in (path, path + ".sock", path + ".holders", path + ".stop"):
            try:
                os.unlink(leftover)
            except FileNotFoundError:
                pass


if __name__ == "__main__":
    if sys.argv[1:2] == ["follow"]:
        sys.exit(follow(sys.argv[2], sys.argv[3]))
    if sys.argv[1:2] == ["victim"]:
        sys.exit(victim(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    sys.exit("usage: python -m daxfs.testing.chaos_trial follow POOL STOPFILE | victim POOL SEED OPS")
