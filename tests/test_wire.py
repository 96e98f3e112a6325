"""The arbiter's transport: frames, when a reader spins, and a log that must never stop it."""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest

import daxfs
from daxfs.adapters import wire
from daxfs.adapters.server import Server

WINDOW = 100e-6


def test_a_spinner_spins_until_spinning_is_measured_to_wait_longer() -> None:
    spinner = wire.Spinner(WINDOW)
    assert spinner.should_spin()
    for _ in range(40):                 # spinning catches every frame in 20 µs
        spun = spinner.should_spin()
        spinner.record(spun, 20e-6 if spun else 90e-6)
    assert spinner.spin
    for _ in range(400):                # now spinning waits 80 µs, sleeping 30 µs (a busy machine)
        spun = spinner.should_spin()
        spinner.record(spun, 80e-6 if spun else 30e-6)
    assert not spinner.spin
    assert sum(spinner.should_spin() for _ in range(100)) <= 1     # a probe now and then only


def test_a_spinner_probes_the_other_way_less_often_while_it_keeps_losing() -> None:
    spinner = wire.Spinner(WINDOW)
    probes = []
    for i in range(5000):
        spun = spinner.should_spin()
        if spun != spinner.spin:
            probes.append(i)
        spinner.record(spun, 20e-6 if spun else 90e-6)
    assert spinner.spin
    gaps = [b - a for a, b in zip(probes, probes[1:])]
    assert probes[0] == 31                               # the 32nd wait, then half as often
    assert gaps[:5] == [64, 128, 256, 512, 1024] and set(gaps[5:]) == {1024}


def test_a_spinner_that_loses_comes_back_once_spinning_pays_again() -> None:
    spinner = wire.Spinner(WINDOW)
    for _ in range(200):
        spun = spinner.should_spin()
        spinner.record(spun, 80e-6 if spun else 30e-6)
    assert not spinner.spin
    for _ in range(200):
        spun = spinner.should_spin()
        spinner.record(spun, 10e-6 if spun else 90e-6)
    assert spinner.spin


def test_one_long_wait_does_not_swamp_the_average() -> None:
    spinner = wire.Spinner(WINDOW)
    spinner.record(True, 30e-6)
    spinner.record(False, 10.0)         # the peer idled for 10 s: clipped to twice the window
    spinner.record(True, 30e-6)
    assert spinner.spin
    spinner.record(True, 10.0)          # nor makes spinning lose for long
    for _ in range(20):
        spinner.record(True, 30e-6)
    spinner.record(False, 90e-6)
    assert spinner.spin


def test_a_spinner_never_spins_with_no_window_or_waits_past_it() -> None:
    assert not any(wire.Spinner(0.0).should_spin() for _ in range(100))
    spinner = wire.Spinner(WINDOW)
    for _ in range(100):                # the peer idles: every wait is past the window
        spun = spinner.should_spin()
        spinner.record(spun, 1.0)
    assert not spinner.spin


def test_frames_pop_whole_or_not_at_all() -> None:
    a, b = wire.socket.socketpair()
    try:
        reader = wire.FrameReader(b, 1 << 10)
        data = wire.pack([1, "stat", ["/x"]]) + wire.pack([2, "stat", ["/y"]])
        reader.feed(data[:3])
        assert not reader.pending() and reader.pop() is wire.NOTHING
        reader.feed(data[3:len(data) - 1])
        assert reader.pending() and reader.pop() == [1, "stat", ["/x"]]
        assert not reader.pending() and reader.pop() is wire.NOTHING
        a.sendall(data[-1:])
        assert reader.next() == [2, "stat", ["/y"]]      # next reads the missing byte
        reader.feed(wire.LENGTH.pack(1 << 11))
        assert reader.pending()                          # over the limit: pop must say so
        with pytest.raises(wire.ProtocolError):
            reader.pop()
    finally:
        a.close()
        b.close()


class _StuckStream(io.TextIOBase):
    """A log nobody drains: every write blocks until released (a full stderr pipe)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        self.release.wait()
        self.lines.append(text)
        return len(text)


def test_a_log_nobody_reads_never_stops_the_arbiter(shm_pool: str) -> None:
    log = _StuckStream()
    server = Server(shm_pool, log=log)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for i in range(3):              # each connection logs two lines; the log is stuck
            with daxfs.connect(shm_pool, name=f"c{i}") as client:
                client.mkdir(f"/d{i}")
                assert client.listdir("/") == [f"d{j}" for j in range(i + 1)]
        assert log.lines == []
    finally:
        log.release.set()
        assert server.stop()
        thread.join(5)
    text = "".join(log.lines)
    assert "daxfs serve: serving" in text and "c2" in text and text.rstrip().endswith("stopped")


def test_log_lines_past_the_backlog_are_counted_not_kept(shm_pool: str, monkeypatch: Any) -> None:
    import daxfs.adapters.server as server_module

    monkeypatch.setattr(server_module, "LOG_BACKLOG", 3)
    log = _StuckStream()
    server = Server(shm_pool, log=log)
    try:
        for i in range(10):
            server.log(f"line {i}")
        log.release.set()
        server.flush_log()
        text = "".join(log.lines)
        # The writer took one line before it blocked; three waited; the rest were dropped.
        assert "line 9" not in text and "log line(s) dropped" in text
    finally:
        log.release.set()
        server.stop()
