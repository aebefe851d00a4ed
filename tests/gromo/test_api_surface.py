"""API surface of the ``gromo`` package against GroMo's published signatures.

Every member is looked up at its documented module path; signatures are compared parameter by
parameter (name, order, kind, default — ``**kwargs`` names are free); properties must be properties,
methods methods, static methods static. The last tests sample documented error conditions not exercised by
the other test files.
"""

from __future__ import annotations

import importlib
import inspect
import typing
import warnings

import pytest
import torch
from torch import nn

from gromo.containers.growing_block import Conv2dGrowingBlock, LinearGrowingBlock, RestrictedConv2dGrowingBlock
from gromo.modules.conv2d_growing_module import (
    Conv2dGrowingModule,
    Conv2dMergeGrowingModule,
    FullConv2dGrowingModule,
    RestrictedConv2dGrowingModule,
)
from gromo.modules.growing_module import GrowingModule, SupportsExtendedForward
from gromo.modules.growing_normalisation import GrowingBatchNorm1d, GrowingBatchNorm2d, GrowingLayerNorm
from gromo.modules.linear_growing_module import LinearGrowingModule, LinearMergeGrowingModule
from gromo.utils import utils
from gromo.utils.tensor_statistic import TensorStatistic, TensorStatiticWithEstimationError

TS = "gromo.utils.tensor_statistic"
GM = "gromo.modules.growing_module"
LIN = "gromo.modules.linear_growing_module"
CONV = "gromo.modules.conv2d_growing_module"
NORM = "gromo.modules.growing_normalisation"
CONT = "gromo.containers.growing_container"
BLOCK = "gromo.containers.growing_block"
TOOLS = "gromo.utils.tools"
UTILS = "gromo.utils.utils"

# Signatures shared by several classes (GroMo's defaults).
_UPDATES_OPTIONS = ("numerical_threshold=1e-6, statistical_threshold=1e-3, maximum_added_neurons=None, "
                    "{update_previous}dtype=float32, {compute_delta}use_covariance=True, alpha_zero=False, "
                    "omega_zero=False, use_projection=True, ignore_singular_values=False, use_fisher=False")
COMPUTE_OPTIMAL_UPDATES = _UPDATES_OPTIONS.format(update_previous="update_previous=True, ",
                                                  compute_delta="compute_delta=True, ")
BLOCK_COMPUTE_OPTIMAL_UPDATES = _UPDATES_OPTIONS.format(update_previous="", compute_delta="compute_delta=True, ")
AUXILIARY_ALPHA_OMEGA = _UPDATES_OPTIONS.format(update_previous="", compute_delta="")
ADDED_PARAMETERS = _UPDATES_OPTIONS.format(update_previous="update_previous=True, ", compute_delta="")
SUB_SELECT = ("keep_neurons=None, threshold=None, sub_select_previous=True, zeros_if_not_enough=False, "
              "zeros_fan_in=True, zeros_fan_out=False")
CREATE_EXTENSIONS = ("extension_size, output_extension_size=None, input_extension_size=None, "
                     "output_extension_init='copy_uniform', input_extension_init='copy_uniform', "
                     "neuron_pairing=None, rescaling=None, noise_ratio=0.001")
APPLY_RESCALING = "rescaling=None, neuron_pairing=None, extension_size=None"
APPLY_PAIRING = "neuron_pairing=None, noise_ratio=0.001"
CONV_CTOR = ("in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, input_size=None, "
             "use_bias=True, post_layer_function=Identity(), extended_post_layer_function=None, "
             "previous_module=None, next_module=None, allow_growing=False, device=None, name=None, "
             "target_in_channels=None")
BN_CTOR = ("num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, device=None, "
           "dtype=None, name='growing_batch_norm'")

# kinds: ctor | method | static | either (method or static, compared without self) | function |
#        prop (read-only) | prop_rw (getter and setter) | prop_any (setter not checked).
# A trailing "own" in the kind ("method own") requires the member in the class's own __dict__
# (GroMo's overrides: inheriting the abstract base member would be a bug).
API = [
    # ---- TensorStatistic
    (TS, "TensorStatistic", None, "ctor", "shape, update_function, device=None, name=None"),
    (TS, "TensorStatistic", "update", "method", "**kwargs"),
    (TS, "TensorStatistic", "init", "method", ""),
    (TS, "TensorStatistic", "reset", "method", ""),
    (TS, "TensorStatistic", "__call__", "method", ""),
    (TS, "TensorStatistic", "__str__", "method", ""),
    (TS, "TensorStatiticWithEstimationError", None, "ctor",
     "shape, update_function, device=None, name=None, trace_precision=1e-3"),
    (TS, "TensorStatiticWithEstimationError", "error", "method own", ""),
    (TS, "TensorStatiticWithEstimationError", "reset", "method own", ""),
    (TS, "TensorStatiticWithEstimationError", "update", "method own", "**kwargs"),
    # ---- MergeGrowingModule
    (GM, "MergeGrowingModule", None, "ctor",
     "post_merge_function=Identity(), previous_modules=None, next_modules=None, allow_growing=False, "
     "tensor_s_shape=None, device=None, name=None"),
    *[(GM, "MergeGrowingModule", p, "prop", None) for p in (
        "input_volume", "output_volume", "number_of_successors", "number_of_predecessors", "pre_activity",
        "number_of_parameters")],
    (GM, "MergeGrowingModule", "grow", "method", ""),
    (GM, "MergeGrowingModule", "add_next_module", "method", "module"),
    (GM, "MergeGrowingModule", "add_previous_module", "method", "module"),
    (GM, "MergeGrowingModule", "set_next_modules", "method", "next_modules"),
    (GM, "MergeGrowingModule", "set_previous_modules", "method", "previous_modules"),
    (GM, "MergeGrowingModule", "update_size", "method", ""),
    (GM, "MergeGrowingModule", "sum_in_features", "method", "with_bias=False"),
    (GM, "MergeGrowingModule", "sum_out_features", "method", ""),
    (GM, "MergeGrowingModule", "forward", "method", "x"),
    (GM, "MergeGrowingModule", "projected_v_goal", "method", ""),
    *[(GM, "MergeGrowingModule", m, "method", "") for m in (
        "compute_s_update", "compute_previous_s_update", "compute_previous_m_update", "init_computation",
        "update_computation", "reset_computation")],
    (GM, "MergeGrowingModule", "delete_update", "method", "include_previous=False"),
    (GM, "MergeGrowingModule", "compute_optimal_delta", "method",
     "update=True, return_deltas=False, force_pseudo_inverse=False, dtype=float32"),
    (GM, "MergeGrowingModule", "update_scaling_factor", "method", "scaling_factor"),
    (GM, "MergeGrowingModule", "parameters", "method", "recurse=True"),
    # ---- GrowingModule
    (GM, "GrowingModule", None, "ctor",
     "layer, tensor_s_shape=None, tensor_m_shape=None, post_layer_function=Identity(), "
     "extended_post_layer_function=None, allow_growing=True, previous_module=None, next_module=None, "
     "device=None, name=None, target_in_neurons=None, initial_in_neurons=None"),
    *[(GM, "GrowingModule", p, "prop", None) for p in (
        "in_neurons", "in_features", "out_features", "input_volume", "output_volume", "weight", "bias",
        "activation_gradient", "input", "input_extended", "pre_activity", "tensor_s", "tensor_n",
        "new_neurons_fo_improvement", "first_order_improvement")],
    (GM, "GrowingModule", "input_size", "prop_rw", None),
    (GM, "GrowingModule", "tensor_s_growth", "prop_any", None),  # setting raises AttributeError
    (GM, "GrowingModule", "forward", "method", "x"),
    (GM, "GrowingModule", "extended_forward", "method",
     "x, x_ext=None, use_optimal_delta=True, use_extended_input=True, use_extended_output=True"),
    (GM, "GrowingModule", "update_input_size", "method",
     "input_size=None, compute_from_previous=False, force_update=True"),
    *[(GM, "GrowingModule", m, "method", "") for m in (
        "compute_s_update", "compute_cross_covariance_update", "compute_n_update",
        "compute_covariance_loss_gradient_update", "init_computation", "update_computation",
        "reset_computation", "missing_neurons", "number_of_parameters", "weights_statistics", "__del__")],
    (GM, "GrowingModule", "compute_m_update", "method", "desired_activation=None"),
    (GM, "GrowingModule", "compute_m_prev_update", "method", "desired_activation=None"),
    (GM, "GrowingModule", "projected_v_goal", "method", "input_vector"),
    (GM, "GrowingModule", "compute_optimal_delta", "method",
     "update=True, dtype=float32, force_pseudo_inverse=False, use_fisher=False"),
    (GM, "GrowingModule", "compute_optimal_updates", "method", COMPUTE_OPTIMAL_UPDATES),
    (GM, "GrowingModule", "_auxiliary_compute_alpha_omega", "method", AUXILIARY_ALPHA_OMEGA),
    (GM, "GrowingModule", "_compute_optimal_added_parameters", "method", ADDED_PARAMETERS),
    (GM, "GrowingModule", "layer_of_tensor", "method", "weight, bias=None, force_bias=True"),
    (GM, "GrowingModule", "add_parameters", "method", "**kwargs"),
    (GM, "GrowingModule", "layer_in_extension", "method", "weight"),
    (GM, "GrowingModule", "layer_out_extension", "method", "weight, bias=None"),
    (GM, "GrowingModule", "parameter_step", "method", "delta_weights, delta_biases=None"),
    (GM, "GrowingModule", "apply_change", "method",
     "scaling_factor=None, apply_previous=True, apply_delta=True, apply_extension=True, extension_size=None, "
     "optimal_delta_scaling=None, input_extension_scaling=None, output_extension_scaling=None"),
    (GM, "GrowingModule", "_apply_output_changes", "method", "scaling_factor=None, extension_size=0"),
    (GM, "GrowingModule", "sub_select_optimal_added_parameters", "method", SUB_SELECT),
    (GM, "GrowingModule", "_sub_select_added_output_dimension", "method", "keep_neurons, zeros_if_not_enough=False"),
    (GM, "GrowingModule", "scale_parameter_update", "method", "scale"),
    (GM, "GrowingModule", "scale_layer", "static", "layer, scale"),
    (GM, "GrowingModule", "scale_layer_extension", "method", "scale, scale_output, scale_input"),
    (GM, "GrowingModule", "normalize_optimal_updates", "method",
     "std_target=None, normalization_type='legacy_normalization', gradmax_scale=1.0"),
    (GM, "GrowingModule", "set_scaling_factor", "method", "factor"),
    (GM, "GrowingModule", "get_fan_in_from_layer", "method", "layer=None, num_neurons=None"),
    (GM, "GrowingModule", "create_layer_in_extension", "method", "extension_size"),
    (GM, "GrowingModule", "create_layer_out_extension", "method", "extension_size"),
    (GM, "GrowingModule", "create_layer_extensions", "method", CREATE_EXTENSIONS),
    (GM, "GrowingModule", "apply_rescaling", "method", APPLY_RESCALING),
    (GM, "GrowingModule", "apply_neuron_pairing", "method", APPLY_PAIRING),
    (GM, "GrowingModule", "copy_initialization_variance", "either",
     "tensor, reference_tensor, fan_in, distribution='uniform'"),
    (GM, "GrowingModule", "kaiming_initialization", "either",
     "tensor, reference_tensor, fan_in, distribution='uniform'"),
    # reference page (older GroMo name)
    (GM, "GrowingModule", "copy_uniform_initialization", "either", "tensor, reference_tensor, fan_in"),
    (GM, "GrowingModule", "number_of_neurons_to_add", "method",
     "method='fixed_proportional', number_of_growth_steps=1"),
    (GM, "GrowingModule", "complete_growth", "method", "extension_kwargs"),
    (GM, "GrowingModule", "parameters", "method", "recurse=True"),
    (GM, "GrowingModule", "delete_update", "method",
     "include_previous=True, delete_delta=True, delete_input=True, delete_output=False"),
    (GM, "GrowingModule", "__str__", "method", "verbose=0"),
    (GM, "SupportsExtendedForward", "extended_forward", "method", "x, x_ext"),
    # ---- LinearGrowingModule
    (LIN, "LinearGrowingModule", None, "ctor",
     "in_features, out_features, use_bias=True, post_layer_function=Identity(), "
     "extended_post_layer_function=None, previous_module=None, next_module=None, allow_growing=False, "
     "device=None, name=None, target_in_features=None"),
    *[(LIN, "LinearGrowingModule", p, "prop own", None) for p in (
        "in_features", "in_neurons", "out_features", "input_volume", "output_volume", "input_extended",
        "tensor_n")],
    *[(LIN, "LinearGrowingModule", m, "method own", "") for m in (
        "number_of_parameters", "compute_s_update", "compute_cross_covariance_update",
        "compute_covariance_loss_gradient_update", "compute_n_update")],
    (LIN, "LinearGrowingModule", "__str__", "method own", "verbose=0"),
    (LIN, "LinearGrowingModule", "compute_m_update", "method own", "desired_activation=None"),
    (LIN, "LinearGrowingModule", "compute_m_prev_update", "method own", "desired_activation=None"),
    (LIN, "LinearGrowingModule", "layer_of_tensor", "method own", "weight, bias=None, force_bias=True"),
    (LIN, "LinearGrowingModule", "add_parameters", "method own",
     "matrix_extension, bias_extension, added_in_features=0, added_out_features=0"),
    (LIN, "LinearGrowingModule", "layer_in_extension", "method own", "weight"),
    (LIN, "LinearGrowingModule", "layer_out_extension", "method own", "weight, bias=None"),
    (LIN, "LinearGrowingModule", "_compute_optimal_added_parameters", "method own", ADDED_PARAMETERS),
    (LIN, "LinearGrowingModule", "get_fan_in_from_layer", "method own", "layer=None, num_neurons=None"),
    (LIN, "LinearGrowingModule", "create_layer_in_extension", "method own", "extension_size"),
    (LIN, "LinearGrowingModule", "create_layer_out_extension", "method own", "extension_size"),
    # ---- LinearMergeGrowingModule (reference page)
    (LIN, "LinearMergeGrowingModule", None, "ctor",
     "post_merge_function=Identity(), previous_modules=None, next_modules=None, allow_growing=False, "
     "in_features=None, device=None, name=None"),
    *[(LIN, "LinearMergeGrowingModule", p, "prop own", None)
      for p in ("out_features", "input_volume", "output_volume")],
    (LIN, "LinearMergeGrowingModule", "set_next_modules", "method own", "next_modules"),
    (LIN, "LinearMergeGrowingModule", "set_previous_modules", "method own", "previous_modules"),
    *[(LIN, "LinearMergeGrowingModule", m, "method own", "") for m in (
        "construct_full_activity", "compute_previous_s_update", "compute_previous_m_update", "compute_s_update")],
    # ---- Conv2dGrowingModule and its growth schemes
    (CONV, "Conv2dGrowingModule", None, "ctor", CONV_CTOR),
    *[(CONV, "Conv2dGrowingModule", p, "prop own", None) for p in (
        "in_neurons", "in_channels", "out_channels", "dilation", "stride", "out_width", "out_height",
        "input_volume", "output_volume", "in_features", "out_features", "unfolded_extended_input")],
    (CONV, "Conv2dGrowingModule", "padding", "prop_rw own", None),
    (CONV, "Conv2dGrowingModule", "input_size", "prop_rw", None),
    *[(CONV, "Conv2dGrowingModule", m, "method own", "") for m in (
        "number_of_parameters", "compute_s_update", "compute_covariance_loss_gradient_update",
        "update_computation")],
    (CONV, "Conv2dGrowingModule", "__str__", "method own", "verbose=0"),
    (CONV, "Conv2dGrowingModule", "compute_m_update", "method own", "desired_activation=None"),
    (CONV, "Conv2dGrowingModule", "layer_of_tensor", "method own", "weight, bias=None, force_bias=True"),
    (CONV, "Conv2dGrowingModule", "layer_in_extension", "method own", "weight"),
    (CONV, "Conv2dGrowingModule", "layer_out_extension", "method own", "weight, bias=None"),
    (CONV, "Conv2dGrowingModule", "update_input_size", "method own",
     "input_size=None, compute_from_previous=False, force_update=True"),
    (CONV, "Conv2dGrowingModule", "get_fan_in_from_layer", "method own", "layer=None, num_neurons=None"),
    (CONV, "Conv2dGrowingModule", "create_layer_in_extension", "method own", "extension_size"),
    (CONV, "Conv2dGrowingModule", "create_layer_out_extension", "method own", "extension_size"),
    (CONV, "RestrictedConv2dGrowingModule", None, "ctor", CONV_CTOR),
    (CONV, "RestrictedConv2dGrowingModule", "linear_layer_of_tensor", "method own", "weight, bias=None"),
    (CONV, "RestrictedConv2dGrowingModule", "bordered_unfolded_extended_prev_input", "prop own", None),
    (CONV, "RestrictedConv2dGrowingModule", "tensor_n", "prop own", None),
    (CONV, "RestrictedConv2dGrowingModule", "compute_m_prev_update", "method own", "desired_activation=None"),
    (CONV, "RestrictedConv2dGrowingModule", "compute_cross_covariance_update", "method own", ""),
    (CONV, "RestrictedConv2dGrowingModule", "_compute_optimal_added_parameters", "method own", ADDED_PARAMETERS),
    (CONV, "FullConv2dGrowingModule", None, "ctor", CONV_CTOR),
    *[(CONV, "FullConv2dGrowingModule", p, "prop own", None) for p in (
        "mask_tensor_t", "masked_unfolded_prev_input", "tensor_n")],
    (CONV, "FullConv2dGrowingModule", "tensor_s_growth", "prop_any own", None),
    (CONV, "FullConv2dGrowingModule", "compute_m_prev_update", "method own", "desired_activation=None"),
    (CONV, "FullConv2dGrowingModule", "compute_s_growth_update", "method own", ""),
    (CONV, "FullConv2dGrowingModule", "compute_cross_covariance_update", "method own", ""),
    (CONV, "FullConv2dGrowingModule", "_compute_optimal_added_parameters", "method own", ADDED_PARAMETERS),
    (CONV, "Conv2dMergeGrowingModule", None, "ctor",
     "in_channels, input_size, next_kernel_size, post_merge_function=Identity(), reshape_function=Identity(), "
     "previous_modules=None, next_modules=None, allow_growing=False, input_volume=None, device=None, name=None"),
    *[(CONV, "Conv2dMergeGrowingModule", p, "prop own", None) for p in (
        "input_volume", "output_volume", "out_channels", "in_features", "out_features", "output_size", "padding",
        "stride", "dilation", "unfolded_extended_activity")],
    (CONV, "Conv2dMergeGrowingModule", "set_next_modules", "method own", "next_modules"),
    (CONV, "Conv2dMergeGrowingModule", "set_previous_modules", "method own", "previous_modules"),
    *[(CONV, "Conv2dMergeGrowingModule", m, "method own", "") for m in (
        "construct_full_activity", "compute_previous_s_update", "compute_previous_m_update", "compute_s_update",
        "update_size")],
    # ---- Containers
    (CONT, "GrowingContainer", None, "ctor", "in_features, out_features, device=None, name='GrowingContainer'"),
    (CONT, "GrowingContainer", "compute_optimal_delta", "method", "update=True, force_pseudo_inverse=False"),
    (CONT, "GrowingContainer", "select_best_update", "method", ""),
    (CONT, "GrowingContainer", "dummy_select_update", "method", "**kwargs"),  # GroMo's "()": superset, forwards verbose
    (CONT, "GrowingContainer", "select_update", "method", "layer_index, verbose=False"),
    (CONT, "GrowingContainer", "currently_updated_layer", "prop", None),
    (CONT, "GrowingContainer", "number_of_parameters", "method", ""),
    (CONT, "GrowingContainer", "update_size", "method", ""),
    (CONT, "GrowingContainer", "weights_statistics", "method", ""),
    (BLOCK, "GrowingBlock", None, "ctor",
     "first_layer, second_layer, in_features, out_features, pre_activation=Identity(), name='block', "
     "downsample=Identity(), device=None"),
    (BLOCK, "GrowingBlock", "set_default_values", "static",
     "activation=None, pre_activation=None, mid_activation=None, kwargs_layer=None, kwargs_first_layer=None, "
     "kwargs_second_layer=None"),
    (BLOCK, "GrowingBlock", "extended_forward", "method own", "x, mask=None"),
    (BLOCK, "GrowingBlock", "forward", "method own", "x"),
    *[(BLOCK, "GrowingBlock", m, "method own", "") for m in (
        "init_computation", "update_computation", "reset_computation", "missing_neurons")],
    (BLOCK, "GrowingBlock", "delete_update", "method own", "**kwargs"),
    (BLOCK, "GrowingBlock", "set_scaling_factor", "method own", "factor"),
    (BLOCK, "GrowingBlock", "compute_optimal_updates", "method own", BLOCK_COMPUTE_OPTIMAL_UPDATES),
    (BLOCK, "GrowingBlock", "apply_change", "method own",
     "extension_size=None, scaling_factor=None, apply_delta=True, apply_extension=True"),
    (BLOCK, "GrowingBlock", "sub_select_optimal_added_parameters", "method own", SUB_SELECT),
    (BLOCK, "GrowingBlock", "create_layer_extensions", "method own", CREATE_EXTENSIONS),
    (BLOCK, "GrowingBlock", "apply_rescaling", "method own", APPLY_RESCALING),
    (BLOCK, "GrowingBlock", "apply_neuron_pairing", "method own", APPLY_PAIRING),
    (BLOCK, "GrowingBlock", "normalize_optimal_updates", "method own", "**kwargs"),
    (BLOCK, "GrowingBlock", "number_of_neurons_to_add", "method own", "**kwargs"),
    (BLOCK, "GrowingBlock", "complete_growth", "method own", "**kwargs"),
    *[(BLOCK, "GrowingBlock", p, "prop own", None) for p in (
        "optimal_delta_layer", "hidden_features", "hidden_neurons", "eigenvalues_extension",
        "first_order_improvement")],
    (BLOCK, "GrowingBlock", "parameter_update_decrease", "prop_rw own", None),
    (BLOCK, "GrowingBlock", "scaling_factor", "prop_rw own", None),
    (BLOCK, "LinearGrowingBlock", None, "ctor",
     "in_features, out_features, hidden_features=0, target_hidden_features=None, activation=Identity(), "
     "pre_activation=None, mid_activation=None, pre_addition_function=Identity(), name='block', kwargs_layer=None, "
     "kwargs_first_layer=None, kwargs_second_layer=None, downsample=Identity(), device=None"),
    (BLOCK, "Conv2dGrowingBlock", None, "ctor",
     "in_channels, out_channels, kernel_size=None, hidden_channels=0, target_hidden_channels=None, activation=None, "
     "pre_activation=None, mid_activation=None, pre_addition_function=Identity(), name='conv_block', "
     "kwargs_layer=None, kwargs_first_layer=None, kwargs_second_layer=None, downsample=Identity(), "
     "growing_conv_type=RestrictedConv2dGrowingModule, device=None"),
    # ---- Growing normalisation
    *[(NORM, bn, None, "ctor", BN_CTOR) for bn in ("GrowingBatchNorm", "GrowingBatchNorm1d", "GrowingBatchNorm2d")],
    *[(NORM, bn, "grow", "method",
       "additional_features, new_weights=None, new_biases=None, new_running_mean=None, new_running_var=None")
      for bn in ("GrowingBatchNorm1d", "GrowingBatchNorm2d")],
    # GroMo writes extended_forward(x, x_ext); the default x_ext=None is a compatible superset.
    *[(NORM, norm, "extended_forward", "method", "x, x_ext=None")
      for norm in ("GrowingBatchNorm1d", "GrowingBatchNorm2d", "GrowingLayerNorm", "GrowingGroupNorm")],
    *[(NORM, norm, "get_growth_info", "method", "") for norm in ("GrowingBatchNorm1d", "GrowingLayerNorm",
                                                                  "GrowingGroupNorm")],
    (NORM, "GrowingBatchNorm2d", "extra_repr", "method", ""),
    (NORM, "GrowingBatchNorm2d", "_extend_parameter", "method",
     "param_name, additional_features, new_values, default_value_fn, device, as_parameter=True"),
    (NORM, "GrowingLayerNorm", "grow", "method", "additional_first_dim, new_weights=None, new_biases=None"),
    (NORM, "GrowingGroupNorm", "grow", "method",
     "additional_channels, new_weights=None, new_biases=None, new_num_groups=None"),
    # ---- tools
    (TOOLS, None, "optimal_delta", "function",
     "tensor_s, tensor_m, dtype=float32, force_pseudo_inverse=False, tensor_covariance_loss_gradient=None"),
    (TOOLS, None, "compute_optimal_added_parameters", "function",
     "matrix_s, matrix_n, numerical_threshold=1e-6, statistical_threshold=1e-3, maximum_added_neurons=None, "
     "alpha_zero=False, omega_zero=False, ignore_singular_values=False, matrix_covariance_loss_gradient=None"),
    # preferred_linalg_library: GroMo's extra keyword, accepted and ignored (a superset of GroMo's signature).
    (TOOLS, None, "sqrt_inverse_matrix_semi_positive", "function",
     "matrix, threshold=1e-5, preferred_linalg_library=None"),
    (TOOLS, None, "compute_output_shape_conv", "function", "input_shape, conv"),
    (TOOLS, None, "create_bordering_effect_weight", "function", "channels, convolution"),
    (TOOLS, None, "apply_border_effect_on_unfolded", "function",
     "unfolded_tensor, original_size, border_effect_conv, identity_weight=None"),  # GroMo's keyword names
    (TOOLS, None, "compute_mask_tensor_t", "function", "input_shape, conv"),  # GroMo's keyword names
    (TOOLS, None, "lecun_normal_", "function", "tensor"),
    # ---- utils (device helpers)
    (UTILS, None, "global_device", "function", ""),
    (UTILS, None, "set_device", "function", "device"),
    (UTILS, None, "reset_device", "function", ""),
    (UTILS, None, "get_correct_device", "function", "self, device"),
    (UTILS, None, "load_config", "function", ""),
    (UTILS, None, "torch_zeros", "function", "*size, **kwargs"),
    (UTILS, None, "torch_ones", "function", "*size, **kwargs"),
    (UTILS, None, "activation_fn", "function", "fn_name"),
    (UTILS, None, "compute_tensor_stats", "function", "tensor"),
]

_EVAL_NAMESPACE = {"Identity": nn.Identity, "float32": torch.float32,
                   "RestrictedConv2dGrowingModule": RestrictedConv2dGrowingModule}


def _expected_parameters(source: str) -> list[inspect.Parameter]:
    """The parameters of ``def f(<source>)``, defaults evaluated with Identity/float32 in scope."""
    namespace = dict(_EVAL_NAMESPACE)
    exec(f"def _expected({source}): pass", namespace)
    return list(inspect.signature(namespace["_expected"]).parameters.values())


def _same_default(actual, expected) -> bool:
    if isinstance(expected, nn.Module):  # a fresh Identity() never equals another instance
        return type(actual) is type(expected)
    if isinstance(expected, type):
        return actual is expected
    return type(actual) is type(expected) and actual == expected


def _assert_parameters(actual: list[inspect.Parameter], source: str, where: str) -> None:
    expected = _expected_parameters(source)
    assert [p.kind for p in actual] == [p.kind for p in expected], f"{where}: kinds {actual} != ({source})"
    for got, want in zip(actual, expected):
        if want.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            assert got.name == want.name, f"{where}: parameter {got.name!r}, documented {want.name!r}"
        assert (got.default is inspect.Parameter.empty) == (want.default is inspect.Parameter.empty), (
            f"{where}: {got.name} default presence differs from ({source})")
        if want.default is not inspect.Parameter.empty:
            assert _same_default(got.default, want.default), (
                f"{where}: {got.name}={got.default!r}, documented {want.default!r}")


def _entry_id(entry) -> str:
    module, owner, member, kind, _ = entry
    return f"{module.rsplit('.', 1)[1]}:{owner or ''}.{member or '__init__'}[{kind.split()[0]}]"


@pytest.mark.parametrize("entry", API, ids=[_entry_id(e) for e in API])
def test_member_matches_documented_signature(entry):
    module_path, owner_name, member, kind, source = entry
    module = importlib.import_module(module_path)
    base_kind, *flags = kind.split()
    if owner_name is None:  # module-level function, defined (not merely imported) there
        function = getattr(module, member)
        assert inspect.isfunction(function) and function.__module__ == module_path
        _assert_parameters(list(inspect.signature(function).parameters.values()), source, member)
        return
    owner = getattr(module, owner_name)
    assert inspect.isclass(owner), f"{module_path}.{owner_name} is not a class"
    where = f"{owner_name}.{member or '__init__'}"
    if base_kind == "ctor":
        _assert_parameters(list(inspect.signature(owner).parameters.values()), source, where)
        return
    raw = inspect.getattr_static(owner, member)
    if "own" in flags:
        assert member in vars(owner), f"{where} is inherited, the class must define it"
    if base_kind in ("prop", "prop_rw", "prop_any"):
        assert isinstance(raw, property), f"{where} must be a property, got {type(raw).__name__}"
        if base_kind != "prop_any":
            assert (raw.fset is not None) == (base_kind == "prop_rw"), f"{where}: setter presence"
        return
    if base_kind == "static":
        assert isinstance(raw, staticmethod), f"{where} must be a staticmethod"
        parameters = list(inspect.signature(raw.__func__).parameters.values())
    elif base_kind == "either" and isinstance(raw, staticmethod):
        parameters = list(inspect.signature(raw.__func__).parameters.values())
    else:
        assert inspect.isfunction(raw), f"{where} must be a plain method, got {type(raw).__name__}"
        parameters = list(inspect.signature(raw).parameters.values())
        assert parameters[0].name == "self", f"{where}: first parameter is not self"
        parameters = parameters[1:]
    _assert_parameters(parameters, source, where)


@pytest.mark.parametrize("module_path, owner_name", sorted({(e[0], e[1]) for e in API}, key=str))
def test_annotations_resolve(module_path, owner_name):
    """typing.get_type_hints (Sphinx, IDEs, validators) must resolve every annotation of the API."""
    module = importlib.import_module(module_path)
    owner = module if owner_name is None else getattr(module, owner_name)
    # A public class may be composed of mixins living in private modules: walk its MRO and keep the
    # functions defined at the public path or in a private gromo module (a "_" path component).
    namespaces = [vars(owner)] if owner_name is None else [vars(c) for c in inspect.getmro(owner)]
    functions = []
    for namespace in namespaces:
        for member in namespace.values():
            if inspect.isfunction(member):
                functions.append(member)
            elif isinstance(member, (staticmethod, classmethod)):
                functions.append(member.__func__)
            elif isinstance(member, property):
                functions.extend(f for f in (member.fget, member.fset) if f is not None)

    def composed_here(function) -> bool:
        path = function.__module__ or ""
        return path == module_path or (
            path.startswith("gromo.") and any(part.startswith("_") for part in path.split("."))
        )

    functions = [f for f in functions if composed_here(f)]
    assert functions
    for function in functions:
        typing.get_type_hints(function)


def test_number_of_parameters_is_a_property_on_merges_and_a_method_on_modules():
    first = LinearGrowingModule(3, 4, device="cpu")
    merge = LinearMergeGrowingModule(in_features=4, previous_modules=[first], device="cpu")
    assert merge.number_of_parameters == 0 and list(merge.parameters()) == []
    assert first.number_of_parameters() == 3 * 4 + 4
    conv = Conv2dGrowingModule(2, 5, (3, 2), use_bias=False, device="cpu")
    assert conv.number_of_parameters() == 2 * 5 * 3 * 2


def test_module_constants_and_class_literals():
    gm = importlib.import_module(GM)
    norm = importlib.import_module(NORM)
    assert gm.GRADIENT_COMPUTATION_EPSILON == 1e-5
    assert typing.get_origin(GrowingModule._KNOWN_RESCALING_STRATEGIES_TYPE) is typing.Literal
    assert typing.get_args(GrowingModule._KNOWN_RESCALING_STRATEGIES_TYPE) == (
        "default_vt", "vt_constraint_old_shape", "vt_constraint_new_shape")
    assert typing.get_args(GrowingModule._KNOWN_NEURON_PAIRINGS_TYPE) == ("vv_z_negz",)
    assert typing.get_args(norm.NormalizationType) == ("batch", "group", "layer")
    assert norm.base_norm_kwargs == {"eps": 1e-5, "momentum": 0.1, "affine": True, "track_running_stats": True,
                                     "num_groups": 1, "elementwise_affine": True, "bias": True}
    for typed_dict in (norm.NormKwargs, norm.CompleteNormKwargs):
        assert set(typed_dict.__annotations__) == set(norm.base_norm_kwargs)
    assert norm.CompleteNormKwargs.__required_keys__ == frozenset(norm.base_norm_kwargs)
    assert LinearGrowingModule._layer_type is nn.Linear and Conv2dGrowingModule._layer_type is nn.Conv2d
    assert isinstance(GrowingBatchNorm2d(2), SupportsExtendedForward)
    assert not isinstance(nn.ReLU(), SupportsExtendedForward)


def test_tensor_statistic_initial_state():
    stat = TensorStatistic((2, 2), lambda: (torch.ones(2, 2), 1))
    assert (stat.samples, stat.updated, stat._tensor, stat._shape, stat.name) == (0, True, None, (2, 2),
                                                                                   "TensorStatistic")
    assert str(stat) == "TensorStatistic tensor of shape (2, 2) with 0 samples"
    error = TensorStatiticWithEstimationError(None, lambda: (torch.ones(1), 1), name="E")
    assert (error._trace, error._batches, error._compute_trace, error._square_norm_sum) == (None, 0, True, 0)
    assert error.name == "E" and error.device is None


def test_growing_module_state_attributes():
    first = LinearGrowingModule(3, 4, device="cpu")
    second = LinearGrowingModule(4, 2, previous_module=first, device="cpu", target_in_features=6)
    for name in ("_tensor_s", "tensor_m", "tensor_m_prev", "cross_covariance", "covariance_loss_gradient"):
        assert isinstance(getattr(second, name), TensorStatistic), name
    for name in ("optimal_delta_layer", "extended_input_layer", "extended_output_layer", "delta_raw",
                 "parameter_update_decrease", "eigenvalues_extension", "next_module"):
        assert getattr(second, name) is None, name
    assert second.previous_module is first and isinstance(second.layer, nn.Linear)
    assert (second.store_input, second.store_pre_activity, second.target_in_neurons) == (False, False, 6)
    assert isinstance(second.post_layer_function, nn.Identity)
    for name in ("scaling_factor", "optimal_delta_scaling", "input_extension_scaling", "output_extension_scaling"):
        value = getattr(second, name)
        assert value.shape == (1,) and value.requires_grad and value.item() == 0.0, name
    assert second.tensor_s is second._tensor_s and second.tensor_s_growth is first.tensor_s
    merge = LinearMergeGrowingModule(in_features=4, previous_modules=[first], device="cpu")
    assert (merge.store_input, merge.store_activity, merge.use_bias, merge.total_in_features) == (0, 0, True, 4)
    assert merge.input is None and merge.activity is None and merge.in_features == 4
    assert merge.previous_modules == [first] and merge.next_modules == []
    assert (merge.out_features, merge.input_volume, merge.output_volume) == (4, 4, 4)
    for name in ("tensor_s", "previous_tensor_s", "previous_tensor_m"):
        assert isinstance(getattr(merge, name), TensorStatistic), name


def test_conv_module_attributes():
    conv = Conv2dGrowingModule(2, 3, 3, padding=(1, 0), input_size=(5, 6), device="cpu")
    assert conv.kernel_size == (3, 3) and isinstance(conv.kernel_size, tuple)
    assert (conv.padding, conv.stride, conv.dilation) == ((1, 0), (1, 1), (1, 1))
    assert (conv.out_width, conv.out_height, conv.in_features, conv.out_features) == (5, 4, 18, 3)
    conv.padding = 1
    assert conv.layer.padding == (1, 1)
    restricted = RestrictedConv2dGrowingModule(2, 3, 3, 1, 1, name="r", device="cpu")
    assert "bordering_weight" in restricted._non_persistent_buffers_set and restricted._name == "r"
    assert restricted.name == "RestrictedConv2dGrowingModule(r)"  # GroMo's composite name
    assert restricted.layer.padding == (1, 1)
    full = FullConv2dGrowingModule(2, 3, kernel_size=3, target_in_channels=5, device="cpu")
    assert full._mask_tensor_t is None and isinstance(full._tensor_s_growth, TensorStatistic)
    assert full.tensor_s_growth is full._tensor_s_growth and full.target_in_neurons == 5
    merge = Conv2dMergeGrowingModule(3, (4, 4), 3, device="cpu")
    assert (merge.in_channels, merge.input_size, merge.kernel_size, merge.use_bias) == (3, (4, 4), (3, 3), True)
    assert isinstance(merge.reshape_function, nn.Identity)
    assert (merge.in_features, merge.out_features, merge.out_channels, merge.input_volume) == (3, 3, 3, 48)
    assert merge.tensor_s._shape == (3 * 9 + 1, 3 * 9 + 1)


def test_block_alias_and_deprecated_property():
    with pytest.warns(DeprecationWarning, match="RestrictedConv2dGrowingBlock"):
        block = RestrictedConv2dGrowingBlock(2, 2, 3, hidden_channels=1, device="cpu")
    assert isinstance(block, Conv2dGrowingBlock)
    assert type(block.first_layer) is RestrictedConv2dGrowingModule
    assert type(block.second_layer) is RestrictedConv2dGrowingModule
    linear = LinearGrowingBlock(3, 3, hidden_features=2, device="cpu")
    with pytest.warns(DeprecationWarning, match="hidden_features"):
        assert linear.hidden_features == 2
    assert linear.hidden_neurons == 2 and linear.name == "block" and linear.activation_derivative == 1
    assert linear.second_layer.previous_module is linear.first_layer and linear.first_layer.next_module is None
    assert isinstance(linear.pre_activation, nn.Identity) and isinstance(linear.downsample, nn.Identity)
    assert (linear.in_features, linear.out_features) == (3, 3)


def test_normalisation_class_hierarchy():
    norm = importlib.import_module(NORM)
    from torch.nn.modules.batchnorm import _BatchNorm

    assert issubclass(norm.GrowingBatchNorm, _BatchNorm)
    for growing, torch_class in ((GrowingBatchNorm1d, nn.BatchNorm1d), (GrowingBatchNorm2d, nn.BatchNorm2d),
                                 (GrowingLayerNorm, nn.LayerNorm), (norm.GrowingGroupNorm, nn.GroupNorm)):
        assert issubclass(growing, torch_class), growing
    bn = GrowingBatchNorm2d(3, name="bn")
    assert bn.get_growth_info() == {"num_features": 3, "name": "bn"}


def test_device_helpers_round_trip():
    try:
        utils.set_device("meta")
        assert utils.global_device() == torch.device("meta")
        assert LinearGrowingModule(2, 3).weight.device == torch.device("meta")
        assert utils.get_correct_device(object(), "cpu") == torch.device("cpu")  # argument wins
    finally:
        utils.reset_device()
    assert utils.global_device() == torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ---- documented error conditions not exercised elsewhere --------------------------------------------

def _pair():
    first = LinearGrowingModule(3, 4, device="cpu")
    return first, LinearGrowingModule(4, 2, previous_module=first, device="cpu")


def _exotic_previous():
    module = LinearGrowingModule(3, 2, device="cpu")
    module.previous_module = nn.Linear(2, 3)
    return module


def _merge_before_unsupported_next():
    merge = Conv2dMergeGrowingModule(3, (4, 4), 3, device="cpu")
    merge.next_modules = [nn.Identity()]  # set_next_modules would reject it
    return merge


ERRORS = [
    ("auxiliary alpha/omega without previous", AssertionError, "previous",
     lambda: LinearGrowingModule(3, 2, device="cpu")._auxiliary_compute_alpha_omega()),
    ("rescaling needs a Growing previous", AssertionError, "previous",
     lambda: LinearGrowingModule(3, 2, device="cpu").apply_rescaling("default_vt")),
    ("pairing needs a Growing previous", AssertionError, "previous",
     lambda: LinearGrowingModule(3, 2, device="cpu").apply_neuron_pairing("vv_z_negz")),
    ("scale_layer_extension without input extension", ValueError, "extension",
     lambda: _pair()[1].scale_layer_extension(1.0, None, None)),
    ("update_computation with exotic previous", NotImplementedError, "Linear",
     lambda: _exotic_previous().update_computation()),
    ("reset_computation with exotic previous", NotImplementedError, "Linear",
     lambda: _exotic_previous().reset_computation()),
    ("compute_optimal_updates with exotic previous", NotImplementedError, "Linear",
     lambda: _exotic_previous().compute_optimal_updates()),
    ("apply_change with exotic previous", NotImplementedError, "Linear",
     lambda: _exotic_previous().apply_change()),
    ("Conv2dMerge stride with unsupported next", NotImplementedError, "stride",
     lambda: _merge_before_unsupported_next().stride),
    ("Conv2dMerge dilation with unsupported next", NotImplementedError, "dilation",
     lambda: _merge_before_unsupported_next().dilation),
    ("merge __str__ with negative verbose", ValueError, "verbose",
     lambda: LinearMergeGrowingModule(in_features=2, device="cpu").__str__(verbose=-1)),
    ("TensorStatistic non-integer shape", AssertionError, "shape",
     lambda: TensorStatistic((2.0, 2), lambda: (torch.ones(2, 2), 1))),
    ("GrowingModule allow_growing with a non-growing previous", AssertionError, "allow_growing",
     lambda: GrowingModule(nn.Linear(2, 2), previous_module=nn.Linear(2, 2), allow_growing=True, device="cpu")),
    ("conv update_input_size with a 3-D size", AssertionError, "2",
     lambda: Conv2dGrowingModule(2, 2, 3, device="cpu").update_input_size((2, 2, 2))),
    ("compute_output_shape_conv with string padding", AssertionError, "padding",
     lambda: importlib.import_module(TOOLS).compute_output_shape_conv((5, 5), nn.Conv2d(1, 1, 3, padding="same"))),
    ("lecun_normal_ on a 3-D tensor", ValueError, "tensor",
     lambda: importlib.import_module(TOOLS).lecun_normal_(torch.empty(2, 2, 2))),
    ("number_of_neurons_to_add without target", ValueError, "target",
     lambda: LinearGrowingModule(3, 2, device="cpu").number_of_neurons_to_add()),
    ("GrowingBatchNorm1d grow by zero", ValueError, "additional_features",
     lambda: GrowingBatchNorm1d(2).grow(0)),
    ("GrowingLayerNorm grow with mis-shaped biases", ValueError, "new_biases",
     lambda: GrowingLayerNorm(3).grow(2, new_biases=torch.zeros(3))),
]


@pytest.mark.parametrize("label, error, match, call", ERRORS, ids=[e[0] for e in ERRORS])
def test_documented_error(label, error, match, call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(error, match=match):
            call()


def test_input_property_errors_distinguish_not_stored_from_not_computed():
    module = LinearGrowingModule(3, 2, device="cpu")
    with pytest.raises(ValueError, match="store_input"):
        module.input
    module.store_input = True
    with pytest.raises(AssertionError, match="not been computed"):
        module.input
    module(torch.randn(4, 3))
    assert module.input.shape == (4, 3)


def test_activation_gradient_cache_is_cleared_through_the_documented_attribute():
    first = LinearGrowingModule(3, 4, post_layer_function=nn.ReLU(), device="cpu")
    second = LinearGrowingModule(4, 2, previous_module=first, device="cpu")
    assert second.activation_gradient.item() == 1.0
    first.post_layer_function = nn.Sigmoid()
    assert second.activation_gradient.item() == 1.0  # cached, as documented
    second._activation_gradient_previous_module = None
    assert second.activation_gradient.item() == pytest.approx(0.25)
