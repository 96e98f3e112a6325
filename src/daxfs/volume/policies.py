"""PolicyActions: what a change does about the references over its range, and a forced close.

The pin policy of a change (``defer``, ``wait``, ``break``, ``refuse``; seed 004) is a
table from (policy, kind of reference) to an action, and the whole rule is that table.
``settle`` applies it to one change: refuse at once, wait (the volume's lock let go, so
the release that ends the wait is still served), or break leases (each holder told, then
revoked after ``lease_break_s``); whatever a deferred change leaves behind goes on the busy
list.  ``force_out`` is the forced close: leases broken, other mappings revoked, pins
(never revoked) waited for.

A mixin of ``ReferenceTable`` (references.py): it reads the table's references
(``covering``, ``live``, ``writers_over``) and moves them (``_move``, ``revoke``), always
under the volume's lock, which ``wait_until`` lets go while it waits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from daxfs.errors import BusyError
from daxfs.volume.waits import wait_hook

if TYPE_CHECKING:
    from daxfs.volume.journal import Journal
    from daxfs.volume.references import Reference

POLICIES = ("defer", "wait", "break", "refuse")

# What a pin policy does to each kind of reference over a changed range (h11-style:
# the whole rule is this table; a missing entry is a bug, not a default).
DEFER, WAIT, BREAK, REFUSE = "defer", "wait", "break", "refuse"
POLICY_ACTION: dict[tuple[str, str], str] = {
    ("defer", "pin"): DEFER, ("defer", "mapping"): DEFER, ("defer", "lease"): DEFER,
    ("wait", "pin"): WAIT, ("wait", "mapping"): WAIT, ("wait", "lease"): WAIT,
    ("break", "pin"): DEFER, ("break", "mapping"): DEFER, ("break", "lease"): BREAK,
    ("refuse", "pin"): REFUSE, ("refuse", "mapping"): REFUSE, ("refuse", "lease"): REFUSE,
}


def check_policy(policy: str | None) -> None:
    if policy is not None and policy not in POLICIES:
        raise ValueError(f"unknown pin policy {policy!r}; expected one of {', '.join(POLICIES)}")



class PolicyActions:
    """The policy half of ``ReferenceTable``: settle a change, break leases, force out."""

    policy: str
    lease_break_s: float
    closing: bool
    _journal: "Journal"
    _changed: threading.Condition
    _waiting: list[tuple[int, int, int]]

    def busy_error(self, what: str, refs: list[Reference], *, filename: str | None = None) -> BusyError:
        kinds = ", ".join(f"{r.listed_kind} on {r.path} [{r.offset}, +{r.length}) "
                          f"by {self.holder_name(r.holder)}" for r in refs[:5])
        more = f" and {len(refs) - 5} more" if len(refs) > 5 else ""
        return BusyError(f"{what}: {kinds}{more}", holders=sorted({self.holder_name(r.holder) for r in refs}),
                         filename=filename if filename is not None else self._journal.pool.name)

    def wait_until(self, done: Callable[[], bool], deadline: float | None) -> bool:
        """Wait (the lock let go meanwhile) until ``done()``; False at the deadline."""
        if done():
            return True
        hook = wait_hook()
        if hook is not None:
            hook()
        while not done():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self._changed.wait(remaining)
        return True

    def break_leases(self, leases: list[Reference], deadline: float | None = None) -> None:
        """Tell each lease to let go, give it ``lease_break_s``, then revoke (migrate) it."""
        if not leases:
            return
        for lease in leases:
            if self._move(lease, "break"):
                try:
                    lease.notify_break()
                except Exception:   # a holder's callback failing must not stop the change
                    pass
        limit = time.monotonic() + self.lease_break_s
        if deadline is not None:
            limit = min(limit, deadline)
        self.wait_until(lambda: all(lease.is_done() for lease in leases), limit)
        for lease in leases:
            if not lease.is_done():
                self.revoke(lease, "migrate")

    def settle(self, ino: int, first: int, end: int | None, policy: str | None, what: str,
               timeout: float | None = None) -> bool:
        """Apply the pin policy to a change of file blocks ``[first, end)``.

        Returns True when it waited (the lock was let go meanwhile, so the caller
        must look at the state again); raises BusyError for 'refuse' or a 'wait'
        that timed out.  What 'defer' and 'break' leave behind goes ahead: blocks
        still referenced are parked on the busy list.  A volume closed (or made
        read-only) while it waited refuses the change, as it would have before.
        """
        refs = self.covering(ino, first, end)
        if not refs:
            return False
        policy = policy or self.policy
        actions = {POLICY_ACTION[(policy, ref.listed_kind)] for ref in refs}
        if REFUSE in actions:
            raise self.busy_error(f"{what} refused", refs)
        if WAIT in actions:
            self._wait_for(ino, first, end, what, timeout)
            self._journal.check_writable()
            return True
        leases = [ref for ref in refs if POLICY_ACTION[(policy, ref.listed_kind)] == BREAK]
        if not leases:
            return False
        while leases:
            self.break_leases(leases)     # (the holders' callbacks ran, and the lock was let go)
            self._journal.check_writable()
            # a lease taken meanwhile is told too, before its range changes
            leases = [ref for ref in self.covering(ino, first, end)
                      if POLICY_ACTION[(policy, ref.listed_kind)] == BREAK]
        return True

    def _wait_for(self, ino: int, first: int, end: int | None, what: str, timeout: float | None) -> None:
        token = (ino, first, -1 if end is None else end)
        self._waiting.append(token)
        journal = self._journal
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            if not self.wait_until(lambda: journal.closed or not self.covering(ino, first, end), deadline):
                raise self.busy_error(f"{what} still held after waiting {timeout} s",
                                      self.covering(ino, first, end))
        finally:
            self._waiting.remove(token)
            self._changed.notify_all()

    def wait_for_writers(self, ino: int, first: int, end: int, what: str) -> bool:
        """No live write reference may cover a range about to be shared: refuse, or under
        'wait' wait for them to go (stores through them would land in every clone).  True
        when it waited: the lock was let go meanwhile (the caller looks at the files again)."""
        found = self.writers_over(ino, first, end)  # type: ignore[attr-defined]
        if not found:
            return False
        if self.policy == "wait":
            self.wait_until(lambda: not self.writers_over(ino, first, end), None)  # type: ignore[attr-defined]
            self._journal.check_writable()      # (a forced close revokes them, then closes)
            return True
        raise self.busy_error(what, found)

    def force_out(self, deadline: float | None) -> None:
        """A forced close: leases are broken, other mappings revoked (migrated), then pins —
        never revoked — are waited for until ``deadline``; BusyError if any remain."""
        self.closing = True        # no new references while the lock is let go below
        try:
            self.break_leases([r for r in self.live() if r.lease], deadline)
            for ref in self.live():
                if ref.kind != "pin":
                    self.revoke(ref, "migrate")
            if not self.wait_until(lambda: not self.live(), deadline):
                raise self.busy_error("pins still held after the close timeout", self.live())
        finally:
            self.closing = False




__all__ = ["PolicyActions", "POLICIES", "POLICY_ACTION", "check_policy"]
