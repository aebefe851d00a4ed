"""Pure-PyTorch path: the CPU backend and, in float64, a second reference."""
