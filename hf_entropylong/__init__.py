"""Long-context training data with model-verified long-range dependencies (EntropyLong).

Stages, one module each: `entropy` (where the model lacks information), `retrieval` (what might supply
it), `verify` (what really does), `pack` (units into exact-length sequences); `build` chains them.
`train` and `eval` hold the training and evaluation entry points.
"""

__version__ = "0.1.0"
