"""The growing-layer base classes, split by job (the public path is ``gromo.modules.growing_module``)."""
