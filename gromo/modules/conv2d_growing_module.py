"""GroMo's ``gromo.modules.conv2d_growing_module``: growing 2-D convolutions (TINY, TMLR 2024).

``Conv2dGrowingModule`` wraps an ``nn.Conv2d`` (weight (C_out, C, kh, kw), unfold feature order
``c·kh·kw + i·kw + j``, bias row last, D = C·kh·kw + b) and collects S (D, D), M (D, C_out) and
E (C_out, C_out). Two subclasses can grow the input channels (new neurons are channels of the
previous conv):

* ``RestrictedConv2dGrowingModule`` ("conv → centre-tap conv"): M₋₂ (D_p, C_out), P (D_p, D);
  S₋₂ is the previous layer's S; ω lives on the centre tap of this layer's kernel.
* ``FullConv2dGrowingModule`` ("conv → full k×k conv"): S₋₂ (D_p, D_p), M₋₂ (D_p, C_out·kk),
  P (kk, D_p, D) of its own; ω is a full kernel.

``Conv2dMergeGrowingModule`` joins convolutions (its input is the sum of their outputs).

Every statistic comes from gromo_kernels (``layer_statistics`` with kind "conv2d",
"conv2d_restricted" or "conv2d_full", one call per batch for all pending statistics, see
``gromo.modules.growing_module``). Neither the masked unfold B̂ (n, L, kk, D_p) of GroMo's Full
module nor the bordered unfold of the Restricted one is ever built for the statistics; the
properties ``masked_unfolded_prev_input``, ``mask_tensor_t``, ``bordered_unfolded_extended_prev_input``
and ``unfolded_extended_input`` still exist and are computed on demand.

Deliberate differences from GroMo:
* float64 and CUDA end to end: every constant (ones row, bordering kernel, mask) is built in the
  dtype/device of the tensors it meets.
* Caches GroMo never invalidates are keyed on what they depend on: the bordering kernel on D_p
  (the previous layer's input channels), kernel, dtype and device; the mask on the input size and
  the geometry; the input grid of the growth statistics is read from the stored tensors of the
  current batch, never from a cached size.
* Zero-width layers stay safe after surgery: the layer is a ``nn.Conv2d`` subclass whose forward
  handles 0 input or 0 output channels (GroMo patches the original object only, and rebuilt layers
  lose the patch). With 0 input channels the output is the bias (GroMo returns zeros, ignoring the
  bias, so a delta applied to that bias had no effect); the bias of such a layer starts at zero
  (torch leaves it uninitialised).
* ``layer_in_extension`` / ``layer_out_extension`` recreate the statistics with the correct declared
  shapes ``(C·kh·kw + b)`` (GroMo declares ``(C + b)·kh·kw`` and ``C + b``, which fail on the next
  update when kh·kw > 1); ``layer_out_extension`` also recreates E (its width changed).
* ``layer_of_tensor(..., force_bias=False)`` creates a bias iff one is given (GroMo creates a
  randomly initialised bias whenever ``use_bias``, which ``apply_change`` then rejects for an input
  extension); layers built from tensors skip torch's default initialisation (no RNG draw).
* ``out_width`` / ``out_height`` account for dilation (GroMo ignores it there). As in GroMo,
  ``out_width`` is the size along the first spatial dimension and ``out_height`` along the second.
"""

from gromo.modules._conv2d.full import FullConv2dGrowingModule
from gromo.modules._conv2d.layers import _ZeroWidthSafeConv2d  # noqa: F401 (the layer class checkpoints name)
from gromo.modules._conv2d.merge import Conv2dMergeGrowingModule
from gromo.modules._conv2d.module import Conv2dGrowingModule
from gromo.modules._conv2d.restricted import RestrictedConv2dGrowingModule

__all__ = [
    "Conv2dGrowingModule",
    "RestrictedConv2dGrowingModule",
    "FullConv2dGrowingModule",
    "Conv2dMergeGrowingModule",
]
