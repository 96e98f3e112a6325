"""``UPath("daxfs:///...", pool=POOL)``: universal_pathlib's path class for daxfs://.

universal_pathlib finds it through its ``universal_pathlib.implementations``
entry point (so this module, and upath, load only when a daxfs UPath is made).
Without it upath falls back to a generic class and warns that the protocol is
untested; the daxfs tests drive this one.
"""

from __future__ import annotations

from upath import UPath

__all__ = ["DaxfsPath"]


class DaxfsPath(UPath):  # type: ignore[misc]
    """A path in a daxfs volume: always absolute, "/" its root, as ``DaxFileSystem`` sees it."""

    __slots__ = ()

    @property
    def path(self) -> str:
        path = super().path
        return "/" if path in ("", ".") else str(path)
