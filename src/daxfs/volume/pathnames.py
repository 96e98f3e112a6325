"""The ``os`` and ``os.path`` names Python users reach for, on any daxfs front end.

``remove``, ``replace``, ``makedirs``, ``scandir``, ``walk``, ``isdir``, ``isfile``,
``getsize`` and ``truncate(path, length)`` behave as their ``os`` namesakes do, built on the
volume's own operations, so the embedded ``Volume`` and the arbiter's ``Client`` share them
(``PathNames`` is mixed into both).  The one primitive a front end supplies is
``_scan(path)``: the entries of a directory with each one's stat, taken at one moment (one
lock, or one round trip to the arbiter), so ``scandir`` costs one call however many entries.
"""

from __future__ import annotations

import os
import stat as _stat
from collections.abc import Callable, Iterator
from typing import Any

from daxfs._types import DirEntry, Stat


class ScandirIterator:
    """What ``scandir`` returns: an iterator of ``DirEntry`` that is also a context manager,
    as ``os.scandir``'s is (the listing is already taken; ``close`` only ends iteration)."""

    def __init__(self, entries: list[DirEntry]) -> None:
        self._entries = iter(entries)

    def __iter__(self) -> "ScandirIterator":
        return self

    def __next__(self) -> DirEntry:
        return next(self._entries)

    def close(self) -> None:
        self._entries = iter(())

    def __enter__(self) -> "ScandirIterator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PathNames:
    """``os``-named helpers over ``stat``, ``mkdir``, ``unlink``, ``rename``, ``open``, ``_scan``."""

    # what the front end provides
    stat: Callable[[object], Stat]
    mkdir: Callable[..., None]
    unlink: Callable[..., None]
    rename: Callable[..., None]
    open: Callable[..., Any]

    def _scan(self, path: object) -> list[tuple[str, Stat]]:
        raise NotImplementedError

    def remove(self, path: object) -> None:
        """Remove a file, as ``os.remove`` (EISDIR for a directory)."""
        self.unlink(path)

    def replace(self, src: object, dst: object) -> None:
        """Rename, replacing ``dst`` if it exists, as ``os.replace``."""
        self.rename(src, dst, replace=True)

    def makedirs(self, path: object, mode: int = 0o777, exist_ok: bool = False) -> None:
        """Create a directory and its missing parents, as ``os.makedirs``."""
        self.mkdir(path, mode, parents=True, exist_ok=exist_ok)

    def isdir(self, path: object) -> bool:
        """Whether ``path`` names a directory; False where it names nothing (``os.path.isdir``)."""
        return self._is(path, _stat.S_ISDIR)

    def isfile(self, path: object) -> bool:
        """Whether ``path`` names a regular file; False where it names nothing."""
        return self._is(path, _stat.S_ISREG)

    def _is(self, path: object, test: Callable[[int], bool]) -> bool:
        try:
            return test(self.stat(path).st_mode)
        except (OSError, ValueError):
            if getattr(self, "closed", False):
                raise
            return False

    def getsize(self, path: object) -> int:
        """The size of a file in bytes (``os.path.getsize``)."""
        return self.stat(path).st_size

    def truncate(self, path: object, length: int) -> None:
        """Set a file's size, as ``os.truncate(path, length)`` (EISDIR for a directory)."""
        with self.open(path, "r+b", buffering=0) as f:
            f.truncate(length)

    def scandir(self, path: object = "/") -> ScandirIterator:
        """The entries of a directory, as ``os.scandir``: each a ``DirEntry`` with ``name``,
        ``path``, ``is_dir()``, ``is_file()``, ``is_symlink()``, ``stat()``, ``inode()``,
        all from one listing."""
        base = os.fspath(path) if not isinstance(path, str) else path
        scanned = self._scan(path)
        names = names_like(base, [name for name, _ in scanned])
        return ScandirIterator([DirEntry(name, _join(base, name), st, self.stat)
                                for name, (_, st) in zip(names, scanned)])

    def walk(self, top: object = "/", topdown: bool = True, onerror: Callable[[OSError], Any] | None = None,
             followlinks: bool = False) -> Iterator[tuple[str, list[str], list[str]]]:
        """``(dirpath, dirnames, filenames)`` for each directory under ``top``, as ``os.walk``
        (with ``topdown`` the caller may prune ``dirnames`` in place)."""
        stack: list[Any] = [os.fspath(top) if not isinstance(top, str) else top]
        while stack:
            item = stack.pop()
            if isinstance(item, tuple):         # a bottom-up result, ready once its subtree is done
                yield item
                continue
            try:
                entries = list(self.scandir(item))
            except OSError as exc:
                if onerror is not None:
                    onerror(exc)
                continue
            dirs: list[str] = []
            files: list[str] = []
            descend: list[str] = []
            for entry in entries:
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                (dirs if is_dir else files).append(entry.name)
                if is_dir and not topdown and (followlinks or not entry.is_symlink()):
                    descend.append(entry.path)
            if topdown:
                yield item, dirs, files
                # after the caller saw (and maybe pruned) dirnames
                for name in reversed(dirs):
                    child = _join(item, name)
                    if followlinks or not self._is_link(child):
                        stack.append(child)
            else:
                stack.append((item, dirs, files))
                stack.extend(reversed(descend))

    def _is_link(self, path: str) -> bool:
        lstat = getattr(self, "lstat", None)
        if lstat is None:
            return False
        try:
            return _stat.S_ISLNK(lstat(path).st_mode)
        except OSError:
            return False


def names_like(path: object, names: list[str]) -> list[Any]:
    """Names as ``os`` gives them for ``path``: bytes where the path was bytes (``os.listdir(b".")``
    lists bytes), else as they are."""
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    return [os.fsencode(name) for name in names] if isinstance(path, bytes) else names


def _join(base: Any, name: Any) -> Any:
    sep = b"/" if isinstance(base, bytes) else "/"
    return base + name if base.endswith(sep) else base + sep + name
