"""Growing fully-connected layers, split by job (the public path is ``gromo.modules.linear_growing_module``)."""
