"""Open modes rb/r+b/wb/w+b/xb/ab/a+b, positions, and a File where Python wants a binary file."""

from __future__ import annotations

import errno
import io
import os
import shutil
from typing import Any

import pytest

from daxfs.testing.suite._base import SuiteBase, errno_of, pattern, read_file, write_file


class OpenModeTests(SuiteBase):
    """Open modes rb/r+b/wb/w+b/xb/ab/a+b, positions, and a File where Python wants a binary file."""

    def test_invalid_modes_are_refused_and_change_nothing(self, volume: Any) -> None:
        write_file(volume, "f", b"x")
        for mode in ("rw", "bb", "q", "rbt", "", "r++", "wa"):
            with pytest.raises(ValueError):
                volume.open("f", mode)
        with pytest.raises(TypeError):
            volume.open("f", b"rb")
        with pytest.raises(ValueError):
            volume.open("f", "r", buffering=0)                      # unbuffered text, as open()
        with pytest.raises(ValueError):
            volume.open("f", "rb", encoding="utf-8")                # binary takes no encoding
        assert read_file(volume, "f") == b"x"
        assert volume.open("f", "rb+", buffering=0).close() is None      # letters in any order, like open()

    def test_text_modes_work_as_open_does(self, volume: Any) -> None:
        with volume.open("t.txt", "w", encoding="utf-8") as f:
            assert isinstance(f, io.TextIOBase) and f.mode == "w"
            f.write("héllo\nwörld\n")
        assert read_file(volume, "t.txt") == "héllo\nwörld\n".encode()
        with volume.open("t.txt", "r", encoding="utf-8") as f:
            assert f.readline() == "héllo\n" and list(f) == ["wörld\n"]
        with volume.open("t.txt", "a", encoding="utf-8") as f:
            f.write("!")
        with volume.open("t.txt", "rt", encoding="utf-8", newline="") as f:
            assert f.read() == "héllo\nwörld\n!"
        with volume.open("t.txt", "r+", encoding="latin-1") as f:
            f.seek(0, io.SEEK_END)
            f.write("\xff")
        assert read_file(volume, "t.txt").endswith(b"!\xff")

    def test_default_open_is_buffered_and_buffering_zero_is_raw(self, volume: Any) -> None:
        with volume.open("b", "wb") as f:
            assert isinstance(f, io.BufferedWriter) and f.raw.mode == "wb"
            f.write(b"a" * 100)
            f.write(b"b" * 100)
        with volume.open("b", "rb") as f:
            assert isinstance(f, io.BufferedReader)
            assert f.peek(1)[:1] == b"a" and f.read(150) == b"a" * 100 + b"b" * 50
            assert f.tell() == 150 and f.stat().st_size == 200
        with volume.open("b", "r+b") as f:
            assert isinstance(f, io.BufferedRandom)
            f.seek(10)
            f.write(b"XY")
            assert f.pread(3, 9) == b"aXY"                       # daxfs methods flush first
            f.pwrite(b"Z", 0)
            f.seek(0)
            assert f.read(3) == b"Zaa"                           # and drop what was read ahead
        raw = volume.open("b", "rb", buffering=0)
        try:
            assert not isinstance(raw, io.BufferedIOBase) and raw.read(1) == b"Z"
        finally:
            raw.close()

    def test_wrong_direction_is_unsupported_operation(self, volume: Any) -> None:
        write_file(volume, "f", b"data")
        for mode, call in (("rb", lambda f: f.write(b"x")), ("wb", lambda f: f.read()),
                           ("r", lambda f: f.write("x")), ("a", lambda f: f.read())):
            with volume.open("f", mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
                with pytest.raises(io.UnsupportedOperation):
                    call(f)

    def test_mode_rb_reads_only(self, volume: Any) -> None:
        write_file(volume, "f", b"hello world")
        with volume.open("f", "rb", buffering=0) as f:
            assert f.readable() and not f.writable()
            assert f.read(5) == b"hello" and f.tell() == 5
            for call in (lambda: f.write(b"x"), lambda: f.pwrite(b"x", 0),
                         lambda: f.fallocate(0, 10), lambda: f.punch_hole(0, 1),
                         lambda: f.zero_range(0, 1)):
                with pytest.raises(OSError) as info:
                    call()
                assert errno_of(info) == errno.EBADF
            with pytest.raises(OSError) as info:
                f.truncate(0)
            assert errno_of(info) in (errno.EINVAL, errno.EBADF)
        assert read_file(volume, "f") == b"hello world"

    def test_mode_wb_truncates_and_writes_only(self, volume: Any) -> None:
        write_file(volume, "f", b"old contents" * 1000)
        with volume.open("f", "wb", buffering=0) as f:
            assert f.writable() and not f.readable()
            assert volume.stat("f").st_size == 0 and volume.stat("f").st_blocks == 0
            with pytest.raises(OSError) as info:
                f.read(1)
            assert errno_of(info) == errno.EBADF
            with pytest.raises(OSError) as info:
                f.pread(1, 0)
            assert errno_of(info) == errno.EBADF
            with pytest.raises(OSError) as info:
                f.readinto(bytearray(4))
            assert errno_of(info) == errno.EBADF
            f.write(b"new")
        assert read_file(volume, "f") == b"new"
        with volume.open("created", "wb", buffering=0) as f:
            pass
        assert volume.stat("created").st_size == 0 and volume.stat("created").is_file()

    def test_mode_r_plus_b_reads_and_writes_in_place(self, volume: Any) -> None:
        write_file(volume, "f", b"0123456789")
        with volume.open("f", "r+b", buffering=0) as f:
            assert f.readable() and f.writable() and f.tell() == 0
            f.write(b"ab")
            assert f.read(3) == b"234"
            f.seek(0)
            assert f.read() == b"ab23456789"
        assert read_file(volume, "f") == b"ab23456789"

    def test_mode_w_plus_b(self, volume: Any) -> None:
        write_file(volume, "f", b"stale" * 100)
        with volume.open("f", "w+b", buffering=0) as f:
            assert f.read() == b""
            f.write(b"fresh")
            f.seek(0)
            assert f.read() == b"fresh"
        assert read_file(volume, "f") == b"fresh"

    def test_mode_xb_creates_exclusively(self, volume: Any) -> None:
        with volume.open("f", "xb", buffering=0) as f:
            f.write(b"first")
            with pytest.raises(OSError) as info:
                f.read()
            assert errno_of(info) == errno.EBADF
        with pytest.raises(FileExistsError):
            volume.open("f", "xb", buffering=0)
        assert read_file(volume, "f") == b"first"

    def test_mode_ab_appends_whatever_the_position(self, volume: Any) -> None:
        write_file(volume, "f", b"start")
        with volume.open("f", "ab", buffering=0) as f:
            assert f.writable() and not f.readable()
            f.seek(0)
            f.write(b"-one")
            assert f.tell() == 9
            f.seek(2)
            f.write(b"-two")
            with pytest.raises(OSError) as info:
                f.read()
            assert errno_of(info) == errno.EBADF
        assert read_file(volume, "f") == b"start-one-two"
        with volume.open("new", "ab", buffering=0) as f:
            f.write(b"made")
        assert read_file(volume, "new") == b"made"

    def test_mode_a_plus_b_reads_anywhere_appends_always(self, volume: Any) -> None:
        write_file(volume, "f", b"abc")
        with volume.open("f", "a+b", buffering=0) as f:
            f.seek(0)
            assert f.read() == b"abc"
            f.seek(1)
            f.write(b"D")
            assert f.tell() == 4
            assert f.pwrite(b"EF", 0) == 2            # O_APPEND: pwrite appends too, as on Linux
            assert f.pread(10, 0) == b"abcDEF"
        assert read_file(volume, "f") == b"abcDEF"

    def test_two_append_handles_interleave(self, volume: Any) -> None:
        with volume.open("log", "ab", buffering=0) as a, volume.open("log", "ab", buffering=0) as b:
            for i in range(5):
                a.write(b"A%d" % i)
                b.write(b"B%d" % i)
        assert read_file(volume, "log") == b"".join(b"A%dB%d" % (i, i) for i in range(5))

    def test_closed_file_raises_value_error(self, volume: Any) -> None:
        f = volume.open("f", "w+b", buffering=0)
        f.write(b"x")
        f.close()
        assert f.closed
        f.close()                                       # closing twice is fine
        for call in (f.read, lambda: f.write(b"y"), lambda: f.seek(0), f.tell, lambda: f.pread(1, 0),
                     lambda: f.pwrite(b"y", 0), lambda: f.readinto(bytearray(1)), lambda: f.truncate(0),
                     f.stat, f.extents, lambda: f.fallocate(0, 1)):
            with pytest.raises(ValueError):
                call()
        with volume.open("f", "rb", buffering=0) as g:
            pass
        assert g.closed
        assert read_file(volume, "f") == b"x"

    def test_file_works_where_python_expects_a_binary_file(self, volume: Any) -> None:
        data = pattern(100_000)
        with volume.open("f", "wb", buffering=0) as f:
            assert isinstance(f, io.RawIOBase)
            shutil.copyfileobj(io.BytesIO(data), f, 7777)
        with volume.open("f", "rb", buffering=0) as f:
            buffered = io.BufferedReader(f, 4096)
            assert buffered.read(10) == data[:10]
            assert buffered.read() == data[10:]
        with volume.open("f", "rb", buffering=0) as f:
            assert b"".join(iter(lambda: f.read(9999), b"")) == data

    def test_seek_and_positions(self, volume: Any) -> None:
        with volume.open("f", "w+b", buffering=0) as f:
            assert f.write(b"0123456789") == 10
            assert f.seek(-3, os.SEEK_END) == 7 and f.read() == b"789"
            assert f.seek(-5, os.SEEK_CUR) == 5 and f.read(2) == b"56"
            assert f.read(0) == b""
            f.seek(100)
            assert f.read(10) == b""                    # past EOF: nothing, size unchanged
            assert f.stat().st_size == 10
            with pytest.raises(OSError) as info:
                f.seek(-1)
            assert errno_of(info) == errno.EINVAL
            f.seek(20)
            f.write(b"!")                               # writing past EOF leaves a hole
            assert f.pread(100, 0) == b"0123456789" + bytes(10) + b"!"

    # ------------------------------------------------------------ sparse files, sizes, space
