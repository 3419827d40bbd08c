"""qbc: behavior cloning with quantized actions.

Importing ``qbc`` registers the ``qbc/...`` Gymnasium environments.
"""

__version__ = "0.1.0"

from qbc import envs as _envs  # noqa: E402,F401  (registers the qbc/ environments)
