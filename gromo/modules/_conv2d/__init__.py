"""The parts of ``gromo.modules.conv2d_growing_module``, one job per file (import the public path)."""
