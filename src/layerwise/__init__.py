"""layerwise: treat each layer of a network differently to fit it on a constrained device."""

__version__ = "0.1.0"
