"""The dataset registry and :func:`load_dataset`.

A name is either a plain registry name (``digits``) or ``PREFIX:ARG`` for the sets that need an
argument: ``aeon:BasicMotions`` (a UEA/UCR set bundled with aeon) or ``cifar10:/path/to/dir``
(files the user already has). Nothing is ever downloaded.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ..errors import DataError, UnknownNameError
from ..registry import Registry
from .base import DatasetSplits


@dataclass(frozen=True)
class DatasetEntry:
    """A registered loader: ``loader(name, arg, size=, channels=, seed=) -> DatasetSplits``.

    A loader with named evaluation protocols (``splits``, e.g. WiDaR's ``cross-room``) also takes
    ``split=`` (one of them, or None for its default split)."""

    loader: Callable[..., DatasetSplits]
    kind: Literal["image", "series"]
    arg: str | None = None  # placeholder shown by list_datasets, e.g. "DIR" or "NAME"
    summary: str = ""
    splits: tuple[str, ...] = ()  # protocols load_dataset(split=...) accepts; () = default only

    def __call__(self, *args, **kwargs) -> DatasetSplits:
        return self.loader(*args, **kwargs)


DATASETS: Registry[DatasetEntry] = Registry("dataset")


def register_dataset(name: str, *, kind: Literal["image", "series"], arg: str | None = None,
                     summary: str = "", splits: tuple[str, ...] = ()):
    """Register ``loader`` under ``name`` (or ``name:ARG`` when it takes an argument); ``splits``
    names the protocols it accepts as ``split=`` (a pattern such as ``rooms:A-B`` is allowed)."""

    def deco(loader):
        key = f"{name}:{arg}" if arg else name
        DATASETS.register(key)(DatasetEntry(loader, kind, arg, summary, tuple(splits)))
        return loader

    return deco


def list_datasets() -> list[str]:
    """Registered names; the ones taking an argument are shown as e.g. ``cifar10:DIR``."""
    return DATASETS.names()


def _resolve(name: str) -> tuple[DatasetEntry, str | None]:
    prefix, sep, arg = name.partition(":")
    if not sep:
        if name in DATASETS:
            return DATASETS.get(name), None
        for key in DATASETS.names():
            if key.partition(":")[0] == name:
                raise DataError(f"dataset {name!r} needs an argument: use {key} "
                                f"(e.g. {name}:{'/path/to/folder' if key.endswith(':DIR') else 'BasicMotions'})")
        raise UnknownNameError(DATASETS.unknown_message(name))
    for key in DATASETS.names():
        kprefix, ksep, _ = key.partition(":")
        if ksep and kprefix == prefix:
            if not arg:
                raise DataError(f"dataset {name!r} has an empty argument: use {key}")
            return DATASETS.get(key), arg
    if prefix in DATASETS:
        raise DataError(f"dataset {prefix!r} takes no argument: use {prefix!r} instead of {name!r}")
    raise UnknownNameError(DATASETS.unknown_message(name))


MAX_SIZE = 1024  # largest image side load_dataset resizes to (a 3x1024x1024 float32 image is 12 MiB)
MAX_CHANNELS = 3


def _brief(v: object) -> str:
    """A one-line repr of at most 60 characters (a tensor or array is named, not printed)."""
    if hasattr(v, "shape") and hasattr(v, "dtype") and not isinstance(v, numbers.Number):
        return f"<{type(v).__name__} of shape {tuple(v.shape)}>"
    text = " ".join(repr(v).split())
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def check_arguments(name: object, size: object, channels: object, seed: object) -> None:
    """One-line DataError for a load_dataset argument of the wrong type or range."""
    if not isinstance(name, str):
        raise DataError(f"dataset name {_brief(name)} is not a string ({type(name).__name__}): pass a registry name "
                        f"such as 'digits' (valid: {', '.join(list_datasets())})")
    if not name.strip():
        raise DataError(f"dataset name is empty: pass a registry name such as 'digits' "
                        f"(valid: {', '.join(list_datasets())})")
    if size is not None:
        sides = (size, size) if _is_int(size) else tuple(size) if isinstance(size, (tuple, list)) else None
        if sides is None or len(sides) != 2 or not all(_is_int(s) for s in sides):
            raise DataError(f"size={_brief(size)} is not valid: pass one positive integer (e.g. 32) or a pair of "
                            "integers (height, width)")
        if not all(1 <= s <= MAX_SIZE for s in sides):
            raise DataError(f"size={_brief(size)} is out of range: each side must be between 1 and {MAX_SIZE} pixels")
    if channels is not None and (not _is_int(channels) or not 1 <= channels <= MAX_CHANNELS):
        raise DataError(f"channels={_brief(channels)} is not valid: pass 1 (grey) or 3 (RGB), or leave it unset")
    if not _is_int(seed) or seed < 0:
        raise DataError(f"seed={_brief(seed)} is not valid: pass a non-negative integer")


def load_dataset(name: str, *, size: int | tuple[int, int] | None = None,
                 channels: int | None = None, seed: int = 0, split: str | None = None) -> DatasetSplits:
    """Load a dataset by registry name, with fixed splits and train-split normalisation.

    ``size`` and ``channels`` resize image datasets (e.g. ``load_dataset("digits", size=32,
    channels=3)`` gives CIFAR-shaped ``(3, 32, 32)`` samples): ``size`` is a positive int or an
    (height, width) pair of ints, each at most ``MAX_SIZE`` (1024); ``channels`` is 1 or 3.
    ``seed`` (an int >= 0) only seeds randomness in generating a dataset, never the splits, which
    are fixed so that results compare across runs. ``split`` picks a named evaluation protocol of
    the datasets that have them (e.g. ``"cross-room"`` for ``widar:DIR``; the result is then named
    ``widar:DIR@cross-room``); None is the dataset's default split. Bad arguments raise a one-line
    DataError.
    """
    check_arguments(name, size, channels, seed)
    if size is not None:  # plain ints from here on (numpy integers and lists accepted above)
        size = int(size) if _is_int(size) else tuple(int(s) for s in size)  # type: ignore[union-attr]
    channels, seed = (int(channels) if channels is not None else None), int(seed)
    entry, arg = _resolve(name)
    if entry.kind != "image" and (size is not None or channels is not None):
        raise DataError(f"size= and channels= apply to image datasets only; {name!r} is a time-series "
                        "dataset: leave them unset")
    if split is None:
        return entry(name, arg, size=size, channels=channels, seed=seed)
    if not entry.splits:
        raise DataError(f"dataset {name!r} has one fixed split and takes no split={split!r} (--split): leave it unset")
    # the protocol joins the name (results' dataset label, cached base models): "widar:DIR@cross-room"
    return entry(f"{name}@{split}", arg, size=size, channels=channels, seed=seed, split=split)
