"""Bad paths and namespace error cases: daxfs answers exactly as ``os`` does on tmpfs.

Each case runs one call on a fresh daxfs volume and on a real /dev/shm
directory holding the same starting tree, seen as if it were a chroot (the
volume's root is ``/``; ``..`` at the root stays there).  It asserts:

* the same outcome: success with the same result (stat, sorted listing, file
  contents), or the same exception, i.e. the same errno and a daxfs exception
  that is an instance of the class ``os`` raised (``FileNotFoundError``,
  ``NotADirectoryError``, ...).  An embedded NUL is ``ValueError`` in ``os``;
  daxfs must raise ``daxfs.errors.InvalidPathError``, which is both that
  ``ValueError`` and ``OSError(EINVAL)``;
* the same tree afterwards (names, types, permission bits, link counts, sizes,
  contents);
* a call that fails changes nothing on the volume: every name's full stat
  (inode, times included) and ``statfs()`` (free space, inode count) are
  unchanged.

Covered: empty path, ``..`` clamped at the root, ``.`` components, repeated
slashes, trailing slashes (on files: ENOTDIR), names of 255 and 256 bytes
(ASCII and multibyte UTF-8: the limit is bytes, not characters), paths of 4096
bytes and more, NUL bytes, a component that is a file, rmdir of the root,
mkdir of an existing name, and rename/link/unlink edge cases.

Paths between 4000 and 4095 bytes are not tested: the reference prefixes the
host directory, so the host path would cross PATH_MAX where the volume's does
not.
"""

from __future__ import annotations

import ctypes
import errno
import io
import os
import re
import shutil
import stat
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import daxfs
from _reference import ReferenceTree
from daxfs.errors import InvalidPathError

SHM = "/dev/shm"
POOL_SIZE = 16 << 20
PATH_MAX = 4096
RENAME_NOREPLACE = 1
AT_FDCWD = -100

_libc = ctypes.CDLL(None, use_errno=True)
_libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
_libc.renameat2.restype = ctypes.c_int


def rename_noreplace(src: str, dst: str) -> None:
    """renameat2(RENAME_NOREPLACE): what ``rename(..., replace=False)`` means."""
    if "\0" in src or "\0" in dst:
        raise ValueError("embedded null byte")
    if _libc.renameat2(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), RENAME_NOREPLACE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), src, None, dst)




def error_kind(exc: BaseException) -> str:
    """An exception as comparable text: ValueError, or the errno's name."""
    if isinstance(exc, io.UnsupportedOperation):
        return "EBADF"
    if isinstance(exc, ValueError):
        return "ValueError"
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return f"{type(exc).__name__}: {exc}"


FILE_TYPES = {stat.S_IFDIR: "dir", stat.S_IFREG: "file"}


def stat_view(st_result: Any) -> dict[str, Any]:
    """The stat fields that must agree with tmpfs (not times, inode numbers, directory sizes)."""
    fmt = stat.S_IFMT(st_result.st_mode)
    view = {
        "type": FILE_TYPES.get(fmt, oct(fmt)),
        "perm": oct(stat.S_IMODE(st_result.st_mode)),
        "nlink": st_result.st_nlink,
    }
    if fmt == stat.S_IFREG:
        view["size"] = st_result.st_size
        view["blocks"] = st_result.st_blocks
    return view


# ---------------------------------------------------------------------------
# the starting tree, and the two sides

FILE_DATA = b"0123456789"
G_DATA = bytes(range(256)) * 20          # 5120 bytes, two blocks
NAME_255 = "n" * 255
NAME_256 = "n" * 256
E_ACUTE_255 = "\u00e9" * 127 + "a"       # 127 two-byte characters + 1 = 255 bytes, 128 characters
E_ACUTE_256 = "\u00e9" * 128             # 256 bytes, 128 characters
EMOJI_255 = "\U0001F600" * 63 + "abc"    # 252 + 3 = 255 bytes, 66 characters
EMOJI_256 = "\U0001F600" * 64            # 256 bytes, 64 characters
PATH_4096 = "d/" * 2047 + "gg"           # exactly 4096 bytes
PATH_5000 = "d/" * 2499 + "gg"           # 5000 bytes
DOTS_5000 = "./" * 2499 + "f"            # 4999 bytes that would resolve to "f"


def build_tree_dax(vol: Any) -> None:
    vol.mkdir("d")
    vol.mkdir("d/sub")
    vol.mkdir("empty")
    with vol.open("f", "wb", buffering=0) as f:
        f.write(FILE_DATA)
    with vol.open("d/g", "wb", buffering=0) as f:
        f.write(G_DATA)


def build_tree_ref(root: str) -> None:
    os.mkdir(root + "/d", 0o755)
    os.mkdir(root + "/d/sub", 0o755)
    os.mkdir(root + "/empty", 0o755)
    with open(root + "/f", "wb") as f:
        f.write(FILE_DATA)
    with open(root + "/d/g", "wb") as f:
        f.write(G_DATA)


class Sides:
    """A daxfs volume and a reference directory holding the same starting tree."""

    def __init__(self, workdir: str) -> None:
        self.pool = workdir + "/pool"
        os.mkdir(workdir + "/ref")
        self.ref = ReferenceTree(workdir + "/ref")
        build_tree_ref(self.ref.root)
        self.vol = daxfs.mkfs(self.pool, POOL_SIZE)
        build_tree_dax(self.vol)

    # one call, by name, on each side -------------------------------------

    def on_dax(self, op: str, *args: Any, **kwargs: Any) -> Any:
        vol = self.vol
        if op == "stat":
            return stat_view(vol.stat(*args))
        if op == "listdir":
            return sorted(vol.listdir(*args))
        if op == "open":
            path, mode = args
            with vol.open(path, mode, buffering=0) as f:
                return f.read() if mode in ("rb", "r+b") else None
        return getattr(vol, op)(*args, **kwargs)

    def on_ref(self, op: str, *args: Any, **kwargs: Any) -> Any:
        real = self.ref.real
        if op == "stat":
            return stat_view(os.stat(real(args[0])))
        if op == "listdir":
            return sorted(os.listdir(real(args[0])))
        if op == "exists":
            return os.path.exists(real(args[0]))
        if op == "open":
            path, mode = args
            with open(real(path), mode, buffering=0) as f:
                return f.read() if mode in ("rb", "r+b") else None
        if op == "mkdir":
            path = args[0]
            mode = args[1] if len(args) > 1 else kwargs.get("mode", 0o755)
            try:
                os.mkdir(real(path), mode)
            except FileExistsError:
                if not (kwargs.get("exist_ok") and os.path.isdir(real(path))):
                    raise
            return None
        if op == "rmdir":
            return os.rmdir(real(args[0], for_rmdir=True))
        if op == "unlink":
            return os.unlink(real(args[0]))
        if op == "rename":
            if kwargs.get("replace", True):
                return os.rename(real(args[0]), real(args[1]))
            return rename_noreplace(real(args[0]), real(args[1]))
        if op == "link":
            return os.link(real(args[0]), real(args[1]))
        if op == "chmod":
            return os.chmod(real(args[0]), args[1])
        raise AssertionError(f"no reference for {op}")

    # whole-state views ----------------------------------------------------

    def tree_dax(self) -> dict[str, Any]:
        out: dict[str, Any] = {}

        def walk(path: str) -> None:
            names = sorted(self.vol.listdir(path))
            out[path] = (names, stat_view(self.vol.stat(path)))
            for name in names:
                child = path.rstrip("/") + "/" + name
                if self.vol.stat(child).is_dir():
                    walk(child)
                else:
                    with self.vol.open(child, "rb", buffering=0) as f:
                        out[child] = (f.read(), stat_view(self.vol.stat(child)))

        walk("/")
        return out

    def tree_ref(self) -> dict[str, Any]:
        out: dict[str, Any] = {}

        def walk(path: str, real: str) -> None:
            names = sorted(os.listdir(real))
            out[path] = (names, stat_view(os.stat(real)))
            for name in names:
                child, real_child = path.rstrip("/") + "/" + name, real + "/" + name
                if os.path.isdir(real_child):
                    walk(child, real_child)
                else:
                    with open(real_child, "rb") as f:
                        out[child] = (f.read(), stat_view(os.stat(real_child)))

        walk("/", self.ref.root)
        return out

    def exact_state_dax(self) -> tuple[Any, ...]:
        """Everything a failed call must leave alone: every name's full stat, and statfs.

        Access times are left out: reading a directory or file may set them.
        """
        stats = {}

        def walk(path: str) -> None:
            stats[path] = self.vol.stat(path)._replace(st_atime_ns=0)
            if self.vol.stat(path).is_dir():
                for name in sorted(self.vol.listdir(path)):
                    walk(path.rstrip("/") + "/" + name)

        walk("/")
        fs = self.vol.statfs()
        return (stats, fs.free, fs.used, fs.files)


@pytest.fixture
def sides():
    workdir = f"{SHM}/daxfs-paths-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    os.mkdir(workdir)
    s = None
    try:
        s = Sides(workdir)
        yield s
    finally:
        if s is not None:
            try:
                s.vol.close(force=True)
            except Exception:  # noqa: BLE001 - cleanup must not mask the test's own failure
                pass
        shutil.rmtree(workdir, ignore_errors=True)


def abbreviate(value: Any) -> str:
    """repr with long runs of one character or of "d/"-style pairs written as counts."""
    text = repr(value)
    text = re.sub(r"(.)\1{7,}", lambda m: f"<{m.group(1)}*{len(m.group(0))}>", text)
    return re.sub(r"((?:[^/]{1,2}/){8,})", lambda m: f"<{m.group(0)[:m.group(0).index('/') + 1]}"
                  f"*{m.group(0).count('/')}>", text)


def describe_call(op: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    shown = [abbreviate(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"{op}({', '.join(shown)})"


def describe_tree_difference(tree_dax: dict[str, Any], tree_ref: dict[str, Any]) -> str:
    return "; ".join(f"{path}: daxfs {abbreviate(tree_dax.get(path))}, os {abbreviate(tree_ref.get(path))}"
                     for path in sorted(set(tree_dax) | set(tree_ref))
                     if tree_dax.get(path) != tree_ref.get(path))


def describe_change(before: tuple[Any, ...], after: tuple[Any, ...]) -> str:
    changes = []
    for path in sorted(set(before[0]) | set(after[0])):
        if before[0].get(path) != after[0].get(path):
            changes.append(f"{path}: {before[0].get(path)} -> {after[0].get(path)}")
    for label, b, a in zip(("free", "used", "files"), before[1:], after[1:]):
        if a != b:
            changes.append(f"statfs().{label}: {b} -> {a}")
    return "; ".join(changes)


def run(fn: Callable[[], Any]) -> tuple[str, Any, BaseException | None]:
    try:
        return ("ok", fn(), None)
    except Exception as exc:  # noqa: BLE001 - the exception is what is compared
        return ("error", error_kind(exc), exc)


def check_same_as_os(sides: Sides, op: str, *args: Any, **kwargs: Any) -> tuple[str, Any]:
    """Run ``op`` on both sides and assert the same outcome, the same tree, and no change on failure."""
    before = sides.exact_state_dax()
    got = run(lambda: sides.on_dax(op, *args, **kwargs))
    want = run(lambda: sides.on_ref(op, *args, **kwargs))
    call = describe_call(op, args, kwargs)
    assert got[:2] == want[:2], f"{call}: daxfs -> {got[:2]!r} ({got[2]!r}), os -> {want[:2]!r}"
    if want[0] == "error":
        dax_exc, os_exc = got[2], want[2]
        if want[1] == "ValueError":
            assert isinstance(dax_exc, InvalidPathError), f"{call}: expected InvalidPathError, got {dax_exc!r}"
            assert isinstance(dax_exc, ValueError) and dax_exc.errno == errno.EINVAL
        else:
            assert isinstance(dax_exc, type(os_exc)), (
                f"{call}: daxfs raised {type(dax_exc).__name__}, os raised {type(os_exc).__name__}")
        after = sides.exact_state_dax()
        assert after == before, f"{call} failed but changed the volume: {describe_change(before, after)}"
    tree_dax, tree_ref = sides.tree_dax(), sides.tree_ref()
    assert tree_dax == tree_ref, f"{call}: trees differ afterwards: {describe_tree_difference(tree_dax, tree_ref)}"
    problems = sides.vol.fsck()
    assert problems == [], f"{call}: fsck found {problems}"
    return got[:2]


# ---------------------------------------------------------------------------
# the table

CASES: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []


def case(op: str, *args: Any, **kwargs: Any) -> None:
    CASES.append((op, args, kwargs))


# empty path: ENOENT everywhere, False for exists
for _op in ("stat", "listdir", "rmdir", "unlink", "exists"):
    case(_op, "")
case("mkdir", "")
case("open", "", "rb")
case("open", "", "wb")
case("rename", "", "x")
case("rename", "f", "")
case("link", "f", "")
case("link", "", "x")
case("chmod", "", 0o600)

# the root, and ".." clamped at the root
for _p in ("/", "//", ".", "..", "/..", "../..", "/../../..", "./..", "../."):
    case("stat", _p)
    case("listdir", _p)
case("stat", "../f")
case("stat", "/../../f")
case("open", "../../f", "rb")
case("open", "../d/g", "rb")
case("listdir", "../d")
case("listdir", "d/../..")
case("listdir", "d/sub/../../..")
case("stat", "d/../f")
case("stat", "d/sub/../g")
case("stat", "f/../d")               # ".." out of a file: ENOTDIR
case("stat", "nope/../f")            # ".." out of a missing name: ENOENT
case("stat", "f/..")
case("mkdir", "../new")
case("mkdir", "../../d/new")
case("open", "../new", "wb")
case("rename", "../f", "../../h")
case("rename", "d/../f", "d/sub/../h")
case("link", "../f", "../h")
case("unlink", "../f")
case("rmdir", "../empty")

# rmdir / mkdir / unlink / rename / link of the root and of "." and ".."
for _p in ("/", "//", ".", "..", "/..", "d/..", "d/.", "empty/.", "d/sub/..", "./.", "../"):
    case("rmdir", _p)
for _p in ("/", ".", "..", "d/.", "d/..", "empty/."):
    case("mkdir", _p)
    case("unlink", _p)
    case("open", _p, "wb")
    case("open", _p, "rb")
case("rename", "/", "x")
case("rename", "d", "/")
case("rename", ".", "x")
case("rename", "..", "x")
case("rename", "d/..", "x")
case("rename", "d/.", "x")
case("rename", "empty", "d/.")
case("rename", "empty", "..")
case("link", "/", "x")
case("link", "f", "/")
case("link", "f", ".")
case("chmod", "/", 0o700)

# "." components and repeated slashes
for _p in ("./f", "d/./g", "./d/./sub/.", "//f", "d//g", "///d///sub///", "d/", "d/sub/", "d//"):
    case("stat", _p)
case("listdir", "./d/.")
case("listdir", "d//")
case("open", "./d/./g", "rb")
case("open", "//f", "rb")
case("mkdir", "d//new")
case("mkdir", "./new/")
case("rename", "d//g", "//h")
case("rename", "./f", "./d/./h")
case("link", "d//g", "./h")
case("unlink", "d/./g")
case("rmdir", "//empty//")

# trailing slash: fine on a directory, ENOTDIR on a file, EISDIR when creating a file
for _p in ("f/", "f//", "f/.", "d/g/"):
    case("stat", _p)
    case("open", _p, "rb")
    case("unlink", _p)
for _mode in ("wb", "w+b", "xb", "ab", "a+b"):   # O_CREAT with a trailing slash: EISDIR, even on a file
    case("open", "f/", _mode)
    case("open", "d/", _mode)
case("open", "new/", "wb")
case("open", "new/", "xb")
case("open", "d/", "rb")
case("mkdir", "new/")
case("mkdir", "f/")
case("rmdir", "empty/")
case("rmdir", "f/")
case("unlink", "nope/")
case("rename", "f/", "h")
case("rename", "f", "h/")
case("rename", "empty/", "h/")
case("rename", "d/", "empty/")
case("link", "f/", "h")
case("link", "f", "h/")
case("listdir", "f/")
case("chmod", "f/", 0o600)

# name length: 255 bytes fit, 256 do not; counted in bytes, not characters
for _name in (NAME_255, E_ACUTE_255, EMOJI_255):
    case("mkdir", _name)
    case("open", _name, "wb")
    case("open", "d/" + _name, "xb")
    case("rename", "f", _name)
    case("link", "d/g", "d/" + _name)
    case("stat", _name)
for _name in (NAME_256, E_ACUTE_256, EMOJI_256):
    case("mkdir", _name)
    case("open", _name, "wb")
    case("open", _name, "rb")
    case("rename", "f", _name)
    case("rename", _name, "h")
    case("link", "f", _name)
    case("stat", _name)
    case("stat", _name + "/x")       # too long in the middle of a path
    case("unlink", _name)
    case("rmdir", _name)
    case("exists", _name)

# a too-long name after a prefix that already fails: the walk fails first
for _prefix in ("nope/", "f/", "d/nope/"):
    case("stat", _prefix + NAME_256)
    case("mkdir", _prefix + NAME_256)
    case("open", _prefix + E_ACUTE_256, "wb")
    case("rename", "d/g", _prefix + NAME_256)

# whole path length: PATH_MAX (4096 bytes with the NUL) and beyond
for _p in (PATH_4096, PATH_5000, DOTS_5000, "../" * 1400 + "f"):
    case("stat", _p)
    case("mkdir", _p)
    case("open", _p, "wb")
    case("exists", _p)
case("rename", "f", PATH_5000)
case("rename", PATH_5000, "h")
case("link", "f", PATH_5000)

# NUL bytes: ValueError (daxfs: InvalidPathError, also OSError(EINVAL))
for _p in ("f\0", "\0", "d/\0g", "nope\0/x", "\0/f"):
    case("stat", _p)
    case("listdir", _p)
    case("mkdir", _p)
    case("rmdir", _p)
    case("unlink", _p)
    case("open", _p, "rb")
    case("open", _p, "wb")
    case("chmod", _p, 0o600)
    case("exists", _p)
case("rename", "f\0", "h")
case("rename", "f", "h\0")
case("link", "f\0", "h")
case("link", "f", "h\0")

# a component that is a file, and missing components
for _p in ("f/x", "f/x/y", "d/g/x"):
    case("stat", _p)
    case("mkdir", _p)
    case("open", _p, "wb")
    case("open", _p, "rb")
    case("rmdir", _p)
    case("unlink", _p)
    case("rename", _p, "h")
    case("rename", "d/sub", _p)
    case("link", "d/g", _p)
    case("link", _p, "h")
    case("chmod", _p, 0o600)
case("listdir", "f")
case("listdir", "d/g")
for _p in ("nope", "nope/x", "d/nope", "d/nope/x"):
    case("stat", _p)
    case("listdir", _p)
    case("open", _p, "rb")
    case("open", _p, "wb")
    case("mkdir", _p + "/y")
    case("rmdir", _p)
    case("unlink", _p)
    case("rename", _p, "h")
    case("rename", "f", _p + "/y")
    case("link", _p, "h")
    case("exists", _p)

# mkdir of what exists; rmdir / unlink of the wrong type
for _p in ("d", "f", "d/g", "d/sub", "empty"):
    case("mkdir", _p)
    case("mkdir", _p, exist_ok=True)
case("rmdir", "d")                   # not empty
case("rmdir", "f")
case("rmdir", "d/g")
case("rmdir", "empty")
case("rmdir", "d/sub")
case("unlink", "d")
case("unlink", "empty")
case("unlink", "f")

# open of a directory, and exclusive create
for _mode in ("rb", "r+b", "wb", "w+b", "xb", "ab", "a+b"):
    case("open", "d", _mode)
    case("open", "f", _mode)
    case("open", "new", _mode)

# rename edge cases
case("rename", "f", "f")
case("rename", "f", "f", replace=False)
case("rename", "d", "d")
case("rename", "d", "d", replace=False)
case("rename", "d", "d/sub/x")       # into its own subdirectory
case("rename", "d", "d/new")
case("rename", "d", "d/sub")
case("rename", "d/sub", "d")         # over its own parent
case("rename", "f", "d")             # file over a directory
case("rename", "f", "empty")
case("rename", "d", "f")             # directory over a file
case("rename", "empty", "d")         # over a non-empty directory
case("rename", "d", "empty")         # over an empty directory
case("rename", "d", "empty", replace=False)
case("rename", "f", "d/g")           # over an existing file
case("rename", "f", "d/g", replace=False)
case("rename", "f", "h", replace=False)
case("rename", "d", "empty/x")       # a directory into another
case("rename", "d/g", "d/sub/g")
case("rename", "nope", "f")
case("rename", "f", "nope/x")

# link edge cases
case("link", "d", "x")               # hard link to a directory: EPERM
case("link", "f", "d/g")
case("link", "f", "f")
case("link", "f", "d")
case("link", "f", "d/sub/h")
case("link", "nope", "x")
case("link", "d", "f")               # EEXIST is found before EPERM
case("link", "empty", "d/sub")
case("link", "d", "nope/x")          # ENOENT is found before EPERM
case("rename", "nope", "f/x")        # the target's parent is walked before the source is looked up
case("rename", "nope", "nope2/x")
case("rename", "d/g", "d")           # a file onto its own parent: ENOTEMPTY (ancestor), not EISDIR
case("rename", "d/sub", "d/sub/..")


@pytest.mark.parametrize("item", CASES, ids=[describe_call(*c) for c in CASES])
def test_call_matches_os(sides: Sides, item: tuple[str, tuple[Any, ...], dict[str, Any]]) -> None:
    """One call: same outcome as os, same tree afterwards, nothing changed if it failed."""
    op, args, kwargs = item
    check_same_as_os(sides, op, *args, **kwargs)


# ---------------------------------------------------------------------------
# sequences where the state matters


def test_rename_between_hard_links_of_one_file_keeps_both(sides: Sides) -> None:
    """rename(a, b) where a and b are links to one inode does nothing (POSIX), on both sides."""
    check_same_as_os(sides, "link", "f", "h")
    check_same_as_os(sides, "rename", "f", "h")
    assert sorted(sides.vol.listdir("/")) == sorted(os.listdir(sides.ref.root))
    assert sides.vol.stat("h").st_nlink == os.stat(sides.ref.root + "/h").st_nlink == 2


def test_mkdir_with_long_names_at_every_level(sides: Sides) -> None:
    """Nested 255-byte names work until the path reaches PATH_MAX, on both sides."""
    check_same_as_os(sides, "mkdir", NAME_255)
    check_same_as_os(sides, "mkdir", NAME_255 + "/" + E_ACUTE_255)
    check_same_as_os(sides, "open", NAME_255 + "/" + E_ACUTE_255 + "/" + EMOJI_255, "wb")
    got = check_same_as_os(sides, "listdir", NAME_255 + "/" + E_ACUTE_255)
    assert got == ("ok", [EMOJI_255])


def test_failed_calls_leave_free_space_unchanged(sides: Sides) -> None:
    """A burst of failing calls, then statfs().free and the tree are what they were."""
    before = sides.exact_state_dax()
    failing = [
        ("mkdir", ("d",)), ("mkdir", ("f/x",)), ("rmdir", ("d",)), ("unlink", ("d",)),
        ("rename", ("d", "d/sub/x")), ("rename", ("empty", "d")), ("link", ("d", "x")),
        ("open", ("nope/x", "wb")), ("open", ("f", "xb")), ("open", (NAME_256, "wb")),
        ("mkdir", (PATH_5000,)), ("rename", ("f", "d/g/x")),
    ]
    for op, args in failing:
        outcome = check_same_as_os(sides, op, *args)
        assert outcome[0] == "error", f"{op}{args} was expected to fail on both sides"
    assert sides.exact_state_dax() == before


def test_open_file_survives_unlink_of_its_name_and_directory(sides: Sides) -> None:
    """Unlinking an open file's name: the handle still reads the data; the name is gone."""
    with sides.vol.open("d/g", "rb", buffering=0) as dax_file, open(sides.ref.root + "/d/g", "rb", buffering=0) as ref_file:
        check_same_as_os(sides, "unlink", "d/g")
        check_same_as_os(sides, "rmdir", "d/sub")
        check_same_as_os(sides, "rmdir", "d")
        assert dax_file.read() == ref_file.read() == G_DATA
        assert dax_file.stat().st_nlink == os.fstat(ref_file.fileno()).st_nlink == 0
    assert sides.vol.fsck() == []


def test_new_files_and_directories_follow_the_current_umask(sides: Sides) -> None:
    """os applies the umask in force at each call; so must daxfs, even if it changed after mount."""
    old = os.umask(0o027)
    try:
        check_same_as_os(sides, "mkdir", "new", 0o777)
        check_same_as_os(sides, "open", "newfile", "wb")
        got = check_same_as_os(sides, "stat", "new")
        assert got[0] == "ok" and got[1]["perm"] == oct(0o750)
    finally:
        os.umask(old)
