"""Thread chaos: many threads change, share, map and pin the same files of one volume at once.

The property held is the one a user can least afford to lose: **a file never shows another
file's bytes**.  Files come in families (two paths each); every byte any thread writes —
through ``pwrite``, a write mapping or a write pin — is an 8-byte word naming its family,
and blocks are shared (clone, copy) only inside a family.  A read, a mapping or a pin that
shows a word of another family means a block went to two files at once: one freed while a
mapping, pin or pending change could still reach it, or reused under a stale extent.

Policies are mixed per call (``wait`` with short timeouts lets the volume's lock go while
it waits, which is where races live; the volume's own policy, used by calls that take no
timeout — open with truncation, rename over a file, unlink — is never ``wait``: a thread
waiting for its own mapping to go would wait for ever; ``break`` with leases whose
callbacks close or leave their mappings), memory failures are reported under files that
are mapped and pinned, the interpreter switches threads every few microseconds, and after
the threads stop: every reference is let go, ``fsck`` is clean, free + used + busy + bad ==
size, the volume closes without force, and it mounts again with every file still clean.

``trial(seed, threads, ops, wait_s, front=...)`` runs one; ``front="client"`` runs the
threads as clients of ``daxfs serve`` in another process (each its own holder).
stress/thread_chaos.py runs hundreds; tests/test_thread_chaos.py a few.
"""


from __future__ import annotations

import contextlib
import errno
import os
import random
import signal
import subprocess
import struct
import sys
import tempfile
import threading
import time
import traceback
import uuid
from typing import Any, Iterator

import daxfs

from daxfs.errors import CorruptVolumeError, PoisonError

MAGIC = 0xDA7F
BLOCK = 4096
FAMILIES = 6
MAX_SIZE = 24 * BLOCK
# What a call may answer in a race and still be right: the file went, the range is held,
# it reaches past a size another thread just cut, the pool is full.
EXPECTED = {errno.ENOENT, errno.EBUSY, errno.ESTALE, errno.EINVAL, errno.ENOSPC, errno.EXDEV,
            errno.EEXIST, errno.ENOTEMPTY, errno.EBADF, errno.ETXTBSY,
            errno.EIO}  # (EIO: a PoisonError, a read of a block reported bad)


class Leak(AssertionError):
    """A file showed a word it never could have held."""


def word(family: int, serial: int) -> int:
    return (MAGIC << 48) | (family << 40) | (serial & (1 << 40) - 1)


def tagged(family: int, serial: int, n_words: int) -> bytes:
    return b"".join(struct.pack("<Q", word(family, serial + i)) for i in range(n_words))


def check_words(buf: Any, family: int, where: str) -> None:
    """Every 8-byte word is zero or a word of ``family``."""
    data = bytes(buf)
    usable = len(data) - len(data) % 8
    for i in range(0, usable, 8):
        (w,) = struct.unpack_from("<Q", data, i)
        if w == 0:
            continue
        if w >> 48 != MAGIC or (w >> 40) & 0xFF != family:
            raise Leak(f"{where}: word {w:#018x} at byte {i} is not family {family}'s "
                       f"(family {(w >> 40) & 0xFF}, magic {w >> 48:#x})")


class SharedLock:
    """Many holders at once (``shared``) or one alone (``exclusive``)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._sharing = 0
        self._alone = False

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._alone)
            self._sharing += 1
        try:
            yield
        finally:
            with self._cond:
                self._sharing -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._alone and not self._sharing)
            self._alone = True
        try:
            yield
        finally:
            with self._cond:
                self._alone = False
                self._cond.notify_all()


class Worker(threading.Thread):
    def __init__(self, vol: Any, rng: random.Random, ops: int, serial: list[int],
                 serial_lock: threading.Lock, wait_s: float, fence: SharedLock, failures: bool) -> None:
        super().__init__(daemon=True)
        self.vol, self.rng, self.ops, self.wait_s = vol, rng, ops, wait_s
        self.serial, self.serial_lock, self.fence = serial, serial_lock, fence
        self.failures = failures
        self.halfway: threading.Barrier | None = None      # (a close during the run: see trial)
        self.closing: threading.Event | None = None
        self.handles: list[tuple[int, Any]] = []     # (family, File)
        self.refs: list[tuple[int, Any, bool]] = []  # (family, Mapping or Pin, writable)
        self.error: BaseException | None = None
        self.counts: dict[str, int] = {}

    def menu(self) -> list[Any]:
        return OPS

    def next_serial(self, n: int) -> int:
        with self.serial_lock:
            s = self.serial[0]
            self.serial[0] += n
        return s

    def path(self, family: int) -> str:
        return f"/f{family}/{self.rng.randrange(2)}"

    def policy(self) -> dict[str, Any]:
        p = self.rng.choice(["defer", "wait", "wait", "break", "refuse"])
        out: dict[str, Any] = {"policy": p}
        if p == "wait":
            out["timeout"] = self.wait_s
        return out

    def run(self) -> None:
        try:
            for i in range(self.ops):
                if i == self.ops // 2 and self.halfway is not None:
                    self.halfway.wait()
                op = self.rng.choice(self.menu())
                try:
                    op(self)
                    self.counts[op.__name__] = self.counts.get(op.__name__, 0) + 1
                except Leak:
                    raise
                except CorruptVolumeError:
                    raise
                except ValueError as exc:
                    if self.closing is not None and self.closing.is_set() and "closed" in str(exc):
                        self.counts["closed"] = self.counts.get("closed", 0) + 1
                        return      # the volume was closed under this thread: it stops

                    # a size another thread just cut (as mmap says it), or a mapping whose
                    # lease another thread broke, its on_break closing it
                    if not any(s in str(exc) for s in ("past the end", "greater than file size",
                                                         "mapping is closed")):
                        raise
                    key = f"{op.__name__}:past-end"
                    self.counts[key] = self.counts.get(key, 0) + 1
                except OSError as exc:
                    if exc.errno == errno.EROFS or exc.errno not in EXPECTED:
                        raise
                    key = f"{op.__name__}:{errno.errorcode.get(exc.errno or 0, exc.errno)}"
                    self.counts[key] = self.counts.get(key, 0) + 1
        except BaseException as exc:  # noqa: BLE001 — reported by the trial
            self.error = exc
            self.traceback = traceback.format_exc()
        finally:
            self.let_go()

    def let_go(self) -> None:
        for _fam, ref, _w in self.refs:
            try:
                ref.close() if hasattr(ref, "close") else ref.release()
            except OSError:
                pass
        self.refs.clear()
        for _fam, f in self.handles:
            try:
                f.close()
            except OSError:
                pass
        self.handles.clear()

    # ------------------------------------------------------------------ operations

    def handle(self) -> tuple[int, Any] | None:
        if self.handles and self.rng.random() < 0.8:
            return self.rng.choice(self.handles)
        family = self.rng.randrange(FAMILIES)
        mode = self.rng.choice(["r+b", "r+b", "a+b", "w+b"]) if self.rng.random() < 0.9 else "x+b"
        try:
            f = self.vol.open(self.path(family), mode, buffering=0)
        except FileNotFoundError:
            f = self.vol.open(self.path(family), "a+b", buffering=0)
        self.handles.append((family, f))
        if len(self.handles) > 3:
            fam, old = self.handles.pop(0)
            old.close()
        return family, f

    def pwrite(self) -> None:
        family, f = self.handle()
        off = self.rng.randrange(0, MAX_SIZE, 8)
        n = self.rng.choice([1, 16, 512, 1024])
        n = min(n, (MAX_SIZE - off) // 8) or 1
        f.pwrite(tagged(family, self.next_serial(n), n), off)

    def pread(self) -> None:
        family, f = self.handle()
        check_words(f.pread(MAX_SIZE + BLOCK, 0), family, f"pread of family {family}")

    def truncate(self) -> None:
        family, f = self.handle()
        f.truncate(self.rng.randrange(0, MAX_SIZE, 8), **self.policy())

    def punch(self) -> None:
        family, f = self.handle()
        off = self.rng.randrange(0, MAX_SIZE, 8)
        call = self.rng.choice(["punch_hole", "zero_range"])
        if call == "punch_hole":
            f.punch_hole(off, self.rng.randrange(8, MAX_SIZE, 8), **self.policy())
        else:
            f.zero_range(off, self.rng.randrange(8, MAX_SIZE, 8))

    def fallocate(self) -> None:
        family, f = self.handle()
        off = self.rng.randrange(0, MAX_SIZE, BLOCK)
        f.fallocate(off, self.rng.randrange(1, 4) * BLOCK, keep_size=self.rng.random() < 0.5)

    def share(self) -> None:
        family = self.rng.randrange(FAMILIES)
        src, dst = f"/f{family}/0", f"/f{family}/1"
        if self.rng.random() < 0.5:
            src, dst = dst, src
        kind = self.rng.choice(["clone_file", "clone_range", "copy_file_range", "dedupe_range"])
        if kind == "clone_file":
            self.vol.clone_file(src, dst)
        elif kind in ("clone_range", "dedupe_range"):
            so, do = self.rng.randrange(0, MAX_SIZE, BLOCK), self.rng.randrange(0, MAX_SIZE, BLOCK)
            if kind == "dedupe_range" and self.rng.random() < 0.5:
                do = so     # a range the last clone_file may have left equal
            getattr(self.vol, kind)(src, so, dst, do, self.rng.randrange(1, 4) * BLOCK)
        else:
            so, do = self.rng.randrange(0, MAX_SIZE, 8), self.rng.randrange(0, MAX_SIZE, 8)
            self.vol.copy_file_range(src, so, dst, do, self.rng.randrange(8, 3 * BLOCK, 8))

    def map(self) -> None:
        family, f = self.handle()
        size = f.stat().st_size
        write = self.rng.random() < 0.5
        if size < 8 and not write:
            return
        off = self.rng.randrange(0, max(size, 8), 8) // BLOCK * BLOCK if size else 0
        length = self.rng.randrange(8, 3 * BLOCK, 8)
        if not write:
            length = min(length, size - off) if size > off else 0
            if length <= 0:
                return
        lease = self.rng.random() < 0.4
        closes = self.rng.random() < 0.5

        def on_break(m: Any) -> None:
            if closes:
                m.close()

        m = f.map(off, length, write=write, lease=lease, on_break=on_break if lease else None)
        self.refs.append((family, m, write))
        self.touch(family, m, write)

    def pin(self) -> None:
        family, f = self.handle()
        size = f.stat().st_size
        write = self.rng.random() < 0.5
        off = self.rng.randrange(0, MAX_SIZE, BLOCK)
        length = self.rng.randrange(1, 3) * BLOCK
        if off + length > size:
            return
        p = f.pin(off, length, write=write)
        self.refs.append((family, p, write))
        self.touch(family, p, write)

    def touch(self, family: int, ref: Any, write: bool) -> None:
        if getattr(ref, "closed", False):
            return      # its lease's on_break closed it (maybe in the thread that broke it)
        # Memory a failure fenced in a mapping is a segmentation fault to touch (as SIGBUS is
        # on real memory): the threads agree not to report a failure while one touches.
        with self.fence.shared():
            try:
                buf = ref.buffer
            except ValueError:
                if not ref.closed:
                    raise
                return      # closed by a lease break in another thread since the line above
            # (buf stays valid if another thread closes the mapping now: its blocks linger)
            fenced = []     # (a pin's CPU view is fenced too; the pin itself stays)
            for off, n in ref.poisoned:
                lo = off // BLOCK * BLOCK - ref.offset
                fenced.append((lo, off + n - ref.offset - lo + BLOCK))
            where = f"{type(ref).__name__} of family {family}"
            if not fenced:
                check_words(buf, family, where)
            else:
                for i in range(0, len(buf) - 7, 8):
                    if not any(lo <= i < lo + n for lo, n in fenced):
                        check_words(buf[i:i + 8], family, f"{where} at {i}")
            if write and not getattr(ref, "revoked", False):
                n = min(len(buf) // 8, 64)
                i = self.rng.randrange(0, len(buf) // 8 - n + 1) * 8
                if any(lo < i + n * 8 and i < lo + ln for lo, ln in fenced):
                    return
                buf[i:i + n * 8] = tagged(family, self.next_serial(n), n)
                if hasattr(ref, "persist"):
                    ref.persist(i, n * 8)

    def revisit(self) -> None:
        """Look at (and store through) a reference held a while: what others did since must
        never have put another file's bytes under it."""
        if not self.refs:
            return
        family, ref, write = self.rng.choice(self.refs)
        self.touch(family, ref, write)

    def let_one_go(self) -> None:
        if not self.refs:
            return
        family, ref, _w = self.refs.pop(self.rng.randrange(len(self.refs)))
        self.touch(family, ref, False)
        ref.close() if hasattr(ref, "close") else ref.release()

    def unlink(self) -> None:
        family = self.rng.randrange(FAMILIES)
        # (no timeout to give a waiting unlink: a thread waiting on its own mapping waits for ever)
        self.vol.unlink(self.path(family), policy=self.rng.choice(["defer", "break", "refuse"]))

    def rename(self) -> None:
        family = self.rng.randrange(FAMILIES)
        a, b = f"/f{family}/0", f"/f{family}/1"
        if self.rng.random() < 0.5:
            a, b = b, a
        self.vol.rename(a, b)

    def memory_failure(self) -> None:
        """Report a block under a file bad (a few a trial): its owners are fenced, the block
        quarantined; what reads there fail with EIO, never show another file's bytes."""
        if not self.failures or self.vol.statfs().bad >= 8 * BLOCK:
            return
        family, f = self.handle()
        extents = [e for e in f.extents() if "unwritten" not in e.flags]
        if extents:
            e = self.rng.choice(extents)
            with self.fence.exclusive():
                self.vol.memory_failure(e.pool_offset + self.rng.randrange(e.length // BLOCK) * BLOCK, BLOCK)

    def holder(self) -> None:
        """A holder maps and pins, and its close lets everything go at once."""
        family = self.rng.randrange(FAMILIES)
        h = self.vol.holder(f"chaos-{self.name}")
        try:
            f = h.open(self.path(family), "r+b", buffering=0)
            size = f.stat().st_size
            if size >= BLOCK:
                p = f.pin(0, BLOCK, write=self.rng.random() < 0.5)
                self.touch(family, p, p.writable)
                m = f.map(0, size // 8 * 8, write=self.rng.random() < 0.5)
                self.touch(family, m, m.writable)
        finally:
            h.close()

    def close_one(self) -> None:
        if self.handles:
            _fam, f = self.handles.pop(self.rng.randrange(len(self.handles)))
            f.close()


OPS = [Worker.pwrite, Worker.pwrite, Worker.pread, Worker.truncate, Worker.punch, Worker.fallocate,
       Worker.share, Worker.share, Worker.map, Worker.map, Worker.pin, Worker.revisit, Worker.revisit,
       Worker.let_one_go, Worker.let_one_go, Worker.unlink, Worker.rename, Worker.close_one,
       Worker.memory_failure, Worker.holder]


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
        fd = os.open(self.os_path(family), os.O_RDWR | os.O_CREAT, 0o644)
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


def check_volume(vol: Any, where: str) -> None:
    problems = vol.fsck()
    if problems:
        raise AssertionError(f"{where}: fsck: {problems[:5]}")
    st = vol.statfs()
    if st.free + st.used + st.busy + st.bad != st.size:
        raise AssertionError(f"{where}: free {st.free} + used {st.used} + busy {st.busy} + bad {st.bad} "
                             f"!= size {st.size}")
    for family in range(FAMILIES):
        for name in vol.listdir(f"/f{family}"):
            with vol.open(f"/f{family}/{name}", "rb", buffering=0) as f:
                for off in range(0, f.stat().st_size, BLOCK):
                    try:
                        data = f.pread(BLOCK, off)
                    except PoisonError:
                        continue        # a block reported bad: EIO, as promised
                    check_words(data, family, f"{where}: /f{family}/{name} at {off}")


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


def trial(seed: int, threads: int, ops: int, wait_s: float, pool_dir: str = "/dev/shm",
          front: str = "embedded", close_during: bool = False, follower: bool = False) -> dict[str, int]:
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
    copy_file_range, unlink, rename), the others clients mapping and pinning the same files."""
    path = os.path.join(pool_dir, f"chaos-{uuid.uuid4().hex}.pool")
    rng = random.Random(seed)
    switch = sys.getswitchinterval()
    server = None
    mount: str | None = None
    clients: list[Any] = []
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
            reader = subprocess.Popen([sys.executable, "-m", "daxfs.testing.chaos", "follow", path, path + ".stop"],
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
        if close_during:
            halfway, closing = threading.Barrier(threads + 1), threading.Event()
            for w in workers:
                w.halfway, w.closing = halfway, closing
        sys.setswitchinterval(2e-5)
        for w in workers:
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
        for w in workers:
            w.join()
        sys.setswitchinterval(switch)
        for w in workers:
            if w.error is not None:
                raise AssertionError(f"thread failed: {w.error!r}\n{w.traceback}")
        if close_during:
            vol = daxfs.open_volume(path)
            clients = [vol]
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
        if clients[0].pins():
            raise AssertionError(f"references left after every thread let go: {clients[0].pins()[:3]}")
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
        for w in workers:
            for k, v in w.counts.items():
                counts[k] = counts.get(k, 0) + v
        return counts
    finally:
        sys.setswitchinterval(switch)
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
    sys.exit("usage: python -m daxfs.testing.chaos follow POOL STOPFILE")
