"""Holder: a named owner of open files, mappings and pins.

In one process, a holder stands for a client (a worker, a request, a DMA
context); in the arbiter each connection is one.  Everything opened, mapped
or pinned through it belongs to it, and ``close()`` releases all of it at
once — the seeds' "seals released automatically when the holder exits".
Otherwise it offers the volume's API unchanged.  The volume knows a holder
only by its ``str()`` (its name) and the ``owned`` set it keeps current.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daxfs.access.file import File
    from daxfs.volume import Volume


class Holder:
    """What ``vol.holder(name)`` returns."""

    def __init__(self, volume: "Volume", name: str) -> None:
        self._vol = volume
        self.name = name
        self.closed = False
        #: what it holds: open files, mappings, pins (removed as each is let go)
        self.owned: set[Any] = set()

    def __repr__(self) -> str:
        return f"<daxfs.Holder {self.name!r}{' closed' if self.closed else ''}>"

    def __str__(self) -> str:
        return self.name

    def open(self, path: object, mode: str = "rb", buffering: int = -1, encoding: str | None = None,
             errors: str | None = None, newline: str | None = None) -> "File":
        if self.closed:
            raise ValueError("holder is closed")
        return self._vol.open(path, mode, buffering, encoding, errors, newline, holder=self)

    def close(self) -> None:
        """Release every file, mapping and pin this holder owns."""
        if self.closed:
            return
        self.closed = True
        with self._vol.lock:
            for thing in list(self.owned):
                if getattr(thing, "kind", None) == "pin":
                    if not thing.released:
                        thing.release()
                else:
                    thing.close()
            self.owned.clear()

    def __enter__(self) -> "Holder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        # The rest of the volume API (stat, mkdir, unlink, ...) is the volume's own.
        if name.startswith("_") or name in ("close", "holder"):
            raise AttributeError(name)
        return getattr(self._vol, name)
