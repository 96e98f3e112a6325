"""Leaving a ``with`` block, for every front end (``Volume``, ``Client``).

A clean exit closes as ``close()`` does (BusyError while references live).  An exit by an
exception must let the caller see *that* exception and still let go of the pool: mappings
are migrated to private memory and leases broken (``close(force=True, timeout=0)``); pins
cannot be revoked (a device may be writing into them), so then the close is deferred to the
last release.  A failure of the close itself is added to the caller's exception as a note.
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

from daxfs.errors import BusyError


class ClosesOnExit:
    """``__enter__``/``__exit__`` over ``close(force=, timeout=)``; a front end defers the
    close with ``_defer_close`` and calls ``_close_in_background`` at its last release."""

    close: Any
    path: str

    def __enter__(self) -> Any:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
            return
        try:
            self.close(force=True, timeout=0)
        except BusyError:
            self._defer_close()
        except Exception as failure:    # noqa: BLE001 - reported on the caller's exception
            if isinstance(exc, BaseException):
                exc.add_note(f"daxfs: closing {self.path} failed too: {failure!r}")

    def _defer_close(self) -> None:
        """Close once no pin is left (the front end watches its releases)."""
        raise NotImplementedError

    def _close_in_background(self) -> None:
        # Not on the releasing thread: it runs inside the release, under the front end's lock.
        threading.Thread(target=self._close_deferred, name="daxfs-deferred-close").start()

    def _close_deferred(self) -> None:
        try:
            self.close(force=True, timeout=0)
        except Exception as failure:    # noqa: BLE001 - no caller is left to tell but this
            warnings.warn(f"daxfs: deferred close of {self.path} failed: {failure!r}", RuntimeWarning,
                          stacklevel=1)
