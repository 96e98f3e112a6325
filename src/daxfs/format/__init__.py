"""format: bytes in, bytes out — superblocks, log records, checkpoints.

Every decoder checks magic, version and checksum and raises
``CorruptVolumeError`` saying what and where; none touches the pool.
"""

from daxfs.format.checkpoint import Checkpoint, decode_checkpoint, encode_checkpoint
from daxfs.format.layout import Layout
from daxfs.format.log import decode_record, encode_pad, encode_record, later_record
from daxfs.format.superblock import Superblock, decode_owner, decode_superblock, encode_owner

__all__ = ["Layout", "Superblock", "decode_superblock", "encode_owner", "decode_owner",
           "encode_record", "encode_pad", "decode_record", "later_record", "Checkpoint",
           "encode_checkpoint", "decode_checkpoint"]
