"""CRC-32C (Castagnoli) with NumPy, and the masking LevelDB / TF apply to stored CRCs."""
import numpy as np


def _crc_table():
    poly, table = 0x82F63B78, np.zeros(256, dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table[i] = c
    return table


_CRC_TABLE = None           # the 256-entry table, as uint32 (chunked path) and as ints (bytewise)
_CRC_TABLE_INTS = None
_CRC_CHUNK = 1024


def _tables():
    global _CRC_TABLE, _CRC_TABLE_INTS
    if _CRC_TABLE is None:
        _CRC_TABLE = _crc_table()
        _CRC_TABLE_INTS = [int(c) for c in _CRC_TABLE]
    return _CRC_TABLE


def update_bytewise(reg, data):
    """The crc32c register after feeding `data` (bytes-like) into register `reg` (pure
    Python)."""
    _tables()
    t = _CRC_TABLE_INTS
    for b in memoryview(data).cast("B"):
        reg = t[(reg ^ b) & 0xFF] ^ (reg >> 8)
    return reg


def _crc_zeros_matrix(n):
    """The images of the 32 register bits after feeding n zero bytes (the operator is linear)."""
    t = _CRC_TABLE
    regs = np.left_shift(np.uint32(1), np.arange(32, dtype=np.uint32))
    for _ in range(n):
        regs = t[regs & 0xFF] ^ (regs >> 8)
    return [int(r) for r in regs]


_CRC_SHIFT = None


def crc32c(data):
    """CRC-32C (Castagnoli) of `data` (bytes-like). Long inputs are processed as many chunks
    at once with NumPy and combined through the (linear) zero-feeding operator."""
    global _CRC_SHIFT
    _tables()
    data = memoryview(data).cast("B")
    n, C = len(data), _CRC_CHUNK
    reg = 0xFFFFFFFF
    k = n // C if n >= 8 * C else 0
    if k:
        if _CRC_SHIFT is None:
            _CRC_SHIFT = _crc_zeros_matrix(C)
        chunks = np.frombuffer(data[:k * C], dtype=np.uint8).reshape(k, C)
        regs, t = np.zeros(k, dtype=np.uint32), _CRC_TABLE
        for i in range(C):
            regs = t[(regs ^ chunks[:, i]) & 0xFF] ^ (regs >> 8)
        shift = _CRC_SHIFT
        for a in regs.tolist():
            s, bit = 0, 0
            while reg:
                if reg & 1:
                    s ^= shift[bit]
                reg >>= 1
                bit += 1
            reg = s ^ a
    reg = update_bytewise(reg, data[k * C:])
    return reg ^ 0xFFFFFFFF


def unmask(masked):
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF
