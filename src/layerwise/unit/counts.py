"""MAC counters of UnIT layers: what ran, what was skipped and why, and what deciding cost.

Every MAC of the dense layer is counted exactly once, in the first of these classes that applies
(the attribution order):

1. ``zero_weight``: the weight is 0 (it never runs: the product is 0);
2. ``zero_input``: the input value is 0, zero padding included (the dense MAC count includes the
   padded positions, so they are counted here);
3. ``threshold``: both operands are nonzero and ``|z| <= T / |c|`` (paper eq. 1-3): skipped by
   UnIT's threshold test;
4. executed: everything else (``executed = total - skipped``).

The decision costs that the MCU cost model needs, following the loops of the authors' release
(Linear input-stationary, Conv weight-stationary) with the control term ``c`` (Linear: the input
``x``; Conv: the weight ``w``):

* ``compares``: magnitude comparisons. Each control term is first tested against zero; a zero
  control term skips its whole row (Linear: the ``out_features`` MACs of that input; Conv: the
  positions of that weight) with that one compare. A nonzero control term costs one compare per
  MAC it controls (``|z| > t``; a zero ``z`` fails it, so zero operands need no extra test).
  Linear: ``compares = nonzero inputs * out_features + zero inputs``; Conv:
  ``compares = (total - zero_weight) + samples * zero weights``. The zero test of a nonzero
  control term is folded into its first compare.
* ``divisions``: ratios ``T / |c|`` computed (exactly or by an approximation). Linear: nonzero
  inputs times the number of threshold groups (one ratio per group an input feeds). Conv: the
  nonzero weights, once per sample (each weight belongs to one output channel, hence one group);
  a deployment that stores the per-weight table with the model pays them zero times per
  inference, so the table size is ``divisions / samples``.
* ``samples``: how many input vectors (Linear: rows after flattening the leading dimensions) or
  input maps (Conv: the batch size) the counts cover, so per-inference figures are
  ``field / samples``.

All fields are exact Python ints.

Two ways to put counts together, and they differ only in ``samples``:

* ``a + b`` (and ``sum``): MORE CALLS of the same layer(s): every field adds, ``samples`` too
  (40 inputs then 60 more are 100 inputs);
* :func:`combine_layers`: DIFFERENT layers of one network over the same inputs: every counter
  adds, but ``samples`` is the number of network inputs, which each layer saw once. Rule: the
  ``samples`` given, else the smallest nonzero ``samples`` among the layers (a layer applied once
  per input counts the batch; a Linear over ``[B, T, F]`` counts ``B*T`` rows, never fewer than
  ``B``). Pass ``samples=`` when no layer sees each input exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields


@dataclass
class MacCounts:
    """Exact MAC counters of one or more UnIT forward calls (see the module docstring)."""

    total: int = 0
    zero_weight: int = 0
    zero_input: int = 0
    threshold: int = 0
    compares: int = 0
    divisions: int = 0
    samples: int = 0

    @property
    def skipped(self) -> int:
        """MACs not executed, whatever the reason."""
        return self.zero_weight + self.zero_input + self.threshold

    @property
    def executed(self) -> int:
        """MACs that ran (a multiply and an add each)."""
        return self.total - self.skipped

    @property
    def nonzero_pairs(self) -> int:
        """MACs with both operands nonzero: the ones the threshold decides about."""
        return self.threshold + self.executed

    def __add__(self, other: MacCounts) -> MacCounts:
        """More calls of the same layer(s): every field adds, ``samples`` included. To put
        DIFFERENT layers of one network together use :func:`combine_layers`."""
        if not isinstance(other, MacCounts):
            return NotImplemented
        return MacCounts(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                            for f in fields(self)})

    def __radd__(self, other):  # lets sum() start from 0
        if other == 0:
            return self
        return NotImplemented

    def to_json(self) -> dict:
        """Plain dict of ints: the stored fields plus ``skipped`` and ``executed``."""
        out = {k: int(v) for k, v in asdict(self).items()}
        out["skipped"] = self.skipped
        out["executed"] = self.executed
        return out

    @classmethod
    def from_json(cls, data: dict) -> MacCounts:
        """Inverse of :meth:`to_json` (derived keys are ignored)."""
        return cls(**{f.name: int(data.get(f.name, 0)) for f in fields(cls)})


def combine_layers(layers: Iterable[MacCounts], *, samples: int | None = None) -> MacCounts:
    """Counts of DIFFERENT layers of one network over the same inputs, as one network's counts.

    Every counter is summed; ``samples`` is the number of network inputs: ``samples`` when given,
    else the smallest nonzero ``samples`` among ``layers`` (0 when there is none). ``a + b`` is
    for more calls of the same layer (its ``samples`` add); see the module docstring.
    """
    layers = list(layers)
    for c in layers:
        if not isinstance(c, MacCounts):
            raise TypeError(f"combine_layers takes MacCounts, got {type(c).__name__}")
    out = {f.name: sum(getattr(c, f.name) for c in layers) for f in fields(MacCounts)
           if f.name != "samples"}
    if samples is None:
        nonzero = [c.samples for c in layers if c.samples > 0]
        samples = min(nonzero) if nonzero else 0
    return MacCounts(**out, samples=int(samples))
