"""``daxfs demo`` shows the headline features and explains its own terms."""

from __future__ import annotations

import io

from daxfs.adapters.demo import SYNC_MODES, run_demo


def test_demo_tours_the_headline_features() -> None:
    out = io.StringIO()
    assert run_demo(out) == 0
    text = out.getvalue()
    for step in ("map big.bin as a NumPy array", "truncate a file a pin holds", "release the pin",
                 "clone_file big.bin (reflink)", "write into the clone (copy-on-write)"):
        assert step in text, step
    assert "no bytes copied" in text and "busy (65536 bytes)" in text and "busy 0 bytes" in text
    assert "0 MiB more used, 64 MiB shared" in text
    # every "persist by X" is explained on the next line
    mode = text.split("persist by ")[1].split()[0]
    assert SYNC_MODES[mode] in text
