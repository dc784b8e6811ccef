"""Batch-invariant greedy decoding: the same tokens for a prompt at any batch size, in any run.

`kernels.py` holds the Triton kernels (fixed reduction order per row), `reference.py` the same
functions in torch (the CPU path and the tests' oracle), `layout.py` the architectures whose
weights the decoder can read, and `decoder.py` the prefill and decode loop.
"""

from .decoder import Decoded, InvariantDecoder
from .layout import Unsupported, layout_of

__all__ = ["Decoded", "InvariantDecoder", "Unsupported", "layout_of"]
