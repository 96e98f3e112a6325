"""Arbiter benchmark: a client of ``daxfs serve`` beside ``os`` (and beside shared memory).

Prints one table measured in one run.  The arbiter runs in its own process on a pool in a
scratch directory under /dev/shm; the client is this process unless a row says otherwise.

* create + 4 KiB write + close (µs): ``c.open(p, "xb")``, ``write(4 KiB)``, ``close()`` vs
  ``os.open/os.write/os.close`` in a /dev/shm directory; both sides unlink their files after
  each round.  Two round trips: the open, and the write that close() flushes, which closes
  the file too (the arbiter closes it after the write's reply).  Target ≤ 8× os.
* what that row is made of, in the same run: the same calls on an embedded volume beside
  ``os`` (both unlink after each round), and a stat of ``/`` from the client beside a bare
  round trip — this process and a forked echo process over a socketpair, with the client's
  framing (msgpack) and polling, answering at once (the floor of any request).  The notes
  give the create row's floor: two bare round trips plus the embedded calls.  Reported.
* fstat and 4 KiB pread on an open handle (µs): answered in the client from its cache and
  straight from the pool, no round trip, vs ``os.fstat`` / ``os.pread`` of a same-sized
  /dev/shm file at the same random offsets.  Target ≤ 3× os.
* stat by path, listdir of 100 entries (µs): one round trip each; ratio reported.
* open + map 1 GiB read-only + touch 1 byte + close, in a client (µs; mean of 20 per round,
  as bench_mapping's map row) vs ``os`` reading the same 1 GiB file from /dev/shm (the
  speed-up, os / daxfs).  Target ≥ 1000×.  The first of the 20, right after the os side read
  and freed 1 GiB, is reported on its own in the notes: every call is slower just then (each
  round trip too), so it says what the machine's memory churn costs rather than the map.
* pin + release 4 KiB from a client (µs): two round trips.  Target ≤ 150 µs (absolute); the
  baseline column is the same on an embedded volume (a reference).
* references of a SIGKILLed client released (ms): a client process pins and maps, is killed;
  time from the kill until another client sees no reference of it (median of the trials).
  Target ≤ 100 ms.
* trainer + 4 workers: the trainer writes 8 shards of 128 MiB through write mappings; each
  worker maps each shard as it appears and sums it.  Beside the same done with
  ``multiprocessing.shared_memory`` (both: fresh shards each round, removed after; the same
  processes and queues; start-up not timed).  Target ≤ 1.3×.
* 1, 2, 4, 8 clients creating small files at once (aggregate files/s): each client process
  creates 1,000 files with a 4 KiB write; median of 3 rounds, each round running every client
  count; the ratio is against the one-client figure.  Target: never below it (≥ 1×).
* client RSS with a 100,000-file volume open (MiB), beside the same client on an empty
  volume: reported (it must not grow with the file count).

Usage::

    python bench/bench_arbiter.py            # full run, a few minutes on 2 cores
    python bench/bench_arbiter.py --quick    # smoke run
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _table
from _table import GiB, KiB, MiB, Row, Target

try:
    import daxfs
except ModuleNotFoundError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    import daxfs

from daxfs.adapters import wire  # noqa: E402  (after daxfs: the checkout's, when not installed)

SRC = str(Path(daxfs.__file__).resolve().parent.parent)


@dataclass(frozen=True)
class Config:
    rounds: int
    files: int
    reads: int
    map_bytes: int
    kill_trials: int
    shards: int
    shard_bytes: int
    workers: int
    client_counts: tuple[int, ...]
    files_per_client: int
    scaling_rounds: int
    rss_files: int


FULL = Config(rounds=5, files=1000, reads=20000, map_bytes=1 * GiB, kill_trials=50, shards=8,
              shard_bytes=128 * MiB, workers=4, client_counts=(1, 2, 4, 8), files_per_client=1000,
              scaling_rounds=3, rss_files=100_000)
QUICK = Config(rounds=3, files=200, reads=2000, map_bytes=64 * MiB, kill_trials=5, shards=4,
               shard_bytes=16 * MiB, workers=2, client_counts=(1, 2, 4), files_per_client=100,
               scaling_rounds=1, rss_files=5_000)


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))


class Arbiter:
    """``daxfs serve`` in its own process."""

    def __init__(self, pool: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "daxfs", "serve", pool],
                                     stderr=subprocess.DEVNULL, env=_env())
        for _ in range(3000):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(pool + ".sock")
                break
            except OSError:
                time.sleep(0.01)
            finally:
                probe.close()
        else:
            raise RuntimeError("daxfs serve did not start")

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ---------------------------------------------------------------- worker processes

def _trainer_daxfs(pool: str, shards: int, size: int, queues: list[Any], go: Any, done: Any) -> None:
    import numpy as np
    c = daxfs.connect(pool, name="trainer")
    while True:
        round_id = go.get()
        if round_id is None:
            break
        for i in range(shards):
            with c.open(f"/r{round_id}-shard{i}", "w+b") as f:
                with f.map(0, size, write=True) as m:
                    m.array(np.uint64)[:] = i + 1
                    m.persist()
            for q in queues:
                q.put(f"/r{round_id}-shard{i}")
        done.put("trained")
    c.close()


def _worker_daxfs(pool: str, shards: int, inbox: Any, done: Any) -> None:
    import numpy as np
    c = daxfs.connect(pool, name=f"worker-{os.getpid()}")
    done.put("ready")
    while True:
        total = 0
        for _ in range(shards):
            path = inbox.get()
            if path is None:
                c.close()
                return
            with c.open(path, "rb") as f, f.map() as m:
                total += int(m.array(np.uint64).sum())
        done.put(total)


def _trainer_shm(shards: int, size: int, queues: list[Any], go: Any, done: Any) -> None:
    import numpy as np
    from multiprocessing import shared_memory
    while True:
        round_id = go.get()
        if round_id is None:
            break
        made = []
        for i in range(shards):
            shm = shared_memory.SharedMemory(name=f"dxb-{os.getpid()}-{round_id}-{i}", create=True, size=size)
            np.ndarray(size // 8, dtype=np.uint64, buffer=shm.buf)[:] = i + 1
            made.append(shm)
            for q in queues:
                q.put(shm.name)
        done.put("trained")
        go.get()                       # the workers are done: remove the shards
        for shm in made:
            shm.close()
            shm.unlink()


def _worker_shm(shards: int, inbox: Any, done: Any) -> None:
    import numpy as np
    from multiprocessing import resource_tracker, shared_memory
    done.put("ready")
    while True:
        total = 0
        for _ in range(shards):
            name = inbox.get()
            if name is None:
                return
            shm = shared_memory.SharedMemory(name=name)
            with contextlib.suppress(Exception):
                resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]
            arr = np.ndarray(shm.size // 8, dtype=np.uint64, buffer=shm.buf)
            total += int(arr.sum())
            del arr
            shm.close()
        done.put(total)


def _creator(pool: str, prefix: str, count: int, start: Any, done: Any) -> None:
    c = daxfs.connect(pool, name=prefix)
    data = b"c" * 4096
    start.wait()
    t0 = time.perf_counter()
    for i in range(count):
        f = c.open(f"/{prefix}-{i}", "xb")
        f.write(data)
        f.close()
    done.put(time.perf_counter() - t0)
    c.stat("/")                      # the last close came after its write's reply: let it land
    c.close()


_DATA = b"w" * 4096


def _creates(vol: Any, files: int, r: int) -> float:
    """ns per create + 4 KiB write + close of ``files`` new files in ``/c{r}`` (a client or a
    volume; buffered, as open() makes them); the files and the directory go after the timing."""
    vol.mkdir(f"/c{r}")
    t0 = time.perf_counter_ns()
    for i in range(files):
        f = vol.open(f"/c{r}/{i}", "xb")
        f.write(_DATA)
        f.close()
    took = time.perf_counter_ns() - t0
    for i in range(files):
        vol.unlink(f"/c{r}/{i}")
    vol.rmdir(f"/c{r}")
    return took / files


def _os_creates(root: Path, files: int, r: int) -> float:
    """``_creates`` with os calls in a /dev/shm directory."""
    d = root / f"c{r}"
    d.mkdir()
    t0 = time.perf_counter_ns()
    for i in range(files):
        fd = os.open(d / str(i), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        os.write(fd, _DATA)
        os.close(fd)
    took = time.perf_counter_ns() - t0
    for i in range(files):
        os.unlink(d / str(i))
    d.rmdir()
    return took / files


def _echo(sock: socket.socket) -> None:
    """The other end of a bare round trip: each frame answered at once, as the arbiter's loop
    reads and answers (polling for the next one as it does)."""
    frames = wire.FrameReader(sock, wire.MAX_REPLY, 100e-6)
    reply = wire.pack([0, "ok", {"st_mode": 0o40755}])
    try:
        while True:
            frames.next()
            sock.sendall(reply)
    except (EOFError, OSError):
        pass


def _rss_client(pool: str, done: Any) -> None:
    c = daxfs.connect(pool, name="rss")
    for path in c.listdir("/")[:50]:
        c.stat("/" + path)
    with open("/proc/self/status") as fh:
        rss = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
    done.put(rss / 1024)
    c.close()


# ---------------------------------------------------------------- the bench

class ArbiterBench:
    def __init__(self, config: Config, scratch: Path, cleanup: contextlib.ExitStack) -> None:
        self.config = config
        self.scratch = scratch
        self.cleanup = cleanup
        self.notes: list[str] = []
        size = max(2 * config.map_bytes + config.shards * config.shard_bytes * 2, 512 * MiB) + 256 * MiB
        self.pool = str(scratch / "served.pool")
        daxfs.mkfs(self.pool, size).close()
        self.arbiter = Arbiter(self.pool)
        cleanup.callback(self.arbiter.close)
        self.client = daxfs.connect(self.pool, name="bench")
        cleanup.callback(lambda: _table.close_quietly(self.client, "client"))
        self.os_dir = scratch / "os"
        self.os_dir.mkdir()

    def run(self) -> list[Row]:
        rows = [self._create(), *self._floor_rows(), *self._handle_rows(), *self._path_rows(), self._map(),
                self._pin(), self._kill(), self._trainer()]
        rows += self._scaling()
        rows.append(self._rss())
        return rows

    # ---- latency rows

    def _create(self) -> Row:
        cfg, c = self.config, self.client
        _table.log("create + write + close ...")
        s = _table.interleaved_rounds(cfg.rounds, {"daxfs": lambda r: _creates(c, cfg.files, r),
                                                   "os": lambda r: _os_creates(self.os_dir, cfg.files, r)},
                                      warmup_rounds=1)
        return _table.latency_row("create + 4 KiB write + close (2 round trips)", _table.median(s["daxfs"]),
                                  _table.median(s["os"]), Target.max_ratio(8))

    def _floor_rows(self) -> list[Row]:
        """What the create row is made of, measured beside it: the same calls on an embedded
        volume against ``os``, and one request (a stat of ``/``) against a bare round trip
        between two Python processes with the same framing and polling (the floor of any
        request).  Two round trips plus the embedded work is the floor of the client's row."""
        cfg = self.config
        vol = daxfs.mkfs(str(self.scratch / "floor.pool"), 64 * MiB)
        self.cleanup.callback(lambda: _table.close_volume_quietly(vol, "floor volume"))
        _table.log("floor: embedded create + write + close, bare round trip ...")
        made = _table.interleaved_rounds(cfg.rounds, {"embedded": lambda r: _creates(vol, cfg.files, r),
                                                      "os": lambda r: _os_creates(self.os_dir, cfg.files, r)},
                                         warmup_rounds=1)
        a, b = socket.socketpair()
        echo = mp.get_context("fork").Process(target=_echo, args=(b,), daemon=True)
        echo.start()
        b.close()
        frames = wire.FrameReader(a, wire.MAX_REPLY, wire.SPIN_REPLY_S)
        n = cfg.reads // 10
        c = self.client

        def bare(_r: int) -> float:
            t0 = time.perf_counter_ns()
            for i in range(n):
                a.sendall(wire.pack([i + 1, "stat", ["/"]]))
                frames.next()
            return (time.perf_counter_ns() - t0) / n

        def request(_r: int) -> float:
            t0 = time.perf_counter_ns()
            for _ in range(n):
                c.stat("/")
            return (time.perf_counter_ns() - t0) / n

        trips = _table.interleaved_rounds(cfg.rounds, {"daxfs": request, "bare": bare}, warmup_rounds=1)
        a.close()
        echo.join(10)
        floor = 2 * _table.median(trips["bare"]) + _table.median(made["embedded"])
        self.notes.append(f"floor of the create row: 2 bare round trips + the embedded calls = {floor / 1e3:.1f} µs "
                          f"(8× os would be {8 * _table.median(made['os']) / 1e3:.1f} µs)")
        return [_table.latency_row("create + 4 KiB write + close, embedded (baseline: os)",
                                   _table.median(made["embedded"]), _table.median(made["os"]), Target.none()),
                _table.latency_row("stat of / from a client (baseline: a bare echo round trip)",
                                   _table.median(trips["daxfs"]), _table.median(trips["bare"]), Target.none())]

    def _handle_rows(self) -> list[Row]:
        cfg, c = self.config, self.client
        size = 64 * MiB
        with c.open("/read", "wb") as f:
            chunk = os.urandom(MiB)
            for i in range(size // MiB):
                f.write(chunk)
        local = self.os_dir / "read"
        with open(local, "wb") as fh:
            for i in range(size // MiB):
                fh.write(chunk)
        offsets = [random.randrange(0, size // 4096) * 4096 for _ in range(cfg.reads)]
        f = c.open("/read", "rb")
        fd = os.open(local, os.O_RDONLY)
        try:
            def dx_stat(_r: int) -> float:
                t0 = time.perf_counter_ns()
                for _ in range(cfg.reads):
                    f.stat()
                return (time.perf_counter_ns() - t0) / cfg.reads

            def os_stat(_r: int) -> float:
                t0 = time.perf_counter_ns()
                for _ in range(cfg.reads):
                    os.fstat(fd)
                return (time.perf_counter_ns() - t0) / cfg.reads

            def dx_read(_r: int) -> float:
                t0 = time.perf_counter_ns()
                for off in offsets:
                    f.pread(4096, off)
                return (time.perf_counter_ns() - t0) / cfg.reads

            def os_read(_r: int) -> float:
                t0 = time.perf_counter_ns()
                for off in offsets:
                    os.pread(fd, 4096, off)
                return (time.perf_counter_ns() - t0) / cfg.reads

            _table.log("fstat, pread ...")
            s1 = _table.interleaved_rounds(cfg.rounds, {"daxfs": dx_stat, "os": os_stat}, warmup_rounds=1)
            s2 = _table.interleaved_rounds(cfg.rounds, {"daxfs": dx_read, "os": os_read}, warmup_rounds=1)
        finally:
            f.close()
            os.close(fd)
        return [_table.latency_row("fstat of an open handle (no round trip)", _table.median(s1["daxfs"]),
                                   _table.median(s1["os"]), Target.max_ratio(3)),
                _table.latency_row("4 KiB pread, random, 64 MiB file (no round trip)", _table.median(s2["daxfs"]),
                                   _table.median(s2["os"]), Target.max_ratio(3))]

    def _path_rows(self) -> list[Row]:
        cfg, c = self.config, self.client
        c.mkdir("/dir")
        (self.os_dir / "dir").mkdir()
        for i in range(100):
            c.open(f"/dir/{i}", "wb").close()
            (self.os_dir / "dir" / str(i)).touch()
        n = cfg.reads // 10

        def timed(action: Any) -> Any:
            def run(_r: int) -> float:
                t0 = time.perf_counter_ns()
                for _ in range(n):
                    action()
                return (time.perf_counter_ns() - t0) / n
            return run
        target = str(self.os_dir / "dir" / "5")
        local_dir = str(self.os_dir / "dir")
        _table.log("stat, listdir ...")
        s1 = _table.interleaved_rounds(cfg.rounds, {"daxfs": timed(lambda: c.stat("/dir/5")),
                                                    "os": timed(lambda: os.stat(target))}, warmup_rounds=1)
        s2 = _table.interleaved_rounds(cfg.rounds, {"daxfs": timed(lambda: c.listdir("/dir")),
                                                    "os": timed(lambda: os.listdir(local_dir))}, warmup_rounds=1)
        return [_table.latency_row("stat by path (1 round trip)", _table.median(s1["daxfs"]), _table.median(s1["os"]),
                                   Target.none()),
                _table.latency_row("listdir, 100 entries (1 round trip)", _table.median(s2["daxfs"]),
                                   _table.median(s2["os"]), Target.none())]

    def _map(self) -> Row:
        cfg, c = self.config, self.client
        size = cfg.map_bytes
        chunk = b"m" * (4 * MiB)
        with c.open("/big", "wb") as f:
            for _ in range(size // len(chunk)):
                f.write(chunk)
        local = self.os_dir / "big"
        with open(local, "wb") as fh:
            for _ in range(size // len(chunk)):
                fh.write(chunk)

        first: list[int] = []

        def dx(_r: int) -> float:
            took = []
            for _ in range(20):
                t0 = time.perf_counter_ns()
                with c.open("/big", "rb") as f, f.map() as m:
                    _ = m.buffer[size - 1]
                took.append(time.perf_counter_ns() - t0)
            first.append(took[0])
            return sum(took) / len(took)

        def osr(_r: int) -> float:
            t0 = time.perf_counter_ns()
            with open(local, "rb", buffering=0) as fh:
                fh.read()
            return time.perf_counter_ns() - t0

        _table.log("map vs read ...")
        s = _table.interleaved_rounds(cfg.rounds, {"daxfs": dx, "os": osr}, warmup_rounds=1)
        d, o = _table.median(s["daxfs"]), _table.median(s["os"])
        c.unlink("/big")
        local.unlink()
        self.notes.append(f"map row: the first map of each round (right after the os side read 1 GiB): "
                          f"median {_table.median(first[1:] or first) / 1e3:,.0f} µs")
        return Row(f"open + map {_table.size_text(size)} ro + close, client (speed-up vs read)", "µs", d / 1e3,
                   o / 1e3, o / d, Target.min_ratio(1000))

    def _pin(self) -> Row:
        cfg, c = self.config, self.client
        with c.open("/pinned", "wb") as f:
            f.write(b"p" * (4 * MiB))
        embedded_pool = str(self.scratch / "embedded.pool")
        vol = daxfs.mkfs(embedded_pool, 64 * MiB)
        self.cleanup.callback(lambda: _table.close_volume_quietly(vol, "embedded volume"))
        with vol.open("/pinned", "wb") as g:
            g.write(b"p" * (4 * MiB))
        f = c.open("/pinned", "rb")
        g = vol.open("/pinned", "rb")
        n = cfg.reads // 20
        offsets = [random.randrange(0, 1024) * 4096 for _ in range(n)]

        def run(handle: Any) -> Any:
            def go(_r: int) -> float:
                t0 = time.perf_counter_ns()
                for off in offsets:
                    handle.pin(off, 4096).release()
                return (time.perf_counter_ns() - t0) / n
            return go
        _table.log("pin + release ...")
        s = _table.interleaved_rounds(cfg.rounds, {"daxfs": run(f), "embedded": run(g)}, warmup_rounds=1)
        f.close()
        g.close()
        return _table.absolute_row("pin + release 4 KiB, client (2 round trips; baseline: embedded)", "µs",
                                   _table.median(s["daxfs"]) / 1e3, _table.median(s["embedded"]) / 1e3,
                                   Target.max_value(150))

    def _kill(self) -> Row:
        cfg, c = self.config, self.client
        with c.open("/killed", "wb") as f:
            f.write(b"k" * (1 * MiB))
        script = ("import daxfs, sys; c = daxfs.connect(sys.argv[1], name='victim'); f = c.open('/killed', 'rb'); "
                  "p = f.pin(0, 65536); m = f.map(0, 65536, lease=True); print('ready', flush=True); "
                  "sys.stdin.read()")
        samples = []
        _table.log(f"{cfg.kill_trials} killed clients ...")
        for _ in range(cfg.kill_trials):
            child = subprocess.Popen([sys.executable, "-c", script, self.pool], stdout=subprocess.PIPE,
                                     stdin=subprocess.PIPE, env=_env())
            assert child.stdout is not None and child.stdout.readline().strip() == b"ready"
            t0 = time.perf_counter_ns()
            child.kill()
            while any(info.holder == "victim" for info in c.pins()):
                pass
            samples.append((time.perf_counter_ns() - t0) / 1e6)
            child.wait()
            child.stdout.close()
            child.stdin.close()  # type: ignore[union-attr]
        self.notes.append(f"killed clients: median {_table.median(samples):.1f} ms, max {max(samples):.1f} ms "
                          f"over {len(samples)} trials (polled with c.pins(), one round trip each)")
        return _table.absolute_row(f"refs of a SIGKILLed client released (median of {len(samples)})", "ms",
                                   _table.median(samples), None, Target.max_value(100))

    def _trainer(self) -> Row:
        cfg = self.config
        ctx = mp.get_context("fork")
        results: dict[str, list[float]] = {"daxfs": [], "shm": []}
        for side in ("daxfs", "shm"):
            queues = [ctx.Queue() for _ in range(cfg.workers)]
            done = ctx.Queue()
            go = ctx.Queue()
            if side == "daxfs":
                workers = [ctx.Process(target=_worker_daxfs, args=(self.pool, cfg.shards, q, done)) for q in queues]
                trainer = ctx.Process(target=_trainer_daxfs,
                                      args=(self.pool, cfg.shards, cfg.shard_bytes, queues, go, done))
            else:
                workers = [ctx.Process(target=_worker_shm, args=(cfg.shards, q, done)) for q in queues]
                trainer = ctx.Process(target=_trainer_shm, args=(cfg.shards, cfg.shard_bytes, queues, go, done))
            for w in workers:
                w.start()
            trainer.start()
            for _ in workers:
                assert done.get(timeout=60) == "ready"
            expected = sum((i + 1) * (cfg.shard_bytes // 8) for i in range(cfg.shards))
            _table.log(f"trainer + {cfg.workers} workers ({side}) ...")
            for r in range(cfg.rounds + 1):
                t0 = time.perf_counter_ns()
                go.put(r)
                got = [done.get(timeout=600) for _ in range(cfg.workers + 1)]
                took = time.perf_counter_ns() - t0
                assert sorted(got, key=str)[-1] == "trained" and all(g == expected for g in got if g != "trained"), got
                if r:
                    results[side].append(took / 1e6)
                if side == "shm":
                    go.put("cleanup")
                else:
                    for i in range(cfg.shards):
                        self.client.unlink(f"/r{r}-shard{i}")
            for q in queues:
                q.put(None)
            go.put(None)
            for p in [*workers, trainer]:
                p.join(60)
        return Row(f"trainer writes {cfg.shards} x {_table.size_text(cfg.shard_bytes)}, {cfg.workers} workers "
                   "map + sum (vs shared_memory)", "ms", _table.median(results["daxfs"]),
                   _table.median(results["shm"]), _table.median(results["daxfs"]) / _table.median(results["shm"]),
                   Target.max_ratio(1.3))

    def _scaling(self) -> list[Row]:
        cfg = self.config
        ctx = mp.get_context("fork")
        samples: dict[int, list[float]] = {n: [] for n in cfg.client_counts}
        # Rounds interleave the client counts, so a noisy moment of the machine hits all of them.
        for r in range(cfg.scaling_rounds):
            for n in cfg.client_counts:
                start = ctx.Event()
                done = ctx.Queue()
                procs = [ctx.Process(target=_creator, args=(self.pool, f"s{r}-{n}-{i}", cfg.files_per_client, start,
                                                            done)) for i in range(n)]
                for p in procs:
                    p.start()
                time.sleep(0.5)                                   # every client connected (not timed)
                t0 = time.perf_counter()
                start.set()
                for _ in procs:
                    done.get(timeout=300)
                wall = time.perf_counter() - t0
                for p in procs:
                    p.join(60)
                samples[n].append(n * cfg.files_per_client / wall)
                for i in range(n):
                    for j in range(cfg.files_per_client):
                        self.client.unlink(f"/s{r}-{n}-{i}-{j}")
        rates = {n: _table.median(v) for n, v in samples.items()}
        one = rates[cfg.client_counts[0]]
        self.notes.append(f"aggregate creates/s by clients (median of {cfg.scaling_rounds} rounds, "
                          f"{cfg.files_per_client:,} files per client, every count in each round): "
                          + ", ".join(f"{n}: {rate:,.0f}" for n, rate in rates.items()))
        return [Row(f"{n} client(s) creating 4 KiB files at once (aggregate)", "files/s", rates[n], one,
                    rates[n] / one, Target.min_ratio(1.0)) for n in cfg.client_counts]

    def _rss(self) -> Row:
        cfg = self.config
        # A fresh interpreter (spawn), not a fork of this one: a fork's RSS counts the pages
        # it shares with this process (the bench's own heap and mappings).
        ctx = mp.get_context("spawn")

        def measure(pool: str) -> float:
            arbiter = Arbiter(pool)
            try:
                done = ctx.Queue()
                p = ctx.Process(target=_rss_client, args=(pool, done))
                p.start()
                rss = done.get(timeout=120)
                p.join(60)
                return float(rss)
            finally:
                arbiter.close()

        empty = str(self.scratch / "empty.pool")
        daxfs.mkfs(empty, 256 * MiB).close()
        full = str(self.scratch / "full.pool")
        _table.log(f"building a {cfg.rss_files:,}-file volume ...")
        with daxfs.mkfs(full, 2 * GiB) as vol:
            for d in range(cfg.rss_files // 100):
                vol.mkdir(f"/d{d}")
                for i in range(100):
                    with vol.open(f"/d{d}/{i}", "wb") as f:
                        f.write(b"x" * 13)
        big, small = measure(full), measure(empty)
        self.notes.append("client RSS: VmRSS of a fresh client process (spawned) after connecting, listing / and "
                          "50 stats")
        return Row(f"client RSS, {cfg.rss_files:,}-file volume (baseline: empty volume)", "MiB", big, small,
                   big / small, Target.none())


def _notes(config: Config, notes: Sequence[str], total_s: float) -> list[str]:
    return [_table.environment_line() + f"; whole run {total_s:.0f} s",
            "the arbiter is `daxfs serve` in its own process; the client is this process unless a row says "
            "otherwise; os = the same calls on a /dev/shm directory (fresh files each round, both sides clean up)",
            f"latency rows: median of {config.rounds} rounds after 1 warm-up, daxfs and os interleaved",
            "transport: one arbiter thread serves every client; a client polls the socket for its reply up to "
            "250 µs before sleeping, the arbiter up to 100 µs for a client's next request, unless a yield gave "
            "its CPU away (DAXFS_SPIN_US=0: off)",
            *notes]


def main(argv: Sequence[str] | None = None) -> int:
    return _table.run_bench(argv, description=__doc__.splitlines()[0], quick_help="a small smoke run",
                            dir_help="where the scratch pools go (default /dev/shm)",
                            scratch_prefix="daxfs-bench-arbiter-", full_config=FULL, quick_config=QUICK,
                            make_bench=ArbiterBench, notes=_notes, header=_table.BASELINE_TABLE_HEADER)


if __name__ == "__main__":
    sys.exit(main())
