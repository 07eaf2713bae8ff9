"""Bit-packing of signed B-bit integers and the per-layer choice of sparsity encoding.

Values: each code c in [-(2^(B-1) - 1), 2^(B-1) - 1] is stored as its B-bit two's complement,
least significant bit first, codes one after another with no padding between them; the last
byte is zero-padded. So n codes take ceil(n * B / 8) bytes.

Positions of the kept (unpruned) weights, per layer, whichever is smallest:

- ``dense``: nothing (every position kept);
- ``bitmask``: one bit per position, row-major, LSB first: ceil(numel / 8) bytes;
- ``csr``: rows = output channels, columns = the rest of the weight flattened. ``row_ptr``
  (rows + 1 unsigned ints) and per kept weight its column delta (the first of a row absolute,
  then the difference to the previous kept column of that row), each array with the smallest
  of 1, 2 or 4 bytes per entry that fits its largest value.

All multi-byte integers are little-endian.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import LayerwiseError

ENCODINGS = ("dense", "bitmask", "csr")


def packed_length(n: int, bits: int) -> int:
    return (n * bits + 7) // 8


def pack_signed(codes: np.ndarray, bits: int) -> bytes:
    """Pack signed integers of at most ``bits`` bits (two's complement, LSB first)."""
    codes = np.asarray(codes, dtype=np.int64).ravel()
    lim = 2 ** (bits - 1)
    if codes.size and (codes.min() < -lim or codes.max() > lim - 1):
        raise LayerwiseError(f"codes outside the signed {bits}-bit range [{-lim}, {lim - 1}]: quantize first")
    unsigned = (codes & ((1 << bits) - 1)).astype(np.uint32)
    bit_matrix = ((unsigned[:, None] >> np.arange(bits, dtype=np.uint32)) & 1).astype(np.uint8)
    return np.packbits(bit_matrix.ravel(), bitorder="little").tobytes()


def unpack_signed(buf: bytes, bits: int, n: int) -> np.ndarray:
    """Inverse of :func:`pack_signed`: ``n`` signed integers (int32)."""
    if len(buf) != packed_length(n, bits):
        raise LayerwiseError(f"packed values hold {len(buf)} bytes, {packed_length(n, bits)} expected for "
                             f"{n} codes of {bits} bits: the file is corrupted")
    bit_arr = np.unpackbits(np.frombuffer(buf, dtype=np.uint8), count=n * bits, bitorder="little")
    weights = (1 << np.arange(bits, dtype=np.int64))
    unsigned = bit_arr.reshape(n, bits).astype(np.int64) @ weights
    signed = np.where(unsigned >= (1 << (bits - 1)), unsigned - (1 << bits), unsigned)
    return signed.astype(np.int32)


def uint_width(max_value: int) -> int:
    """Smallest of 1, 2, 4 bytes per entry that holds ``max_value``."""
    for width in (1, 2, 4):
        if max_value < 256 ** width:
            return width
    raise LayerwiseError(f"index {max_value} does not fit 4 bytes: the layer is too large for this format")


_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32}


@dataclass(frozen=True)
class EncodedMask:
    encoding: str  # "dense" | "bitmask" | "csr"
    data: bytes
    row_ptr_width: int = 0  # csr only
    col_width: int = 0  # csr only

    def to_json(self) -> dict:
        d = {"encoding": self.encoding}
        if self.encoding == "csr":
            d.update(row_ptr_width=self.row_ptr_width, col_width=self.col_width)
        return d


def _csr(mask2d: np.ndarray) -> EncodedMask:
    rows, cols = np.nonzero(mask2d)  # row-major order
    counts = mask2d.sum(axis=1).astype(np.int64)
    row_ptr = np.concatenate([[0], np.cumsum(counts)])
    deltas = cols.astype(np.int64).copy()
    same_row = np.concatenate([[False], rows[1:] == rows[:-1]]) if rows.size else np.zeros(0, bool)
    deltas[same_row] = cols[same_row] - cols[np.flatnonzero(same_row) - 1]
    rw = uint_width(int(row_ptr[-1]))
    cw = uint_width(int(deltas.max()) if deltas.size else 0)
    data = row_ptr.astype(np.dtype(_UINT[rw]).newbyteorder("<")).tobytes() + \
        deltas.astype(np.dtype(_UINT[cw]).newbyteorder("<")).tobytes()
    return EncodedMask("csr", data, rw, cw)


def csr_length(mask2d: np.ndarray) -> int:
    return len(_csr(mask2d).data)


def encode_mask(mask: np.ndarray, force: str | None = None) -> EncodedMask:
    """The smallest encoding of a boolean mask (axis 0 = rows); ``force`` picks one for tests."""
    mask2d = np.asarray(mask, dtype=bool).reshape(mask.shape[0], -1)
    options: dict[str, EncodedMask] = {}
    if mask2d.all():
        options["dense"] = EncodedMask("dense", b"")
    options["bitmask"] = EncodedMask("bitmask", np.packbits(mask2d.ravel(), bitorder="little").tobytes())
    options["csr"] = _csr(mask2d)
    if force is not None:
        if force not in options:
            raise LayerwiseError(f"encoding {force!r} cannot represent this mask: use one of {sorted(options)}")
        return options[force]
    order = {name: i for i, name in enumerate(ENCODINGS)}  # ties: dense, then bitmask, then csr
    return min(options.values(), key=lambda e: (len(e.data), order[e.encoding]))


def decode_mask(enc: dict, data: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`encode_mask` from the metadata entry ``enc`` and its bytes."""
    rows = shape[0]
    numel = int(np.prod(shape))
    cols = numel // rows if rows else 0
    kind = enc["encoding"]
    if kind == "dense":
        return np.ones(shape, dtype=bool)
    if kind == "bitmask":
        if len(data) != (numel + 7) // 8:
            raise LayerwiseError("bitmask length does not match the layer shape: the file is corrupted")
        return np.unpackbits(np.frombuffer(data, np.uint8), count=numel, bitorder="little").astype(bool).reshape(shape)
    if kind == "csr":
        rw, cw = int(enc["row_ptr_width"]), int(enc["col_width"])
        head = (rows + 1) * rw
        row_ptr = np.frombuffer(data[:head], dtype=np.dtype(_UINT[rw]).newbyteorder("<")).astype(np.int64)
        deltas = np.frombuffer(data[head:], dtype=np.dtype(_UINT[cw]).newbyteorder("<")).astype(np.int64)
        if len(row_ptr) != rows + 1 or row_ptr[-1] != len(deltas):
            raise LayerwiseError("CSR index arrays do not match the layer shape: the file is corrupted")
        counts = np.diff(row_ptr)
        row_of = np.repeat(np.arange(rows), counts)
        # undo the delta encoding: cumulative sum restarted at each row
        cum = np.cumsum(deltas)
        prefix = np.concatenate([[0], cum])  # sum of all deltas before each position
        starts = np.repeat(prefix[row_ptr[:-1]], counts)
        col_of = cum - starts
        out = np.zeros((rows, cols), dtype=bool)
        if np.any(col_of >= cols) or np.any(col_of < 0):
            raise LayerwiseError("CSR column index out of range: the file is corrupted")
        out[row_of, col_of] = True
        return out.reshape(shape)
    raise LayerwiseError(f"unknown sparsity encoding {kind!r} in the packed file: it was written by a newer layerwise")
