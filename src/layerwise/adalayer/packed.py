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
rebuilds the model with :func:`layerwise.models.build_model`, the shape of every stored tensor
(a structurally pruned model is rebuilt at those shapes), and per tensor either
``{"kind": "quantized", bits, scale section (fp16 per output channel), mask section (dense,
bitmask or CSR, see :mod:`.bitpack`), values section (bit-packed codes of the kept weights)}`` or
``{"kind": "raw", dtype, section}`` for everything AdaLayerNet does not compress (BatchNorm,
biases, unsupported layers), stored at the passthrough dtype. BatchNorm's ``num_batches_tracked``
counters are not stored (inference never reads them).
"""

from __future__ import annotations

import hashlib
import json
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
from .bitpack import decode_mask, encode_mask, pack_signed, packed_length, unpack_signed
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
        mask = qw.mask.cpu().numpy()
        enc = encode_mask(mask)
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

def read_packed_metadata(data: bytes, source: str = "<bytes>") -> tuple[dict, memoryview]:
    """Check magic, length and checksum; return (metadata, payload)."""
    if len(data) < HEADER.size + DIGEST:
        raise PackedFileError(f"{source} is truncated ({len(data)} bytes, shorter than a header and checksum): "
                              "write it again with `layerwise compress`")
    magic, version, flags, _, meta_len = HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise PackedFileError(f"{source} is not a layerwise packed file (magic {magic!r}, expected {MAGIC!r}): "
                              "pass a .lwpk file written by `layerwise compress`")
    body, digest = data[:-DIGEST], data[-DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise PackedFileError(f"{source} is corrupted or truncated (SHA-256 checksum mismatch): "
                              "write it again with `layerwise compress`")
    if version != VERSION:
        raise PackedFileError(f"{source} has packed-format version {version}, this layerwise reads {VERSION}: "
                              "use a matching layerwise version")
    if HEADER.size + meta_len > len(body):
        raise PackedFileError(f"{source} is corrupted: metadata length {meta_len} exceeds the file")
    raw = bytes(data[HEADER.size:HEADER.size + meta_len])
    try:
        meta = json.loads(zlib.decompress(raw) if flags & FLAG_ZLIB else raw)
    except (zlib.error, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PackedFileError(f"{source} is corrupted: its metadata cannot be read ({exc})") from None
    if meta.get("format") != FORMAT:
        raise PackedFileError(f"{source} has format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta, memoryview(body)[HEADER.size + meta_len:]


def _section(payload: memoryview, sec: list[int], source: str) -> bytes:
    off, length = int(sec[0]), int(sec[1])
    if off < 0 or length < 0 or off + length > len(payload):
        raise PackedFileError(f"{source} is corrupted: a section points outside the payload")
    return bytes(payload[off:off + length])


def decode_tensors(meta: dict, payload: memoryview, source: str = "<bytes>") -> dict[str, torch.Tensor]:
    """The state_dict stored in a packed file (quantized weights dequantised by :func:`dequantize`)."""
    state: dict[str, torch.Tensor] = {}
    for t in meta["tensors"]:
        shape = tuple(int(s) for s in t["shape"])
        if t["kind"] == "quantized":
            bits = int(t["bits"])
            mask = decode_mask(t["mask"], _section(payload, t["mask"]["section"], source), shape)
            nnz = int(mask.sum())
            values = unpack_signed(_section(payload, t["values"], source), bits, nnz)
            codes = np.zeros(int(np.prod(shape)), dtype=np.int32)
            codes[mask.reshape(-1)] = values
            scale = np.frombuffer(_section(payload, t["scale"], source), dtype="<f2")
            if scale.size != shape[0]:
                raise PackedFileError(f"{source} is corrupted: {t['name']} has {scale.size} scales for "
                                      f"{shape[0]} output channels")
            state[t["name"]] = dequantize(torch.from_numpy(codes.reshape(shape)),
                                          torch.from_numpy(scale.astype(np.float16)))
        elif t["kind"] == "raw":
            dtype = _DTYPES[t["dtype"]]
            data = _section(payload, t["section"], source)
            np_dtype = torch.empty(0, dtype=dtype).numpy().dtype.newbyteorder("<")
            arr = np.frombuffer(data, dtype=np_dtype).copy()
            if arr.size != int(np.prod(shape)):
                raise PackedFileError(f"{source} is corrupted: {t['name']} holds {arr.size} values for shape {shape}")
            tensor = torch.from_numpy(arr.astype(arr.dtype.newbyteorder("="))).reshape(shape)
            state[t["name"]] = tensor.to(torch.float32) if tensor.is_floating_point() else tensor
        else:
            raise PackedFileError(f"{source} has a tensor of unknown kind {t['kind']!r}")
    return state


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


def load_packed_bytes(data: bytes, source: str = "<bytes>") -> PackedModel:
    meta, payload = read_packed_metadata(data, source)
    state = decode_tensors(meta, payload, source)
    model = Architecture.from_json(meta["arch"]).build()
    if meta.get("structured"):
        resize_to_state(model, state)
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith(_SKIP_SUFFIX)]
    unexpected = [k for k in state if k not in own]
    bad_shape = [k for k in state if k in own and own[k].shape != state[k].shape]
    if missing or unexpected or bad_shape:
        raise PackedFileError(f"{source} does not fit the rebuilt {meta['arch']['model']} (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}, shape {bad_shape[:3]}): it was written for another "
                              "model version")
    model.load_state_dict(state, strict=False)
    return PackedModel(model.eval(), meta, len(data), None if source == "<bytes>" else source)


def load_packed(path: str | os.PathLike) -> PackedModel:
    """Rebuild the runnable model stored in a packed file (checksum verified first)."""
    p = Path(path)
    if not p.is_file():
        raise PackedFileError(f"no packed file at {p}: pass the .lwpk file written by `layerwise compress`")
    return load_packed_bytes(p.read_bytes(), str(p))
