"""Triton kernels and their launchers. Imported lazily, only when triton exists."""
