"""The packed artifact: a file that really is small, and a loader that rebuilds a runnable model.

Layout (all integers little-endian; docs/adalayer.md has the byte-by-byte description)::

    offset 0   4 bytes  magic b"LWPK"
           4   1 byte   format version (1)
           5   1 byte   flags (bit 0: metadata is zlib-compressed)
           6   2 bytes  reserved (0)
           8   4 bytes  uint32 metadata length M
          12   M bytes  metadata: JSON (zlib-compressed when flag bit 0 is set)
        12+M   P bytes  payload: the sections named in the metadata, at payload-relative offsets
      12+M+P  32 bytes  SHA-256 of every byte before it

The metadata names the architecture (registry name, input shape, classes, options) so the loader
rebuilds the model with :func:`layerwise.models.build_model`; a user's own module (not in the
registry, :meth:`Architecture.of_module`) is named ``user:<module>.<class>`` and is reloaded by
passing an ``nn.Module`` of the same architecture as ``model=`` (the file never names code to
import). Then the shape of every stored tensor
(a structurally pruned model is rebuilt at those shapes), and per tensor either
``{"kind": "quantized", bits, scale section (fp16 per output channel), mask section (dense,
bitmask or CSR, see :mod:`.bitpack`), values section (bit-packed codes of the kept weights)}`` or
``{"kind": "raw", dtype, section}`` for everything AdaLayerNet does not compress (BatchNorm,
biases, unsupported layers), stored at the passthrough dtype. BatchNorm's ``num_batches_tracked``
counters are not stored (inference never reads them).

Loading trusts nothing after the checksum: every metadata field is bounds-checked (see
:func:`check_metadata` and the caps ``MAX_*``), the architecture must be a registered model name
(a packed file never names code to import) and is compared with the stored shapes on the meta
device, all before any buffer sized by the metadata is allocated. Any failure is a one-line
:class:`PackedFileError`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import LayerwiseError
from ..models import build_model
from ..storage import atomic_write_bytes
from .bitpack import EncodedMask, decode_mask, encode_mask, pack_signed, packed_length, unpack_signed
from .quantize import QuantizedWeight, dequantize

MAGIC = b"LWPK"
VERSION = 1
FORMAT = "layerwise.packed/1"
HEADER = struct.Struct("<4sBBHI")  # magic, version, flags, reserved, metadata length
DIGEST = 32
FLAG_ZLIB = 1
_DTYPES = {"float16": torch.float16, "float32": torch.float32, "int64": torch.int64, "int32": torch.int32,
           "bool": torch.bool, "uint8": torch.uint8}
_SKIP_SUFFIX = ("num_batches_tracked",)
USER_PREFIX = "user:"  # Architecture.model of a user's own module (reloaded with model=)


class PackedFileError(LayerwiseError):
    """A packed file that is missing, truncated, corrupted or not a layerwise packed file."""


@dataclass(frozen=True)
class Architecture:
    """How to rebuild the model: ``build_model(model, input_shape, num_classes, **options)``."""

    model: str
    input_shape: tuple[int, ...]
    num_classes: int
    options: dict

    def to_json(self) -> dict:
        return {"model": self.model, "input_shape": list(self.input_shape), "num_classes": self.num_classes,
                "options": dict(self.options)}

    @classmethod
    def from_json(cls, d: dict) -> "Architecture":
        return cls(d["model"], tuple(d["input_shape"]), int(d["num_classes"]), dict(d.get("options", {})))

    def build(self) -> nn.Module:
        return build_model(self.model, self.input_shape, self.num_classes, **self.options)

    @property
    def user_module(self) -> bool:
        """True for a user's own module: reloaded with ``load_packed(..., model=module)``."""
        return self.model.startswith(USER_PREFIX)

    @classmethod
    def of_module(cls, module: nn.Module, input_shape: tuple[int, ...], num_classes: int) -> "Architecture":
        """The architecture record of a user's own module (not in the registry): its class name,
        for messages only; the loader needs ``model=`` an instance of the same architecture."""
        kind = type(module)
        return cls(f"{USER_PREFIX}{kind.__module__}.{kind.__qualname__}"[:MAX_NAME], tuple(int(s) for s in input_shape),
                   int(num_classes), {})


def stored_passthrough(tensor: torch.Tensor, dtype: str) -> torch.Tensor:
    """A passthrough tensor as the loader will see it (float tensors rounded to ``dtype``)."""
    if tensor.is_floating_point():
        return tensor.detach().to(_DTYPES[dtype]).to(tensor.dtype)
    return tensor.detach().clone()


def passthrough_keys(state: dict, quantized: dict[str, QuantizedWeight]) -> list[str]:
    qkeys = {f"{name}.weight" for name in quantized}
    return [k for k in state if k not in qkeys and not k.endswith(_SKIP_SUFFIX)]


class _Payload:
    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> list[int]:
        off = self.size
        self.parts.append(data)
        self.size += len(data)
        return [off, len(data)]


def stored_mask(qw: QuantizedWeight) -> tuple[np.ndarray, EncodedMask]:
    """The positions whose codes a packed file stores, and the cheapest encoding of them.

    A kept weight whose code rounded to 0 is stored as a pruned one (the same weight, 0, either
    way). Then, per layer, the cheapest of: the codes of the nonzero positions plus their
    positions as a ``bitmask`` or ``csr`` (:func:`.bitpack.encode_mask`), or every code including
    the zeros with no positions at all (``dense``: B bits per weight beat a 1-bit mask plus B bits
    per kept weight when fewer than about 1/B of the weights are pruned). Files written before
    this choice existed decode unchanged: the loader reads all three as it always did.
    """
    codes = qw.codes.cpu().numpy()
    nonzero = qw.mask.cpu().numpy() & (codes != 0)
    enc = encode_mask(nonzero)
    if enc.encoding != "dense":
        sparse = len(enc.data) + packed_length(int(nonzero.sum()), qw.bits)
        if packed_length(codes.size, qw.bits) <= sparse:
            nonzero = np.ones_like(nonzero)
            enc = encode_mask(nonzero)
    return nonzero, enc


def encode_packed(state: dict[str, torch.Tensor], quantized: dict[str, QuantizedWeight], arch: Architecture,
                  *, passthrough_dtype: str = "float16", structured: bool = False,
                  extra: dict | None = None) -> bytes:
    """The bytes of a packed file for ``state`` (a model's state_dict) with ``quantized`` layers.

    ``quantized`` maps a layer name to its :class:`QuantizedWeight` (replacing ``name.weight``);
    every other tensor in ``state`` is stored as a passthrough tensor.
    """
    payload = _Payload()
    tensors = []
    for lname, qw in quantized.items():
        key = f"{lname}.weight"
        if key not in state:
            raise LayerwiseError(f"layer {lname!r} has no weight in the state_dict: cannot pack it")
        mask, enc = stored_mask(qw)
        kept = qw.codes.cpu().numpy().reshape(-1)[mask.reshape(-1)]
        entry = {"name": key, "kind": "quantized", "shape": list(qw.codes.shape), "bits": qw.bits,
                 "scale": payload.add(qw.scale.cpu().numpy().astype("<f2").tobytes()),
                 "mask": {**enc.to_json(), "section": payload.add(enc.data)},
                 "nnz": int(kept.size), "values": payload.add(pack_signed(kept, qw.bits))}
        tensors.append(entry)
    for key in passthrough_keys(state, quantized):
        t = state[key].detach().cpu()
        dtype = passthrough_dtype if t.is_floating_point() else str(t.dtype).removeprefix("torch.")
        if dtype not in _DTYPES:
            raise LayerwiseError(f"tensor {key!r} has dtype {t.dtype}, which the packed format cannot store")
        arr = t.to(_DTYPES[dtype]).contiguous().numpy()
        data = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        tensors.append({"name": key, "kind": "raw", "shape": list(t.shape), "dtype": dtype,
                        "section": payload.add(data)})
    meta = {"format": FORMAT, "arch": arch.to_json(), "structured": bool(structured), "tensors": tensors}
    if extra:
        meta["extra"] = extra
    meta_bytes = zlib.compress(json.dumps(meta, separators=(",", ":")).encode("utf-8"), 9)
    body = HEADER.pack(MAGIC, VERSION, FLAG_ZLIB, 0, len(meta_bytes)) + meta_bytes + b"".join(payload.parts)
    return body + hashlib.sha256(body).digest()


def write_packed(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write_bytes(path, data)


# ---- reading ------------------------------------------------------------------------------------
#
# The SHA-256 only proves the file is the one its writer hashed, not that the writer was layerwise:
# a forged file can carry a valid hash over any metadata. So every metadata field is bounds-checked
# (types, shapes, bit widths, offsets inside the payload, sizes consistent with each other and below
# the caps here) and the architecture is rebuilt on the meta device and compared BEFORE any
# buffer sized by the metadata is allocated. Every failure is a one-line PackedFileError.

MAX_FILE_BYTES = 2 ** 32  # 4 GiB: larger files are refused before reading
MAX_META_BYTES = 16 * 2 ** 20  # decompressed metadata (JSON) at most 16 MiB
MAX_TENSORS = 100_000
MAX_DIMS = 8
MAX_ELEMENTS = 2 ** 28  # values of all stored tensors together (1 GiB as float32)
MAX_NAME = 1024
MAX_CLASSES = 1_000_000
ALLOWED_BITS = tuple(range(2, 17))  # the quantizer's range (quantize.qmax)
_UINT_WIDTHS = (1, 2, 4)


def _corrupted(source: str, what: str) -> PackedFileError:
    return PackedFileError(f"{source} is corrupted: {what}; write it again with `layerwise compress`")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _brief(v) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def read_packed_metadata(data: bytes, source: str = "<bytes>") -> tuple[dict, memoryview]:
    """Check magic, length and checksum; return (metadata, payload). The metadata is only parsed
    here: :func:`check_metadata` bounds-checks it."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PackedFileError(f"{source}: expected the bytes of a packed file, got {type(data).__name__}")
    if len(data) < HEADER.size + DIGEST:
        raise PackedFileError(f"{source} is truncated ({len(data)} bytes, shorter than a header and checksum): "
                              "write it again with `layerwise compress`")
    magic, version, flags, _, meta_len = HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise PackedFileError(f"{source} is not a layerwise packed file (magic {bytes(magic)!r}, expected {MAGIC!r}): "
                              "pass a .lwpk file written by `layerwise compress`")
    body, digest = data[:-DIGEST], data[-DIGEST:]
    if hashlib.sha256(body).digest() != bytes(digest):
        raise PackedFileError(f"{source} is corrupted or truncated (SHA-256 checksum mismatch): "
                              "write it again with `layerwise compress`")
    if version != VERSION:
        raise PackedFileError(f"{source} has packed-format version {version}, this layerwise reads {VERSION}: "
                              "use a matching layerwise version")
    if flags & ~FLAG_ZLIB:
        raise _corrupted(source, f"unknown header flags {flags:#04x}")
    if HEADER.size + meta_len > len(body):
        raise _corrupted(source, f"metadata length {meta_len} exceeds the file")
    raw = bytes(data[HEADER.size:HEADER.size + meta_len])
    try:
        if flags & FLAG_ZLIB:
            inflate = zlib.decompressobj()
            raw = inflate.decompress(raw, MAX_META_BYTES)
            if inflate.unconsumed_tail:
                raise _corrupted(source, f"its metadata inflates to more than {MAX_META_BYTES} bytes")
        elif len(raw) > MAX_META_BYTES:
            raise _corrupted(source, f"its metadata is longer than {MAX_META_BYTES} bytes")
        meta = json.loads(raw)
    except PackedFileError:
        raise
    except (zlib.error, ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _corrupted(source, f"its metadata cannot be read ({type(exc).__name__})") from None
    if not isinstance(meta, dict):
        raise _corrupted(source, f"its metadata is a JSON {type(meta).__name__}, not an object")
    if meta.get("format") != FORMAT:
        raise PackedFileError(f"{source} has format {_brief(meta.get('format'))}, expected {FORMAT!r}: pass a .lwpk "
                              "file written by `layerwise compress`")
    return meta, memoryview(body)[HEADER.size + meta_len:]


def _check_section(sec, payload_size: int, source: str, where: str, length: int | None = None) -> tuple[int, int]:
    if not isinstance(sec, list) or len(sec) != 2 or not all(_is_int(v) and v >= 0 for v in sec):
        raise _corrupted(source, f"{where} section is {_brief(sec)}, not [offset, length]")
    off, n = sec
    if off + n > payload_size:
        raise _corrupted(source, f"{where} section [{off}, {n}] points outside the {payload_size}-byte payload")
    if length is not None and n != length:
        raise _corrupted(source, f"{where} section holds {n} bytes, {length} expected")
    return off, n


def _check_arch(arch, source: str, registry: bool = True) -> Architecture:
    """``registry=False``: the caller passed the module (``model=``), so the name is not looked up."""
    from ..models import list_models

    if not isinstance(arch, dict) or not isinstance(arch.get("model"), str):
        raise _corrupted(source, f"its architecture is {_brief(arch)}, not {{model, input_shape, num_classes}}")
    if registry and arch["model"].startswith(USER_PREFIX):
        raise PackedFileError(f"{source} holds your own module {_brief(arch['model'][len(USER_PREFIX):])}, not a "
                              "registry model: pass model=<an nn.Module of the same architecture> to load_packed")
    if registry and arch["model"] not in list_models():  # registry names only: a packed file never names code to import
        raise PackedFileError(f"{source} names model {_brief(arch['model'])}, which this layerwise does not have: "
                              "load it with the layerwise version that wrote it")
    shape, classes, options = arch.get("input_shape"), arch.get("num_classes"), arch.get("options", {})
    if not isinstance(shape, list) or not 1 <= len(shape) <= 4 or not all(_is_int(v) and v >= 1 for v in shape) \
            or math.prod(shape) > MAX_ELEMENTS:
        raise _corrupted(source, f"input_shape {_brief(shape)} is not 1 to 4 positive sizes of at most "
                                 f"{MAX_ELEMENTS} values")
    if not _is_int(classes) or not 1 <= classes <= MAX_CLASSES:
        raise _corrupted(source, f"num_classes {_brief(classes)} is not an integer in 1..{MAX_CLASSES}")
    scalar = (str, int, float, bool, type(None))
    if not isinstance(options, dict) or not all(
            isinstance(v, scalar) or isinstance(v, list) and all(isinstance(x, scalar) for x in v)
            for v in options.values()):
        raise _corrupted(source, f"model options {_brief(options)} are not a dict of plain values")
    return Architecture(arch["model"], tuple(shape), classes, dict(options))


def check_metadata(meta: dict, payload_size: int, source: str = "<bytes>", *, registry: bool = True) -> Architecture:
    """Bounds-check every metadata field against the payload and the caps above, before anything
    sized by the metadata is allocated; returns the architecture. PackedFileError otherwise.
    ``registry=False`` when the module comes from the caller (its name is not looked up)."""
    arch = _check_arch(meta.get("arch"), source, registry)
    if not isinstance(meta.get("structured", False), bool):
        raise _corrupted(source, f"'structured' is {_brief(meta.get('structured'))}, not true/false")
    tensors = meta.get("tensors")
    if not isinstance(tensors, list) or not 1 <= len(tensors) <= MAX_TENSORS:
        raise _corrupted(source, f"'tensors' is not a list of 1 to {MAX_TENSORS} entries")
    names: set[str] = set()
    total = 0
    for i, t in enumerate(tensors):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str) or not 0 < len(t["name"]) <= MAX_NAME:
            raise _corrupted(source, f"tensor entry {i} has no valid name")
        name = t["name"]
        if name in names:
            raise _corrupted(source, f"tensor {name!r} is stored twice")
        names.add(name)
        shape = t.get("shape")
        if not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(_is_int(v) and v >= 0 for v in shape):
            raise _corrupted(source, f"{name} has shape {_brief(shape)}, not a list of at most {MAX_DIMS} sizes")
        numel = math.prod(shape)
        total += numel
        if total > MAX_ELEMENTS:
            raise _corrupted(source, f"its tensors hold more than {MAX_ELEMENTS} values (the cap of this loader)")
        kind = t.get("kind")
        if kind == "raw":
            dtype = t.get("dtype")
            if not isinstance(dtype, str) or dtype not in _DTYPES:
                raise _corrupted(source, f"{name} has dtype {_brief(dtype)}, not one of {', '.join(_DTYPES)}")
            itemsize = torch.empty(0, dtype=_DTYPES[dtype]).element_size()
            _check_section(t.get("section"), payload_size, source, name, numel * itemsize)
        elif kind == "quantized":
            if not shape or shape[0] < 1:
                raise _corrupted(source, f"quantized {name} has shape {shape}, without output channels")
            bits, nnz = t.get("bits"), t.get("nnz")
            if not _is_int(bits) or bits not in ALLOWED_BITS:
                raise _corrupted(source, f"{name} has bit width {_brief(bits)}, not one of 2..16")
            if not _is_int(nnz) or not 0 <= nnz <= numel:
                raise _corrupted(source, f"{name} keeps {_brief(nnz)} weights, not 0..{numel}")
            _check_section(t.get("scale"), payload_size, source, f"{name} scale", 2 * shape[0])
            _check_section(t.get("values"), payload_size, source, f"{name} values", packed_length(nnz, bits))
            mask = t.get("mask")
            if not isinstance(mask, dict) or mask.get("encoding") not in ("dense", "bitmask", "csr"):
                raise _corrupted(source, f"{name} has mask {_brief(mask)}, not a dense, bitmask or csr encoding")
            enc = mask["encoding"]
            if enc == "dense":
                if nnz != numel:
                    raise _corrupted(source, f"{name} has a dense mask but keeps {nnz} of {numel} weights")
                expected = 0
            elif enc == "bitmask":
                expected = (numel + 7) // 8
            else:
                rw, cw = mask.get("row_ptr_width"), mask.get("col_width")
                if rw not in _UINT_WIDTHS or cw not in _UINT_WIDTHS or not (_is_int(rw) and _is_int(cw)):
                    raise _corrupted(source, f"{name} has CSR index widths {_brief(rw)}/{_brief(cw)}, not 1, 2 or 4")
                expected = (shape[0] + 1) * rw + nnz * cw
            _check_section(mask.get("section"), payload_size, source, f"{name} mask", expected)
        else:
            raise _corrupted(source, f"{name} has kind {_brief(kind)}, not 'quantized' or 'raw'")
    return arch


def _section(payload: memoryview, sec: list[int], source: str) -> bytes:
    off, length = _check_section(sec, len(payload), source, "a")
    return bytes(payload[off:off + length])


def _check_csr(enc: dict, data: bytes, shape: tuple[int, ...], name: str, source: str) -> None:
    """Row pointers start at 0, never decrease and end at the number of kept weights."""
    from .bitpack import _UINT

    rw = int(enc["row_ptr_width"])
    head = (shape[0] + 1) * rw
    row_ptr = np.frombuffer(data[:head], dtype=np.dtype(_UINT[rw]).newbyteorder("<")).astype(np.int64)
    nnz = (len(data) - head) // int(enc["col_width"])
    if row_ptr[0] != 0 or np.any(np.diff(row_ptr) < 0) or row_ptr[-1] != nnz:
        raise _corrupted(source, f"{name} has CSR row pointers that are not a running count of kept weights")


def decode_tensors(meta: dict, payload: memoryview, source: str = "<bytes>", *,
                   registry: bool = True) -> dict[str, torch.Tensor]:
    """The state_dict stored in a packed file (quantized weights dequantised by :func:`dequantize`).

    Checks the metadata first (:func:`check_metadata`) when the caller has not."""
    check_metadata(meta, len(payload), source, registry=registry)
    state: dict[str, torch.Tensor] = {}
    for t in meta["tensors"]:
        shape = tuple(int(s) for s in t["shape"])
        name = t["name"]
        if t["kind"] == "quantized":
            bits = int(t["bits"])
            mask_bytes = _section(payload, t["mask"]["section"], source)
            if t["mask"]["encoding"] == "csr":
                _check_csr(t["mask"], mask_bytes, shape, name, source)
            try:
                mask = decode_mask(t["mask"], mask_bytes, shape)
                nnz = int(mask.sum())
                if nnz != t["nnz"]:
                    raise _corrupted(source, f"{name} mask keeps {nnz} weights, the metadata says {t['nnz']}")
                values = unpack_signed(_section(payload, t["values"], source), bits, nnz)
            except PackedFileError:
                raise
            except (LayerwiseError, ValueError, IndexError) as exc:
                raise _corrupted(source, f"{name}: {str(exc).split(':')[0]}") from None
            limit = 2 ** (bits - 1) - 1
            if values.size and (values.min() < -limit or values.max() > limit):
                raise _corrupted(source, f"{name} holds codes outside the {bits}-bit range -{limit}..{limit}")
            codes = np.zeros(math.prod(shape), dtype=np.int32)
            codes[mask.reshape(-1)] = values
            scale = np.frombuffer(_section(payload, t["scale"], source), dtype="<f2")
            if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
                raise _corrupted(source, f"{name} has scales that are not finite and positive")
            state[name] = dequantize(torch.from_numpy(codes.reshape(shape)),
                                     torch.from_numpy(scale.astype(np.float16)))
        else:
            dtype = _DTYPES[t["dtype"]]
            data = _section(payload, t["section"], source)
            np_dtype = torch.empty(0, dtype=dtype).numpy().dtype.newbyteorder("<")
            arr = np.frombuffer(data, dtype=np_dtype).copy()
            if dtype == torch.bool and arr.view(np.uint8).max(initial=0) > 1:
                raise _corrupted(source, f"{name} holds bool values other than 0 and 1")
            tensor = torch.from_numpy(arr.astype(arr.dtype.newbyteorder("="))).reshape(shape)
            state[name] = tensor.to(torch.float32) if tensor.is_floating_point() else tensor
    return state


def _meta_shapes(arch: Architecture, source: str) -> dict[str, tuple[int, ...]] | None:
    """Parameter and buffer shapes of the architecture, built on the meta device (no memory);
    None if this model cannot be built there."""
    try:
        with torch.device("meta"):
            model = arch.build()
    except LayerwiseError as exc:
        raise PackedFileError(f"{source}: its architecture {arch.model} {arch.input_shape} cannot be built "
                              f"({str(exc)[:160]}): it was written for another model version") from None
    except (TypeError, ValueError) as exc:
        raise _corrupted(source, f"model options {_brief(arch.options)} do not fit {arch.model} "
                                 f"({type(exc).__name__})") from None
    except Exception:  # a model whose constructor needs real tensors: checked after the real build
        return None
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith(_SKIP_SUFFIX)}


def _check_fit(meta: dict, own: dict[str, tuple[int, ...]], source: str, arch: Architecture,
               given: nn.Module | None = None) -> None:
    """Stored tensors and the rebuilt model have the same names; shapes equal (or, for a
    structurally pruned file, the same rank and no dimension larger)."""
    stored = {t["name"]: tuple(t["shape"]) for t in meta["tensors"]}
    structured = bool(meta.get("structured", False))
    missing = [k for k in own if k not in stored]
    unexpected = [k for k in stored if k not in own]
    bad_shape = [k for k, s in stored.items() if k in own and (
        s != own[k] if not structured else len(s) != len(own[k]) or any(a > b for a, b in zip(s, own[k])))]
    if (missing or unexpected or bad_shape) and given is not None:
        raise PackedFileError(f"{source} does not fit the {type(given).__name__} passed as model= (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}, shape {bad_shape[:3]}; the file holds "
                              f"{_brief(arch.model)}): pass an nn.Module built like the one that was compressed")
    if missing or unexpected or bad_shape:
        raise PackedFileError(f"{source} does not fit the rebuilt {arch.model} (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}, shape {bad_shape[:3]}): it was written for another "
                              "model version")


def resize_to_state(model: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Give every parameter/buffer of ``model`` the shape it has in ``state`` (a structurally pruned
    model), fixing the channel attributes of Conv, Linear and BatchNorm; returns the modules resized."""
    own = model.state_dict()
    resized = []
    for key, t in state.items():
        if key not in own or own[key].shape == t.shape:
            continue
        mod_name, _, attr = key.rpartition(".")
        mod = model.get_submodule(mod_name)
        old = getattr(mod, attr)
        new = torch.zeros(t.shape, dtype=old.dtype)
        if isinstance(old, nn.Parameter):
            setattr(mod, attr, nn.Parameter(new, requires_grad=old.requires_grad))
        else:
            mod._buffers[attr] = new
        if mod_name not in resized:
            resized.append(mod_name)
    for mod_name in resized:
        mod = model.get_submodule(mod_name)
        if isinstance(mod, nn.modules.conv._ConvNd):
            depthwise = mod.groups > 1 and mod.groups == mod.in_channels
            mod.out_channels = mod.weight.shape[0]
            if depthwise:
                mod.groups = mod.in_channels = mod.out_channels
            else:
                mod.in_channels = mod.weight.shape[1] * mod.groups
        elif isinstance(mod, nn.Linear):
            mod.out_features, mod.in_features = mod.weight.shape
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.num_features = mod.running_mean.shape[0] if mod.running_mean is not None else mod.weight.shape[0]
        else:
            raise PackedFileError(f"cannot rebuild {type(mod).__name__} {mod_name!r} at a pruned shape: only "
                                  "Conv, Linear and BatchNorm layers can be structurally pruned")
    return resized


@dataclass
class PackedModel:
    model: nn.Module
    meta: dict
    size_bytes: int
    path: str | None


def _into_given(meta: dict, payload: memoryview, source: str, arch: Architecture, given: nn.Module) -> nn.Module:
    """The packed tensors loaded into a copy of ``given`` (``model=``), after checking they fit it."""
    if not isinstance(given, nn.Module):
        raise PackedFileError(f"model= must be a torch.nn.Module of the compressed architecture, got "
                              f"{type(given).__name__}")
    own = {k: tuple(v.shape) for k, v in given.state_dict().items() if not k.endswith(_SKIP_SUFFIX)}
    _check_fit(meta, own, source, arch, given)
    state = decode_tensors(meta, payload, source, registry=False)
    model = copy.deepcopy(given)
    if meta.get("structured"):
        resize_to_state(model, state)
    device = next((t.device for t in model.state_dict().values()), torch.device("cpu"))
    model.load_state_dict({k: v.to(device) for k, v in state.items()}, strict=False)
    return model


def load_packed_bytes(data: bytes, source: str = "<bytes>", *, model: nn.Module | None = None) -> PackedModel:
    """Rebuild the model in a packed file's bytes: checksum, then every metadata field bounds-checked
    and the architecture compared on the meta device, then the tensors decoded; PackedFileError
    (one line) for anything wrong.

    ``model=``: an ``nn.Module`` of the compressed architecture (needed for a user's own module,
    which the registry cannot rebuild; allowed for any file). The stored tensors are checked to fit
    it (names and shapes) and loaded into a COPY of it; ``model`` itself is not modified."""
    meta, payload = read_packed_metadata(data, source)
    arch = check_metadata(meta, len(payload), source, registry=model is None)
    if model is not None:
        rebuilt = _into_given(meta, payload, source, arch, model)
        return PackedModel(rebuilt.eval(), meta, len(data), None if source == "<bytes>" else source)
    own = _meta_shapes(arch, source)
    if own is not None:
        _check_fit(meta, own, source, arch)
    state = decode_tensors(meta, payload, source)
    try:
        model = arch.build()
    except (LayerwiseError, TypeError, ValueError) as exc:
        raise PackedFileError(f"{source}: its architecture {arch.model} cannot be built ({str(exc)[:160]}): it "
                              "was written for another model version") from None
    if own is None:
        _check_fit(meta, {k: tuple(v.shape) for k, v in model.state_dict().items()
                          if not k.endswith(_SKIP_SUFFIX)}, source, arch)
    if meta.get("structured"):
        resize_to_state(model, state)
    model.load_state_dict(state, strict=False)
    return PackedModel(model.eval(), meta, len(data), None if source == "<bytes>" else source)


def load_packed(path: str | os.PathLike, *, model: nn.Module | None = None) -> PackedModel:
    """Rebuild the runnable model stored in a packed file (checksum and metadata verified first);
    ``model=``: an ``nn.Module`` of the same architecture to load it into (a copy of it), for a user's
    own module that is not in the registry (see :func:`load_packed_bytes`)."""
    p = Path(path)
    if not p.is_file():
        raise PackedFileError(f"no packed file at {p}: pass the .lwpk file written by `layerwise compress`")
    size = p.stat().st_size
    if size > MAX_FILE_BYTES:
        raise PackedFileError(f"{p} is {size} bytes, above the {MAX_FILE_BYTES}-byte cap of packed files: it is "
                              "not a packed file written by `layerwise compress`")
    return load_packed_bytes(p.read_bytes(), str(p), model=model)
