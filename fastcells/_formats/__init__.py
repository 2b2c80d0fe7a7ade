"""Binary file formats read with NumPy alone, knowing nothing of RNNs: protobuf wire fields
(protobuf.py), CRC-32C as LevelDB and TF store it (crc32c.py), the SSTable of a TF checkpoint's
.index file (sstable.py). Their readers raise FormatError; a caller turns it into a ValueError
naming the file."""


class FormatError(Exception):
    """Internal: a parse error, turned into ValueError naming the file by the caller."""
