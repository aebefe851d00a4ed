"""GroMo-compatible growing-module layer built on :mod:`gromo_kernels`.

This distribution provides the ``gromo`` import package and therefore replaces GroMo's own.
"""

__version__ = "0.1.0"
