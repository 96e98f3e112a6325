"""Adapters: ways into a daxfs volume from outside Python code (the command line, and later the server, FUSE, fsspec)."""
