"""Models attacked in the benchmark of arXiv 2409.19301, by name.

``get(name, num_classes, input_shape)`` returns a :class:`Model` with pure ``init``, ``apply``
and ``features``; ``names()`` lists what is registered. Convolutions come in several
implementations (:mod:`leakjax.models.conv`); "auto" picks the fastest for the backend. Pooling,
torch-style initializers and their hash RNG are in :mod:`~leakjax.models.pooling`,
:mod:`~leakjax.models.initializers` and :mod:`~leakjax.models.hash_rng`.
"""

from leakjax.models.conv import IMPLS as CONV_IMPLS
from leakjax.models.registry import Model, get, names, options, param_count

__all__ = ["CONV_IMPLS", "Model", "get", "names", "options", "param_count"]
