"""Path syntax: turning a user's path into components, with Linux's errors.

Pure functions; resolution against the directory tree is ``Core.resolve``.
Rules (as Linux): ``/`` separates, repeated slashes collapse, a leading ``/``
is optional, ``.`` is the current directory, ``..`` the parent and at the
root the root itself; a name is at most 255 bytes of UTF-8 and a path at
most 4095; an empty path is ENOENT; a NUL byte is EINVAL (``InvalidPathError``,
also a ValueError like ``os`` raises).
"""

from __future__ import annotations

import errno
import os
import threading

from daxfs.errors import InvalidPathError, fs_error

NAME_MAX = 255
PATH_MAX = 4096

#: Threads whose paths are not a syscall's argument but a whole path from a mount's root (the
#: FUSE front end's, ``whole.paths = True``): PATH_MAX does not apply to them, as the kernel
#: applies it to what a program passes, relative to its working directory, not to depth.
whole = threading.local()


def fspath(path: object) -> str:
    """A path argument as ``str`` (bytes are decoded like ``os.fsdecode``)."""
    if isinstance(path, str):
        return path
    if isinstance(path, (bytes, os.PathLike)):
        return os.fsdecode(path)  # type: ignore[arg-type]
    raise TypeError(f"path must be str, bytes or os.PathLike, not {type(path).__name__}")


def split_path(path: str) -> tuple[list[str], bool]:
    """The components of ``path`` (``.`` and ``..`` kept) and whether it ends in ``/``."""
    if "\0" in path:
        raise InvalidPathError(errno.EINVAL, "embedded null byte", path)
    if not path:
        raise fs_error(errno.ENOENT, path)
    if len(path) >= PATH_MAX // 4 and len(path.encode("utf-8", "surrogateescape")) >= PATH_MAX \
            and not getattr(whole, "paths", False):
        raise fs_error(errno.ENAMETOOLONG, path)
    # Name lengths are checked by the walk, when it reaches each name (as Linux does).
    return [c for c in path.split("/") if c], path.endswith("/")


def check_name(name: str, path: str) -> None:
    """ENAMETOOLONG for a name over 255 bytes of UTF-8."""
    # 63 characters cannot exceed 255 bytes: skip the encode on the hot path
    if len(name) > NAME_MAX // 4 and len(name.encode("utf-8", "surrogateescape")) > NAME_MAX:
        raise fs_error(errno.ENAMETOOLONG, path)
