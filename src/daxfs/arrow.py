"""``daxfs.arrow``: Arrow IPC / Feather v2 files read in place (needs pyarrow).

See ``daxfs.adapters.arrow``; importing ``daxfs`` alone never imports pyarrow.
"""

from daxfs.adapters.arrow import buffer, open_file, read_table

__all__ = ["buffer", "open_file", "read_table"]
