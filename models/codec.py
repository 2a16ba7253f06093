"""The delta codec: what one vehicle sends the fleet each round.

Encoding: Δ = W − M_base plus the error-feedback residual, top-k sparsification (global, by
magnitude), per-tensor symmetric quantisation of the kept values to 8 or 4 bits (or float32),
gap-coded LEB128 indices, zstd. Whatever was not sent (the dropped coordinates and the rounding
error of the kept ones) becomes the new residual and is sent in later rounds.

Decoding is strict and bounded: any byte string either decodes to a valid delta of the expected
architecture or raises ``CodecError``; nothing else escapes and nothing allocates more than the
limits below. Checks run in the order of cost: size, header, table, checksum, decompressed size,
then every index and value.

Wire format v2 (little-endian; ``docs/spec/delta-v2.md`` is the normative text):

    header   86 bytes  magic "SDLT", version u8, bits u8, flags u8, reserved u8,
                       arch_id 8, author 20, base_hash 32, round u64, n_tensors u16,
                       body_len u32 (compressed), raw_len u32 (decompressed)
    table    8 bytes per tensor: nnz u32, scale f32
    body     zstd frame with content size: indices (LEB128 gaps, per tensor, unless flags.dense)
             then values (int8, packed int4 low nibble first, or float32)
    crc32    u32 of everything before it
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np
import zstandard

from models.layout import ModelLayout

MAGIC = b"SDLT"
VERSION = 2
HEADER = struct.Struct("<4sBBBB8s20s32sQHII")
# The author of a payload whose author does not matter (the in-memory fleet, benchmarks); a
# vehicle checks that a payload names the announcement's sender, so this one never passes.
ANONYMOUS = bytes(20)
TABLE_ENTRY = struct.Struct("<If")
CRC = struct.Struct("<I")
FLAG_DENSE = 0x01

MAX_PAYLOAD_BYTES = 8 << 20  # a dense fp32 CropNet delta is 0.58 MB; room for 10x bigger models
MAX_DECODED_BYTES = 32 << 20  # bound on the decompressed body: no decompression bombs
MAX_ABS_VALUE = 32.0  # no weight moves this far in one round; keeps merge arithmetic exact
SUPPORTED_BITS = (4, 8, 32)
ZSTD_LEVEL = 3
_QMAX = {4: 7, 8: 127}  # symmetric ranges; -8 and -128 are never written and rejected


class CodecError(Exception):
    """A payload that is not a valid delta for this model; the message says which check failed."""


@dataclass(frozen=True)
class CodecConfig:
    density: float = 0.02  # fraction of coordinates sent each round (1.0 = dense)
    bits: int = 4  # 4 or 8 (quantised) or 32 (float32 values); 2% at 4 bits is ~150x smaller

    def __post_init__(self) -> None:
        if not 0.0 < self.density <= 1.0:
            raise ValueError(f"codec density {self.density} is outside (0, 1]")
        if self.bits not in SUPPORTED_BITS:
            raise ValueError(f"codec bits {self.bits} is not one of {SUPPORTED_BITS}")


DENSE = CodecConfig(density=1.0, bits=32)
# What a fleet sends by default (`swarmdrive sim`, the daemon's config; why: sim/fleet.py).
FLEET_CODEC = CodecConfig(density=0.1, bits=8)


@dataclass(frozen=True)
class DecodedDelta:
    round: int
    base_hash: bytes  # 32 bytes: the model this delta applies to
    values: np.ndarray  # (layout.size,) float32, zero where nothing was sent
    author: bytes = ANONYMOUS  # the sending vehicle's address (20 bytes)


# --- encoding ---------------------------------------------------------------------------------

def encode(delta: np.ndarray, layout: ModelLayout, base_hash: bytes, round_: int,
           cfg: CodecConfig, residual: np.ndarray | None = None,
           author: bytes = ANONYMOUS) -> tuple[bytes, np.ndarray]:
    """Compress ``delta`` (+ ``residual``); returns (payload, new residual). ``author`` is the
    sending vehicle's 20-byte address: a copy announced by another vehicle fails its check."""
    if delta.shape != (layout.size,):
        raise ValueError(f"delta has shape {delta.shape}, the model has {layout.size} weights")
    if len(base_hash) != 32 or len(author) != 20:
        raise ValueError("base_hash must be 32 bytes and author 20")
    v = delta.astype(np.float32) if residual is None else (delta + residual).astype(np.float32)
    if not np.all(np.isfinite(v)):
        raise ValueError("delta holds NaN or Inf; refusing to send it")
    v = np.clip(v, -MAX_ABS_VALUE, MAX_ABS_VALUE)
    dense = cfg.density >= 1.0
    if dense:
        idx = np.arange(layout.size, dtype=np.int64)
    else:
        k = max(1, round(cfg.density * layout.size))
        idx = np.sort(np.argpartition(np.abs(v), layout.size - k)[layout.size - k :])
    kept = v[idx]
    bounds = np.searchsorted(idx, [t.offset for t in layout.tensors] + [layout.size])
    table, index_parts, value_parts = [], [], []
    sent = np.empty_like(kept)
    for i, t in enumerate(layout.tensors):
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        vals = kept[lo:hi]
        scale, payload, approx = _quantise(vals, cfg.bits)
        sent[lo:hi] = approx
        table.append(TABLE_ENTRY.pack(hi - lo, scale))
        value_parts.append(payload)
        if not dense and hi > lo:
            local = idx[lo:hi] - t.offset
            gaps = np.diff(local, prepend=-1) - 1  # first: the index itself; then gap - 1
            index_parts.append(_varint_encode(gaps.astype(np.uint64)))
    values_bytes = _pack_values(value_parts, cfg.bits)
    raw = b"".join(index_parts) + values_bytes
    body = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True).compress(raw)
    head = HEADER.pack(MAGIC, VERSION, cfg.bits, FLAG_DENSE if dense else 0, 0, layout.arch_id,
                       author, base_hash, round_, len(layout.tensors), len(body), len(raw))
    msg = head + b"".join(table) + body
    new_residual = v.copy()
    new_residual[idx] -= sent
    return msg + CRC.pack(zlib.crc32(msg)), new_residual


def _quantise(vals: np.ndarray, bits: int) -> tuple[float, np.ndarray, np.ndarray]:
    """(scale, codes or float32 values, what the receiver will reconstruct)."""
    if bits == 32:
        return 0.0, vals.astype("<f4"), vals
    qmax = _QMAX[bits]
    peak = float(np.abs(vals).max()) if len(vals) else 0.0
    scale = float(np.float32(peak / qmax)) if peak > 0 else 0.0
    if scale == 0.0:
        q = np.zeros(len(vals), np.int8)
    else:
        q = np.clip(np.rint(vals / np.float32(scale)), -qmax, qmax).astype(np.int8)
    return scale, q, q.astype(np.float32) * np.float32(scale)


def _pack_values(parts: list[np.ndarray], bits: int) -> bytes:
    if not parts:
        return b""
    allv = np.concatenate(parts)
    if bits != 4:
        return allv.tobytes()
    nib = (allv.astype(np.int16) & 0x0F).astype(np.uint8)
    if len(nib) % 2:
        nib = np.append(nib, np.uint8(0))
    return (nib[0::2] | (nib[1::2] << 4)).tobytes()


def _varint_encode(vals: np.ndarray) -> bytes:
    """LEB128 of each uint64 (all < 2**32), vectorised."""
    n = (1 + (vals >= 1 << 7).astype(np.int64) + (vals >= 1 << 14) + (vals >= 1 << 21)
         + (vals >= 1 << 28))
    out = np.empty(int(n.sum()), np.uint8)
    starts = np.cumsum(n) - n
    for b in range(5):
        m = n > b
        byte = ((vals[m] >> np.uint64(7 * b)) & np.uint64(0x7F)).astype(np.uint8)
        out[starts[m] + b] = byte | ((n[m] > b + 1).astype(np.uint8) << 7)
    return out.tobytes()


# --- decoding ---------------------------------------------------------------------------------

def peek_header(data: bytes) -> tuple[int, bytes, bytes]:
    """(round, base_hash, arch_id) of a payload, after the size and header checks only."""
    _check_size(data)
    _, _, _, _, _, arch, _, base, rnd, _, _, _ = _header(data)
    return rnd, base, arch


def decode(data: bytes, layout: ModelLayout) -> DecodedDelta:
    """Decode a payload for ``layout`` or raise ``CodecError``."""
    _check_size(data)
    _, _, bits, flags, _, arch, author, base, rnd, n_tensors, body_len, raw_len = _header(data)
    if arch != layout.arch_id:
        raise CodecError(f"architecture id {arch.hex()} is not this model's "
                         f"({layout.arch_id.hex()})")
    if n_tensors != len(layout.tensors):
        raise CodecError(f"{n_tensors} tensors in the table, the model has {len(layout.tensors)}")
    table_end = HEADER.size + n_tensors * TABLE_ENTRY.size
    if len(data) != table_end + body_len + CRC.size:
        raise CodecError(f"payload is {len(data)} bytes, the header implies "
                         f"{table_end + body_len + CRC.size}")
    (crc,) = CRC.unpack_from(data, len(data) - CRC.size)
    if crc != zlib.crc32(memoryview(data)[: len(data) - CRC.size]):
        raise CodecError("checksum mismatch: payload is corrupt")
    dense = bool(flags & FLAG_DENSE)
    nnz, scales = _table(data, layout, bits, dense)
    total = int(nnz.sum())
    values_len = total * 4 if bits == 32 else (total + 1) // 2 if bits == 4 else total
    max_raw = values_len + (0 if dense else 5 * total)
    if raw_len > min(max_raw, MAX_DECODED_BYTES) or raw_len < values_len + (0 if dense else total):
        raise CodecError(f"decompressed size {raw_len} is impossible for {total} values")
    raw = _decompress(data[table_end : table_end + body_len], raw_len)
    out = np.zeros(layout.size, np.float32)
    codes = _unpack_values(raw[raw_len - values_len :], bits, total)
    index_bytes = np.frombuffer(raw, np.uint8, raw_len - values_len)
    gaps = None if dense else _varint_decode(index_bytes, total)
    pos = 0
    for i, t in enumerate(layout.tensors):
        k = int(nnz[i])
        if k == 0:
            continue
        vals = codes[pos : pos + k] if bits == 32 else codes[pos : pos + k] * np.float32(scales[i])
        if gaps is None:
            out[t.offset : t.offset + k] = vals
        else:
            local = np.cumsum(gaps[pos : pos + k].astype(np.int64) + 1) - 1
            if local[-1] >= t.numel:
                raise CodecError(f"index {int(local[-1])} is outside tensor {t.name} "
                                 f"({t.numel} weights)")
            out[t.offset + local] = vals
        pos += k
    if not np.all(np.isfinite(out)) or float(np.abs(out).max(initial=0.0)) > MAX_ABS_VALUE:
        raise CodecError(f"a value is NaN, Inf or larger than {MAX_ABS_VALUE} in magnitude")
    return DecodedDelta(round=rnd, base_hash=base, values=out, author=bytes(author))


def _check_size(data: bytes) -> None:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CodecError(f"payload must be bytes, got {type(data).__name__}")
    if len(data) > MAX_PAYLOAD_BYTES:
        raise CodecError(f"payload of {len(data)} bytes is over the {MAX_PAYLOAD_BYTES} limit")
    if len(data) < HEADER.size + CRC.size:
        raise CodecError(f"payload of {len(data)} bytes is shorter than a header")


def _header(data: bytes) -> tuple:  # type: ignore[type-arg]
    fields = HEADER.unpack_from(data, 0)
    magic, version, bits, flags, reserved = fields[:5]
    if magic != MAGIC:
        raise CodecError(f"bad magic {bytes(magic)!r}: not a swarmdrive delta")
    if version != VERSION:
        raise CodecError(f"unsupported delta version {version} (this vehicle reads {VERSION})")
    if bits not in SUPPORTED_BITS:
        raise CodecError(f"unsupported value width {bits} bits")
    if flags & ~FLAG_DENSE or reserved:
        raise CodecError(f"unknown flags {flags:#x} or reserved byte {reserved}")
    return fields


def _table(data: bytes, layout: ModelLayout, bits: int,
           dense: bool) -> tuple[np.ndarray, np.ndarray]:
    n = len(layout.tensors)
    raw = np.frombuffer(data, np.dtype([("nnz", "<u4"), ("scale", "<f4")]), n, HEADER.size)
    nnz, scales = raw["nnz"].astype(np.int64), raw["scale"].astype(np.float32)
    numel = np.array([t.numel for t in layout.tensors], np.int64)
    if np.any(nnz > numel):
        bad = int(np.argmax(nnz > numel))
        raise CodecError(f"tensor {layout.tensors[bad].name}: {int(nnz[bad])} values for "
                         f"{int(numel[bad])} weights")
    if dense and np.any(nnz != numel):
        raise CodecError("dense payload does not cover every weight")
    if not np.all(np.isfinite(scales)) or np.any(scales < 0):
        raise CodecError("a tensor scale is negative, NaN or Inf")
    if bits == 32 and np.any(scales != 0):
        raise CodecError("float32 payload carries quantisation scales")
    return nnz, scales


def _decompress(body: bytes, raw_len: int) -> bytes:
    try:
        declared = zstandard.frame_content_size(body)
        if declared != raw_len:
            raise CodecError(f"compressed body declares {declared} bytes, header says {raw_len}")
        dobj = zstandard.ZstdDecompressor().decompressobj()
        raw = dobj.decompress(body)
        if not dobj.eof or dobj.unused_data:
            raise CodecError("compressed body is truncated or has trailing data")
    except zstandard.ZstdError as e:
        raise CodecError(f"compressed body is corrupt ({e})") from None
    if len(raw) != raw_len:
        raise CodecError(f"body decompressed to {len(raw)} bytes, header says {raw_len}")
    return raw


def _unpack_values(buf: bytes, bits: int, count: int) -> np.ndarray:
    if bits == 32:
        vals = np.frombuffer(buf, "<f4", count).astype(np.float32)
        if not np.all(np.isfinite(vals)):
            raise CodecError("a float32 value is NaN or Inf")
        return vals
    if bits == 8:
        codes = np.frombuffer(buf, np.int8, count)
    else:
        packed = np.frombuffer(buf, np.uint8, (count + 1) // 2)
        nib = np.empty(2 * len(packed), np.uint8)
        nib[0::2], nib[1::2] = packed & 0x0F, packed >> 4
        if count % 2 and nib[-1] != 0:
            raise CodecError("padding nibble is not zero")
        codes = ((nib[:count].astype(np.int8) ^ 8) - 8).astype(np.int8)  # sign-extend 4 bits
    if np.any(codes < -_QMAX[bits]):
        raise CodecError(f"a {bits}-bit code is outside the symmetric range")
    return codes.astype(np.float32)


def _varint_decode(buf: np.ndarray, count: int) -> np.ndarray:
    """Exactly ``count`` LEB128 values filling all of ``buf``; each below 2**32."""
    ends = np.flatnonzero(buf < 0x80)
    if len(ends) != count or (count and ends[-1] != len(buf) - 1):
        raise CodecError(f"index section holds {len(ends)} values in {len(buf)} bytes, "
                         f"expected exactly {count}")
    starts = np.concatenate(([0], ends[:-1] + 1)) if count else ends
    lengths = ends - starts + 1
    if np.any(lengths > 5):
        raise CodecError("an index varint is longer than 5 bytes")
    vals = np.zeros(count, np.uint64)
    for b in range(5):
        m = lengths > b
        vals[m] |= (buf[starts[m] + b].astype(np.uint64) & np.uint64(0x7F)) << np.uint64(7 * b)
    if np.any(vals >= 1 << 32):
        raise CodecError("an index gap is 2**32 or more")
    return vals
