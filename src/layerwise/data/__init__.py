"""Datasets for layerwise, all offline.

Embedded: ``digits`` (sklearn), ``basic-motions`` and ``aeon:NAME`` (sets bundled with aeon),
``mnist1d`` (generated locally). File-backed, from files the user already has:
``fashion-mnist`` (Debian's folder) or ``fashion-mnist:DIR``, ``cifar10:DIR``, ``cifar100:DIR``, ``mnist:DIR``, ``tiny-imagenet:DIR``, ``uci-har:DIR``,
``mhealth:DIR``, ``imagenet:DIR``, ``speech-commands:DIR``, ``widar:DIR``. Splits are fixed (constant seed) so that results compare across runs; each
loader's module docstring states its split rule and preprocessing, and ``DatasetSplits.info``
records them.
"""

from . import aeon_sets, cifar, digits, fashion_mnist, mhealth, mnist, mnist1d, tiny_imagenet, uci_har  # noqa: F401  (register)
from . import imagenet, speech_commands, widar  # noqa: F401  (register)
from .base import DatasetSplits, make_loader
from .registry import DATASETS, list_datasets, load_dataset

__all__ = ["DATASETS", "DatasetSplits", "list_datasets", "load_dataset", "make_loader"]
