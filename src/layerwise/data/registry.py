"""The dataset registry and :func:`load_dataset`.

A name is either a plain registry name (``digits``) or ``PREFIX:ARG`` for the sets that need an
argument: ``aeon:BasicMotions`` (a UEA/UCR set bundled with aeon) or ``cifar10:/path/to/dir``
(files the user already has). Nothing is ever downloaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ..errors import DataError, UnknownNameError
from ..registry import Registry
from .base import DatasetSplits


@dataclass(frozen=True)
class DatasetEntry:
    """A registered loader: ``loader(name, arg, size=, channels=, seed=) -> DatasetSplits``."""

    loader: Callable[..., DatasetSplits]
    kind: Literal["image", "series"]
    arg: str | None = None  # placeholder shown by list_datasets, e.g. "DIR" or "NAME"
    summary: str = ""

    def __call__(self, *args, **kwargs) -> DatasetSplits:
        return self.loader(*args, **kwargs)


DATASETS: Registry[DatasetEntry] = Registry("dataset")


def register_dataset(name: str, *, kind: Literal["image", "series"], arg: str | None = None,
                     summary: str = ""):
    """Register ``loader`` under ``name`` (or ``name:ARG`` when it takes an argument)."""

    def deco(loader):
        key = f"{name}:{arg}" if arg else name
        DATASETS.register(key)(DatasetEntry(loader, kind, arg, summary))
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


def load_dataset(name: str, *, size: int | tuple[int, int] | None = None,
                 channels: int | None = None, seed: int = 0) -> DatasetSplits:
    """Load a dataset by registry name, with fixed splits and train-split normalisation.

    ``size`` and ``channels`` resize image datasets (e.g. ``load_dataset("digits", size=32,
    channels=3)`` gives CIFAR-shaped ``(3, 32, 32)`` samples). ``seed`` only seeds randomness in
    generating a dataset, never the splits, which are fixed so that results compare across runs.
    """
    entry, arg = _resolve(name)
    if entry.kind != "image" and (size is not None or channels is not None):
        raise DataError(f"size= and channels= apply to image datasets only; {name!r} is a time-series "
                        "dataset: leave them unset")
    return entry(name, arg, size=size, channels=channels, seed=seed)
