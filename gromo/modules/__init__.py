"""GroMo-compatible growing modules (``growing_module``, ``linear_growing_module``,
``conv2d_growing_module``, ``growing_normalisation``)."""
