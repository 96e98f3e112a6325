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

``daxfs.testing.chaos_trial.trial`` runs one on each front end (embedded, clients of
``daxfs serve``, its FUSE mount); stress/thread_chaos.py runs hundreds;
tests/test_thread_chaos.py a few.
"""


from __future__ import annotations

import contextlib
import errno
import random
import struct
import threading
import traceback
from typing import Any, Callable, Iterator

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


def let_go_of(ref: Any) -> None:
    """Close a mapping or release a pin (a client's pins are their own class)."""
    if hasattr(ref, "release"):
        ref.release()
    else:
        ref.close()


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
        #: its arbiter was killed under it (see trial): it stopped, holding its references
        self.lost = False
        #: a ServerLost stops it holding its references even without ``closing`` (a victim)
        self.outlives_arbiter = False
        self.handles: list[tuple[int, Any]] = []     # (family, File)
        self.refs: list[tuple[int, Any, bool]] = []  # (family, Mapping or Pin, writable)
        self.error: BaseException | None = None
        self.counts: dict[str, int] = {}
        #: called with the operation's index after each one is answered (a victim process
        #: reports its progress so that it is killed after a chosen number of them)
        self.after_op: Callable[[int], None] | None = None

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
        i = -1
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
                except ConnectionError:
                    if not (self.outlives_arbiter or self.closing is not None and self.closing.is_set()):
                        raise
                    self.lost = True    # the arbiter was killed: stop, keeping every reference
                    return
                except ValueError as exc:
                    # a size another thread just cut (as mmap says it), or a mapping whose
                    # lease another thread broke, its on_break closing it
                    if any(s in str(exc) for s in ("past the end", "greater than file size", "mapping is closed")):
                        key = f"{op.__name__}:past-end"
                        self.counts[key] = self.counts.get(key, 0) + 1
                    elif self.closing is not None and self.closing.is_set() and "closed" in str(exc):
                        self.counts["closed"] = self.counts.get("closed", 0) + 1
                        return      # the volume was closed under this thread: it stops
                    else:
                        raise
                except OSError as exc:
                    if exc.errno == errno.EROFS or exc.errno not in EXPECTED:
                        raise
                    key = f"{op.__name__}:{errno.errorcode.get(exc.errno or 0, exc.errno)}"
                    self.counts[key] = self.counts.get(key, 0) + 1
                if self.after_op is not None:
                    self.after_op(i)
        except BaseException as exc:  # noqa: BLE001 — reported by the trial
            self.error = exc
            self.traceback = traceback.format_exc()
        finally:
            if self.halfway is not None and i < self.ops // 2:
                # (a thread that stops early still arrives: the trial waits there for all)
                with contextlib.suppress(threading.BrokenBarrierError):
                    self.halfway.wait(60)
            if not self.lost:
                self.let_go()

    def let_go(self) -> None:
        for _fam, ref, _w in self.refs:
            try:
                let_go_of(ref)
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
        let_go_of(ref)

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
