"""How fast each Python binding of libfuse 3 is, on the same trivial in-memory file system.

This is the measurement behind the choice of binding for ``daxfs mount`` (README: "FUSE
mount"): each binding installed in this interpreter serves a file system of one flat
directory whose files are bytearrays, in a child process; this process drives it through
``os`` calls.  What differs between rows is the binding's cost per request (ctypes
callbacks into Python for mfusepy, Cython for pyfuse3) and how it runs requests
(libfuse's thread pool for mfusepy, one trio task loop for pyfuse3), not daxfs.

    python bench/bench_fuse_bindings.py [--quick] [--markdown]

Bindings not installed are left out.  Needs /dev/fuse and permission to mount (root, or
fusermount3).  Not run by the tests.
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import os
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _table import Target, absolute_row, format_table  # noqa: E402

MiB = 1 << 20


# ---------------------------------------------------------------- the file systems (child side)

def serve_mfusepy(mountpoint: str) -> None:
    import mfusepy as fuse

    class Memory(fuse.Operations):
        use_ns = True

        def __init__(self) -> None:
            self.files: dict[str, bytearray] = {}
            self.now = time.time_ns()

        def getattr(self, path: str, fh: int | None = None) -> dict[str, int]:
            if path == "/":
                return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2}
            data = self.files.get(path)
            if data is None:
                raise fuse.FuseOSError(errno.ENOENT)
            return {"st_mode": stat.S_IFREG | 0o644, "st_nlink": 1, "st_size": len(data),
                    "st_mtime": self.now, "st_ctime": self.now, "st_atime": self.now}

        def readdir(self, path: str, fh: int) -> list[str]:
            return [".", "..", *(p[1:] for p in self.files)]

        def create(self, path: str, mode: int, fi: object = None) -> int:
            self.files[path] = bytearray()
            return 0

        def open(self, path: str, flags: int) -> int:
            if flags & os.O_TRUNC:
                self.files[path] = bytearray()
            return 0

        def truncate(self, path: str, length: int, fh: int | None = None) -> None:
            del self.files[path][length:]

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            return bytes(self.files[path][offset:offset + size])

        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            buf = self.files[path]
            buf[offset:offset + len(data)] = data
            return len(data)

        def unlink(self, path: str) -> None:
            del self.files[path]

    fuse.FUSE(Memory(), mountpoint, foreground=True, attr_timeout=0, entry_timeout=0,
              negative_timeout=0, nullpath_ok=False)


def serve_pyfuse3(mountpoint: str) -> None:
    import pyfuse3
    import trio

    class Memory(pyfuse3.Operations):
        def __init__(self) -> None:
            super().__init__()
            self.names: dict[bytes, int] = {}
            self.data: dict[int, bytearray] = {}
            self.next = pyfuse3.ROOT_INODE + 1

        def _attr(self, inode: int) -> pyfuse3.EntryAttributes:
            a = pyfuse3.EntryAttributes()
            if inode == pyfuse3.ROOT_INODE:
                a.st_mode, a.st_nlink = stat.S_IFDIR | 0o755, 2
            else:
                a.st_mode, a.st_nlink, a.st_size = stat.S_IFREG | 0o644, 1, len(self.data[inode])
            a.st_ino = inode
            a.attr_timeout = a.entry_timeout = 0
            return a

        async def lookup(self, parent: int, name: bytes, ctx: object = None) -> pyfuse3.EntryAttributes:
            inode = self.names.get(name)
            if inode is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
            return self._attr(inode)

        async def getattr(self, inode: int, ctx: object = None) -> pyfuse3.EntryAttributes:
            return self._attr(inode)

        async def opendir(self, inode: int, ctx: object) -> int:
            return inode

        async def readdir(self, fh: int, start_id: int, token: object) -> None:
            items = sorted(self.names.items(), key=lambda kv: kv[1])
            for name, inode in items:
                if inode <= start_id:
                    continue
                if not pyfuse3.readdir_reply(token, name, self._attr(inode), inode):
                    return

        async def create(self, parent: int, name: bytes, mode: int, flags: int, ctx: object
                         ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
            inode = self.next
            self.next += 1
            self.names[name] = inode
            self.data[inode] = bytearray()
            return pyfuse3.FileInfo(fh=inode, keep_cache=False), self._attr(inode)

        async def open(self, inode: int, flags: int, ctx: object) -> pyfuse3.FileInfo:
            if flags & os.O_TRUNC:
                self.data[inode] = bytearray()
            return pyfuse3.FileInfo(fh=inode, keep_cache=False)   # as libfuse's high-level default

        async def setattr(self, inode: int, attr: object, fields: object, fh: object, ctx: object
                          ) -> pyfuse3.EntryAttributes:
            if fields.update_size:  # type: ignore[attr-defined]
                del self.data[inode][attr.st_size:]  # type: ignore[attr-defined]
            return self._attr(inode)

        async def read(self, fh: int, off: int, size: int) -> bytes:
            return bytes(self.data[fh][off:off + size])

        async def write(self, fh: int, off: int, buf: bytes) -> int:
            self.data[fh][off:off + len(buf)] = buf
            return len(buf)

        async def release(self, fh: int) -> None:
            return None

        async def unlink(self, parent: int, name: bytes, ctx: object) -> None:
            self.data.pop(self.names.pop(name))

    options = set(pyfuse3.default_options)
    options.discard("default_permissions")
    pyfuse3.init(Memory(), mountpoint, options)
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close(unmount=True)


# ---------------------------------------------------------------- the measurements (parent side)

def wait_mounted(mountpoint: str, child: subprocess.Popen[bytes]) -> None:
    for _ in range(500):
        if os.path.ismount(mountpoint):
            return
        if child.poll() is not None:
            raise SystemExit(f"the file system exited ({child.returncode}) before mounting")
        time.sleep(0.01)
    raise SystemExit("the file system did not mount within 5 s")


def measure(mountpoint: str, quick: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    n = 500 if quick else 3000
    t0 = time.perf_counter()
    for i in range(n):
        fd = os.open(f"{mountpoint}/f{i}", os.O_CREAT | os.O_WRONLY, 0o644)
        os.write(fd, b"x" * 4096)
        os.close(fd)
    out["create"] = (time.perf_counter() - t0) / n * 1e6
    reps = 2000 if quick else 20000
    t0 = time.perf_counter()
    for _ in range(reps):
        os.stat(f"{mountpoint}/f0")
    out["stat"] = (time.perf_counter() - t0) / reps * 1e6
    t0 = time.perf_counter()
    names = os.listdir(mountpoint)
    out["readdir"] = (time.perf_counter() - t0) * 1e3
    assert len(names) == n
    for i in range(n):
        os.unlink(f"{mountpoint}/f{i}")
    size = (64 if quick else 512) * MiB
    chunk = os.urandom(MiB)
    fd = os.open(f"{mountpoint}/big", os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    t0 = time.perf_counter()
    for off in range(0, size, MiB):
        os.pwrite(fd, chunk, off)
    out["write"] = size / (time.perf_counter() - t0) / 1e9
    os.close(fd)
    fd = os.open(f"{mountpoint}/big", os.O_RDONLY)
    buf = bytearray(MiB)
    t0 = time.perf_counter()
    for off in range(0, size, MiB):
        os.preadv(fd, [buf], off)
    out["read"] = size / (time.perf_counter() - t0) / 1e9
    os.close(fd)
    return out


def run_binding(name: str, quick: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix=f"fusebind-{name}-") as mountpoint:
        child = subprocess.Popen([sys.executable, __file__, "--serve", name, mountpoint])
        try:
            wait_mounted(mountpoint, child)
            return measure(mountpoint, quick)
        finally:
            subprocess.run(["fusermount3", "-u", mountpoint], check=False)
            child.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--serve", nargs=2, metavar=("BINDING", "MOUNTPOINT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        {"mfusepy": serve_mfusepy, "pyfuse3": serve_pyfuse3}[args.serve[0]](args.serve[1])
        return 0
    found = {name: run_binding(name, args.quick) for name in ("mfusepy", "pyfuse3")
             if importlib.util.find_spec(name) is not None}
    if len(found) < 2:
        print(f"only {list(found)} installed: nothing to compare", file=sys.stderr)
    a, b = found.get("mfusepy"), found.get("pyfuse3")
    rows = []
    for key, label, unit in (("create", "create + 4 KiB write + close", "µs"), ("stat", "stat (no attr cache)", "µs"),
                             ("readdir", f"readdir, {500 if args.quick else 3000:,} entries", "ms"),
                             ("write", "seq write, 1 MiB requests", "GB/s"),
                             ("read", "seq read, 1 MiB requests", "GB/s")):
        if a is not None:
            rows.append(absolute_row(f"{label}: mfusepy vs pyfuse3", unit, a[key], b[key] if b else None,
                                     Target.none()))
    print(format_table(rows, markdown=args.markdown,
                       header=("operation", "unit", "mfusepy", "pyfuse3", "ratio", "target", "result")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
