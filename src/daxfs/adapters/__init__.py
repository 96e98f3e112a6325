"""Adapters: ways into a daxfs volume from outside Python code (the command line, the arbiter and its client, the FUSE mount, fsspec, Arrow and NumPy)."""
