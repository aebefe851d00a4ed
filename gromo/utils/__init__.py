"""GroMo-compatible utilities: ``tensor_statistic``, ``utils`` (devices, small helpers), ``tools``
(solves and conv helpers, wrapping gromo_kernels)."""
