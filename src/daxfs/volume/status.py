"""StatusPage: what the read-write opener publishes for other processes.

Pins, mappings and the busy list live in the writer's memory; ``daxfs pins``
and ``daxfs df`` run in other processes.  So the writer publishes a snapshot
(its pid, the time, busy bytes, as many references as fit) into a reserved
page of the pool header, within ``PUBLISH_EVERY`` seconds of a change and at
most once per interval.  The publishing is done by one long-lived flusher
thread per volume (started at the first change, ended at unmount or when the
volume is dropped unclosed): a change only marks the page stale and wakes it,
so taking or letting go of a reference starts no thread and writes no page.
Informational only: never persisted on purpose, never read by mount.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import Any

from daxfs._types import PinInfo
from daxfs.format.layout import STATUS_OFFSET, STATUS_SIZE
from daxfs.format.status import decode_status, encode_status
from daxfs.volume.journal import Journal
from daxfs.volume.references import ReferenceTable

PUBLISHED_REFS = 300           # references listed in the page (the total is always there)


class StatusPage:
    """Publishes one volume's references and busy space to its pool's status page."""

    PUBLISH_EVERY = 0.2

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        #: whose references are published (set once the volume has built its table)
        self.references: ReferenceTable | None = None
        self._published = 0.0                    # when the page was last written
        self._stale = False                      # a change is not published yet
        self._wake = threading.Event()           # set: the flusher has a change to publish
        self._flusher: threading.Thread | None = None
        self._stopped = False

    def changed(self) -> None:
        """Publish soon: within ``PUBLISH_EVERY`` seconds, by the flusher thread."""
        if self._stale:
            return              # already woken for an earlier change: it publishes this one too
        journal = self._journal
        if journal.readonly or journal.closed or self._stopped:
            return
        self._stale = True
        if self._flusher is None:
            # The thread holds the page weakly: a volume dropped without close() is still
            # collected, and its flusher ends (it looks every IDLE_CHECK seconds).
            flusher = threading.Thread(target=_flush_loop, args=(weakref.ref(self), self._wake),
                                       name=f"daxfs status {journal.pool.name}", daemon=True)
            self._flusher = flusher
            flusher.start()
        self._wake.set()

    def _flush(self) -> bool:
        """Keep the interval since the last publish, then publish; False once unmounted."""
        pause = self._published + self.PUBLISH_EVERY - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        with self._journal.lock:
            self._wake.clear()
            if self._stopped or self._journal.closed:
                return False
            if self._stale:
                self.publish()
        return True

    def publish(self) -> None:
        """Write the page now (the caller holds the volume's lock)."""
        self._stale = False
        self._published = time.monotonic()
        table = self.references
        live = table.live() if table is not None else []
        # The page holds a few hundred; listing more would only stall the writer.
        refs = [list(info) for info in table.infos(live[:PUBLISHED_REFS])] if table is not None else []
        status = {"pid": os.getpid(), "time": time.time(),
                  "busy": self._journal.core.busy.blocks * self._journal.block_size,
                  "total": len(live), "refs": refs}
        if self._journal.meta_ok(STATUS_OFFSET, STATUS_SIZE):      # a bad page is not written again
            self._journal.pool.write(STATUS_OFFSET, encode_status(status, STATUS_SIZE))

    def clear(self) -> None:
        """The writer unmounts: nothing is published any more."""
        self._stopped = True        # the flusher ends at its next wake-up, writing nothing
        self._wake.set()
        if self._journal.meta_ok(STATUS_OFFSET, STATUS_SIZE):
            self._journal.pool.write(STATUS_OFFSET, bytes(64))


IDLE_CHECK = 5.0         # how often an idle flusher looks whether its volume still exists


def _flush_loop(page_ref: "weakref.ref[StatusPage]", wake: threading.Event) -> None:
    """The flusher thread: wait for a change, publish it; end at unmount or with the page."""
    while True:
        woken = wake.wait(IDLE_CHECK)
        page = page_ref()
        if page is None or page._stopped:
            return
        if woken and not page._flush():
            return
        del page                # (not held while waiting)


def read_status(journal: Journal) -> dict[str, Any] | None:
    """What the pool's read-write opener last published (pid, time, busy bytes, refs as
    PinInfo, total), or None when no live process has published anything."""
    status = decode_status(journal.pool.read(STATUS_OFFSET, STATUS_SIZE))
    if status is None or not alive(status.get("pid", 0)):
        return None
    try:
        status["refs"] = [PinInfo(*ref) for ref in status.get("refs", ())]
    except TypeError:
        return None
    return status


def alive(pid: object) -> bool:
    """Whether process ``pid`` exists (a published status outlives a crashed writer)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
