"""Export a (UnIT-calibrated) network to self-contained C99 in int16 fixed point, check it on the
host bit for bit against the Python fixed-point reference, and count its cycles on a simulated
MSP430 (``mspdebug sim``).

* :mod:`.fixed`: the Python int16 reference of the whole network (formats, arithmetic, UnIT);
* :mod:`.c_codegen`: one ``.c`` and one ``.h``, dense / zero-skipping / UnIT builds by macro;
* :mod:`.host`: compile with the system C compiler and run a split;
* :mod:`.msp430`: clang --target=msp430 + ld.lld + ``mspdebug sim``: cycles per layer.
"""

from .fixed import DIVISIONS, MODES, LayerWork, QLayer, QNet, quantize_model, run_fixed

__all__ = ["DIVISIONS", "MODES", "LayerWork", "QLayer", "QNet", "quantize_model", "run_fixed"]
