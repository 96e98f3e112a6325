"""PinListing: ``vol.pins()``, every live reference as a PinInfo, oldest first.

A listing of 10,000 pins must not make 10,000 PinInfo afresh each time.  So each
reference keeps the PinInfo it was last listed as (``Reference.listed``), and it is
remade only when something it shows may have changed: the inode's references (one
taken or let go: ``taken``/``gone`` forget the inode), the inode's path (renamed,
unlinked), or what one of its holders says of itself (name, pid, uid: asked again at
every listing, since the process holder's change after a fork).  The live references
are kept in the order taken, which is the listing's order but for clock steps and
ties: the listing is sorted only when their times say it is not in order already.

The reference table owns one and calls it under the volume's lock.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from daxfs._types import PinInfo
from daxfs.core.inode_paths import paths_of

if TYPE_CHECKING:
    from daxfs.volume.journal import Journal
    from daxfs.volume.references import Reference

# PinInfo order in a listing: oldest first (since, then ino and offset).
_ORDER = operator.itemgetter(6, 1, 3)
_SINCE = operator.itemgetter(6)

HolderFields = tuple[str, "int | None", "int | None"]


class PinListing:
    """The PinInfo of one volume's live references, kept between listings."""

    def __init__(self, journal: "Journal", holder_name: Callable[[object], str]) -> None:
        self._journal = journal
        self._holder_name = holder_name
        #: ino -> (path, [(holder, its fields)]) its references' ``listed`` were made with
        self._listed: dict[int, tuple[str | None, list[tuple[object, HolderFields]]]] = {}
        self._taken: dict["Reference", None] = {}        # the live references, in the order taken

    def taken(self, ref: "Reference") -> None:
        """A new live reference (registered)."""
        self._taken[ref] = None
        self._listed.pop(ref.ino, None)

    def gone(self, ref: "Reference") -> None:
        """A reference no longer live (released, revoked, forced out)."""
        self._taken.pop(ref, None)
        self._listed.pop(ref.ino, None)

    def _fields(self, holder: object) -> HolderFields:
        return self._holder_name(holder), getattr(holder, "pid", None), getattr(holder, "uid", None)

    def _list(self, ino: int, refs: Iterable["Reference"], path: str | None) -> None:
        """Make the PinInfo of each of ``ino``'s references (``ref.listed``)."""
        fields = {id(ref.holder): self._fields(ref.holder) for ref in refs}
        for ref in refs:
            name, pid, uid = fields[id(ref.holder)]
            ref.listed = PinInfo(name, ino, path, ref.offset, ref.length, ref.listed_kind, ref.since, pid, uid)

    def infos(self, seals: dict[int, set["Reference"]], refs: list["Reference"] | None = None) -> list[PinInfo]:
        """PinInfo for ``refs`` (default: every live reference: ``seals``, ino -> its
        references), oldest first."""
        if refs is None:
            return self._all(seals)
        paths = paths_of(self._journal.core, {ref.ino for ref in refs})
        for ino in {ref.ino for ref in refs}:
            # (an inode's entry stays: these are remade with today's path and holders, so
            # they agree with it, or the entry no longer does and the next listing remakes all)
            self._list(ino, [ref for ref in refs if ref.ino == ino], paths[ino])
        out = [ref.listed for ref in refs]
        out.sort(key=_ORDER)
        return out  # type: ignore[return-value]

    def _all(self, seals: dict[int, set["Reference"]]) -> list[PinInfo]:
        paths = paths_of(self._journal.core, set(seals))
        asked: dict[int, HolderFields] = {}          # id(holder) -> fields, this listing
        listed = self._listed
        for ino, refs in seals.items():
            path = paths[ino]
            entry = listed.get(ino)
            if entry is not None and entry[0] == path:
                for holder, said in entry[1]:
                    now = asked.get(id(holder))
                    if now is None:
                        asked[id(holder)] = now = self._fields(holder)
                    if now != said:
                        entry = None
                        break
            else:
                entry = None
            if entry is None:
                holders = {id(ref.holder): ref.holder for ref in refs}.values()
                listed[ino] = (path, [(holder, self._fields(holder)) for holder in holders])
                self._list(ino, refs, path)
        out = [ref.listed for ref in self._taken]
        since = list(map(_SINCE, out))
        if not all(map(operator.lt, since, since[1:])):
            out.sort(key=_ORDER)    # a tie or a clock step: else taken order is listing order
        return out  # type: ignore[return-value]


__all__ = ["PinListing"]
