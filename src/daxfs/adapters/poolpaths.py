"""Naming pools and sizes on the command line: ``POOL:PATH``, ``64M``, ``0x1000``, errors.

Pool and path arguments are written ``POOL:PATH`` (``/dev/shm/p.pool:/a/b``;
a bare ``POOL`` means the root directory).  The spec is read as:

1. the whole spec, if it names an existing file (so a pool's own name may hold ``:``);
2. else split at the last ``:`` whose left part names an existing file, trying
   the last ``:`` first (so ``p.pool:/a:b`` is ``/a:b`` in ``p.pool``);
3. else split at the last ``:`` if the part after it is empty or starts with
   ``/`` (a pool that does not exist; opening it reports that);
4. else the whole spec is the pool.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import re
from typing import Any

import daxfs
from daxfs.adapters.client import connect
from daxfs.adapters.wire import ServerLost, default_socket

__all__ = ["parse_size", "parse_offset", "parse_length", "format_size", "split_pool_path", "pool_spec",
           "describe_error", "open_pool", "is_dir", "target_in_dir", "same_file"]

_SIZE_UNITS: dict[str, int] = {"": 1, "b": 1}
for _power, _letter in enumerate("kmgtpe", start=1):
    # coreutils convention: K and KiB are powers of 1024, KB is a power of 1000.
    _SIZE_UNITS[_letter] = 1024 ** _power
    _SIZE_UNITS[_letter + "ib"] = 1024 ** _power
    _SIZE_UNITS[_letter + "b"] = 1000 ** _power

_SIZE_PATTERN = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")


def parse_size(text: str) -> int:
    """Bytes named by ``text``: ``4096``, ``64M``, ``1G``, ``1GiB``, ``1.5G``, ``10MB`` (powers of 1000)."""
    match = _SIZE_PATTERN.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise argparse.ArgumentTypeError(
            f"invalid size {text!r}: use bytes or a suffix, e.g. 64M, 1G, 1GiB, 10MB")
    number = match.group(1)
    multiplier = _SIZE_UNITS[unit]
    if "." in number:
        whole, fraction = number.split(".")
        # Exact integer arithmetic: float rounding must not change a pool size.
        scale = 10 ** len(fraction)
        return (int(whole) * scale + int(fraction)) * multiplier // scale
    return int(number) * multiplier


def parse_offset(text: str) -> int:
    """A byte offset or length: what ``parse_size`` reads, or hexadecimal (``0x1000``)."""
    stripped = text.strip()
    try:
        if stripped[:2].lower() == "0x":
            return int(stripped[2:], 16)
        return parse_size(stripped)
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(
            f"invalid offset {text!r}: use bytes, a suffix (4K, 1M) or hexadecimal (0x1000)") from None


def parse_length(text: str) -> int:
    length = parse_offset(text)
    if length <= 0:
        raise argparse.ArgumentTypeError(f"invalid length {text!r}: must be more than 0 bytes")
    return length


def format_size(n_bytes: int) -> str:
    """``n_bytes`` for people: ``0 B``, ``4 KiB``, ``1.5 GiB``."""
    if n_bytes < 1024:
        return f"{n_bytes} B"
    value = float(n_bytes)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        value /= 1024
        if value < 1024 or unit == "EiB":
            break
    text = f"{value:.1f}"
    return f"{text.removesuffix('.0')} {unit}"


def split_pool_path(spec: str) -> tuple[str, str]:
    """``(pool, path_in_volume)`` for a ``POOL[:PATH]`` spec; the module docstring gives the rule."""
    if _names_file(spec):
        return spec, "/"
    colon = spec.rfind(":")
    while colon > 0:
        if _names_file(spec[:colon]):
            return spec[:colon], spec[colon + 1:] or "/"
        colon = spec.rfind(":", 0, colon)
    pool, colon_found, inner = spec.rpartition(":")
    if colon_found and pool and (inner == "" or inner.startswith("/")):
        return pool, inner or "/"
    return spec, "/"


def _names_file(path: str) -> bool:
    # Anything but a directory can be a pool: a regular file or a device such as /dev/dax0.0.
    return os.path.exists(path) and not os.path.isdir(path)


def describe_error(error: OSError) -> str:
    """One line for an OSError: ``name: reason``, the way coreutils prints them."""
    reason = error.strerror if error.strerror else (str(error) or type(error).__name__)
    if error.filename is not None and error.filename2 is not None:
        text = f"{error.filename} -> {error.filename2}: {reason}"
    elif error.filename is not None:
        text = f"{error.filename}: {reason}"
    else:
        text = reason
    return " ".join(str(text).split())


def open_pool(pool: str, *, readonly: bool = False) -> Any:
    """The volume in ``pool``: through its arbiter when ``daxfs serve`` runs for it (a
    ``Client``), else mounted here.  An error that does not say which file failed is
    tagged with the pool's name."""
    try:
        served = served_by(pool)
        if served is not None:
            return served
        return daxfs.open_volume(pool, readonly=readonly)
    except OSError as error:
        if error.filename is None:
            error.filename = pool
        raise


def served_by(pool: str) -> Any:
    """A client of the arbiter serving ``pool``, or None when none listens."""
    if not os.path.isfile(pool):
        return None
    sock = default_socket(pool)
    if not os.path.exists(sock):
        return None
    try:
        return connect(sock, name=f"daxfs cli (pid {os.getpid()})")
    except ServerLost:
        return None             # a socket left by an arbiter that died


def is_dir(vol: Any, path: str) -> bool:
    return vol.exists(path) and vol.stat(path).is_dir()


def target_in_dir(vol: Any, path: str, name: str) -> str:
    """``path``, or ``path/name`` when ``path`` is a directory, as ``cp`` and ``mv`` treat a target."""
    if path.endswith("/") or is_dir(vol, path):
        return posixpath.join(path, name)
    return path


def same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def pool_spec(spec: str) -> tuple[str, str] | None:
    """``(pool, path)`` when ``spec`` is ``POOL:PATH``; None for a local path (no pool part)."""
    pool, path = split_pool_path(spec)
    return None if pool == spec else (pool, path)
