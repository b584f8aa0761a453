"""leakjax: privacy attacks on federated learning in JAX/Flax.

Reimplements the benchmark of "Privacy Attack in Federated Learning is Not Easy:
An Experimental Study" (Zhu, Huang, Xie; https://arxiv.org/abs/2409.19301).
"""

from leakjax.types import ConfigError, DataError, NumericalError

__version__ = "0.1.0"

__all__ = ["ConfigError", "DataError", "NumericalError", "__version__"]
