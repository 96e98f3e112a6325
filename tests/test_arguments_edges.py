"""``volume/arguments.py`` at its edges (found by a mutation run over it): each test pins
down one limit or one branch a slip there would move while the broad outcome tests of
``test_arguments`` (one value per class: a float, 2**64, -1...) still passed.

- ``offset``, ``byte_range``, ``count``: the last value accepted and the first refused on
  each side (0 and -1; MAX_FILE_SIZE and one past it, EFBIG; the largest off_t, EFBIG for an
  offset, and one past it, OverflowError), and which errno each refusal carries.
- ``mode_bits``: a C int's range exactly, and only the permission bits kept.
- ``owner_id``: -1 is "leave it", the largest id is accepted, (uid_t)-1 and -2 are not.
- ``time_ns``/``times_ns``: int64 is kept as it is, beyond it is clamped to the nearer
  end, and OverflowError starts exactly where ``os.utime`` starts raising it (it splits the
  nanoseconds into seconds by floor division: -2**63 s is a valid time_t, -2**63 s - 1 ns
  is not).  Checked against ``os.utime`` on tmpfs.
- ``timeout``: numbers (and what has ``__float__``) are seconds, NaN and negatives are
  ValueError, strings and other objects TypeError.
- ``open_flags``/``parse_mode``: every mode's flags against what its letters mean, the
  letters in any order, and each way a mode can be invalid.
"""

from __future__ import annotations

import errno
import math
import os
from decimal import Decimal
from fractions import Fraction
from itertools import permutations
from pathlib import Path

import numpy as np
import pytest

from _small_volume import small_volume
from daxfs.volume import arguments
from daxfs.volume.arguments import MAX_FILE_SIZE, OpenFlags

OFF_MAX = (1 << 63) - 1          # a C off_t / ssize_t
NS = 1_000_000_000


def _errno(call, *args):
    with pytest.raises(OSError) as info:
        call(*args)
    assert not isinstance(info.value, OverflowError)
    return info.value.errno


# offsets, ranges, counts ------------------------------------------------------------------


def test_offset_limits_on_each_side() -> None:
    assert arguments.offset(0) == 0
    assert arguments.offset(MAX_FILE_SIZE) == MAX_FILE_SIZE == 1 << 62
    assert arguments.offset(np.int64(7)) == 7 and arguments.offset(True) == 1
    assert _errno(arguments.offset, -1) == errno.EINVAL
    assert _errno(arguments.offset, -(1 << 70)) == errno.EINVAL       # negative, not too large
    assert _errno(arguments.offset, MAX_FILE_SIZE + 1) == errno.EFBIG
    assert _errno(arguments.offset, OFF_MAX) == errno.EFBIG            # fits off_t: EFBIG, as ftruncate
    with pytest.raises(OverflowError):
        arguments.offset(OFF_MAX + 1)
    with pytest.raises(TypeError):
        arguments.offset(1.0)


def test_offset_errors_name_what_was_wrong() -> None:
    with pytest.raises(OSError, match="negative length"):
        arguments.offset(-1, "length")
    with pytest.raises(OSError, match="negative offset"):
        arguments.offset(-1)
    with pytest.raises(OverflowError, match=r"^size \d+ is too large"):
        arguments.offset(OFF_MAX + 1, "size")
    with pytest.raises(OSError, match=r"^\[Errno \d+\] size \d+ is beyond the largest file size"):
        arguments.offset(MAX_FILE_SIZE + 1, "size")


def test_byte_range_limits() -> None:
    assert arguments.byte_range(0, 1) == (0, 1)
    assert arguments.byte_range(5, np.uint16(3)) == (5, 3)
    assert arguments.byte_range(MAX_FILE_SIZE - 10, 10) == (MAX_FILE_SIZE - 10, 10)   # ends at the limit
    assert _errno(arguments.byte_range, MAX_FILE_SIZE - 10, 11) == errno.EFBIG
    assert _errno(arguments.byte_range, 0, MAX_FILE_SIZE + 1) == errno.EFBIG
    assert _errno(arguments.byte_range, 0, OFF_MAX) == errno.EFBIG
    assert _errno(arguments.byte_range, 0, 0) == errno.EINVAL
    assert _errno(arguments.byte_range, 0, -1) == errno.EINVAL
    assert _errno(arguments.byte_range, -1, 1) == errno.EINVAL
    with pytest.raises(OverflowError):
        arguments.byte_range(0, OFF_MAX + 1)
    with pytest.raises(TypeError):
        arguments.byte_range(0, 1.0)


def test_count_limits() -> None:
    assert arguments.count(0) == 0
    assert arguments.count(OFF_MAX) == OFF_MAX                         # a read may ask for any ssize_t
    assert _errno(arguments.count, -1) == errno.EINVAL
    with pytest.raises(OSError, match="negative size"):
        arguments.count(-1, "size")
    with pytest.raises(OverflowError, match="ssize_t"):
        arguments.count(OFF_MAX + 1)
    with pytest.raises(TypeError):
        arguments.count("1")


# modes, ids, times ----------------------------------------------------------------------


def test_mode_bits_take_a_c_int_and_keep_the_permission_bits() -> None:
    assert arguments.mode_bits(0o100644) == 0o644
    assert arguments.mode_bits(0o7777) == 0o7777
    assert arguments.mode_bits(0o17777) == 0o7777
    assert arguments.mode_bits((1 << 31) - 1) == 0o7777
    assert arguments.mode_bits(-(1 << 31)) == 0
    assert arguments.mode_bits(-1) == 0o7777
    for bad in (1 << 31, -(1 << 31) - 1):
        with pytest.raises(OverflowError):
            arguments.mode_bits(bad)
    with pytest.raises(TypeError):
        arguments.mode_bits(0.5)


def test_owner_id_range() -> None:
    assert arguments.owner_id(-1, "uid") is None
    assert arguments.owner_id(0, "uid") == 0
    assert arguments.owner_id((1 << 32) - 2, "gid") == (1 << 32) - 2
    for bad in ((1 << 32) - 1, -2, 1 << 40):
        with pytest.raises(OverflowError, match="^gid "):
            arguments.owner_id(bad, "gid")
    with pytest.raises(TypeError):
        arguments.owner_id(None, "uid")


def test_time_ns_keeps_int64_and_clamps_beyond_it() -> None:
    top, bottom = (1 << 63) - 1, -(1 << 63)
    for t in (0, 1, -1, top, top - 1, bottom, bottom + 1):
        assert arguments.time_ns(t) == t
    assert arguments.time_ns(top + 1) == top
    assert arguments.time_ns(bottom - 1) == bottom
    assert arguments.time_ns(top * NS + NS - 1) == top          # the last time_t second
    assert arguments.time_ns(bottom * NS) == bottom             # the first
    for t in ((top + 1) * NS, bottom * NS - 1, 1 << 100, -(1 << 100)):
        with pytest.raises(OverflowError, match="time_t"):
            arguments.time_ns(t)


@pytest.mark.parametrize("t", [(1 << 63) * NS - 1, (1 << 63) * NS, -(1 << 63) * NS, -(1 << 63) * NS - 1],
                         ids=["last second", "past it", "first second", "before it"])
def test_utime_overflows_where_os_does(t: int, tmp_path: Path) -> None:
    host = tmp_path / "f"
    host.write_bytes(b"")
    try:
        os.utime(host, ns=(t, 0))
        expected = None
    except OverflowError as exc:
        expected = exc
    vol = small_volume()
    vol.open("/f", "wb").close()
    if expected is None:
        vol.utime("/f", ns=(t, 0))
        assert vol.stat("/f").st_atime_ns == (-(1 << 63) if t < 0 else (1 << 63) - 1)
    else:
        before = vol.stat("/f")
        with pytest.raises(OverflowError):
            vol.utime("/f", ns=(t, 0))
        assert vol.stat("/f") == before
    assert vol.fsck() == []


def test_times_ns_takes_a_pair_in_order() -> None:
    assert arguments.times_ns((1, 2)) == (1, 2)
    assert arguments.times_ns((np.int64(5), 1 << 64)) == (5, (1 << 63) - 1)
    for bad in ([1, 2], (1,), (1, 2, 3), ()):
        with pytest.raises(TypeError):
            arguments.times_ns(bad)


def test_timeout() -> None:
    assert arguments.timeout(None) is None
    assert arguments.timeout(0) == 0.0 and type(arguments.timeout(0)) is float
    assert arguments.timeout(-0.0) == 0.0
    assert arguments.timeout(2) == 2.0
    assert arguments.timeout(True) == 1.0
    assert arguments.timeout(np.float32(0.5)) == 0.5
    assert arguments.timeout(Decimal("1.5")) == 1.5             # not an int or float, but has __float__
    assert arguments.timeout(Fraction(1, 4)) == 0.25
    assert arguments.timeout(math.inf) == math.inf
    for bad in (-1, -1e-9, math.nan, -math.inf):
        with pytest.raises(ValueError):
            arguments.timeout(bad)
    for bad in ("1", b"1", [1], object()):
        with pytest.raises(TypeError, match=f"not {type(bad).__name__}$"):
            arguments.timeout(bad)


# open modes --------------------------------------------------------------------------------


def _meaning(mode: str) -> OpenFlags:
    """What a mode's letters mean, as open(2)'s flags for it."""
    return OpenFlags(readable="r" in mode or "+" in mode, writable="r" not in mode or "+" in mode,
                     create="r" not in mode, exclusive="x" in mode, truncate="w" in mode, append="a" in mode)


BINARY = ["rb", "r+b", "wb", "w+b", "xb", "x+b", "ab", "a+b"]
TEXT = {"r": "rb", "r+": "r+b", "w": "wb", "w+": "w+b", "x": "xb", "x+": "x+b", "a": "ab", "a+": "a+b"}


@pytest.mark.parametrize("mode", BINARY)
def test_open_flags_in_any_letter_order(mode: str) -> None:
    for order in {"".join(p) for p in permutations(mode)}:
        assert arguments.open_flags(order) == _meaning(mode), order
        assert arguments.parse_mode(order) == (_meaning(mode), False, mode), order


@pytest.mark.parametrize("mode", list(TEXT))
def test_parse_mode_text_modes(mode: str) -> None:
    for order in {"".join(p) for p in permutations(mode)}:
        assert arguments.parse_mode(order) == (_meaning(mode), True, TEXT[mode]), order
        assert arguments.parse_mode(order + "t") == arguments.parse_mode(order)
        assert arguments.parse_mode("t" + order) == arguments.parse_mode(order)


@pytest.mark.parametrize("mode", ["r", "w+", "rt", "", "b", "+b", "rbb", "rwb", "r+b+", "rab", "rb+t", "rqb", "RB"])
def test_open_flags_refuse_what_is_not_one_binary_mode(mode: str) -> None:
    with pytest.raises(ValueError):
        arguments.open_flags(mode)


def test_open_flags_says_why_a_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="binary only"):
        arguments.open_flags("r+")
    with pytest.raises(ValueError, match=r"^invalid mode 'rbb'$"):
        arguments.open_flags("rbb")
    with pytest.raises(TypeError, match="not bytes"):
        arguments.open_flags(b"rb")
    with pytest.raises(TypeError):
        arguments.open_flags(None)


@pytest.mark.parametrize("mode", ["", "t", "b", "+", "rr", "rbb", "r++", "rw", "wx", "ra+", "rbt", "rq", "R",
                                  "x+t+", "U"])
def test_parse_mode_refuses_what_open_refuses(mode: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        open(tmp_path / "f", mode).close()
    with pytest.raises(ValueError, match="^invalid mode: "):
        arguments.parse_mode(mode)


def test_parse_mode_wants_a_str() -> None:
    for bad in (b"rb", None, 1):
        with pytest.raises(TypeError, match=f"not {type(bad).__name__}$"):
            arguments.parse_mode(bad)
