"""GroMo's message catalogue, pinned: for every catalogue site the package reaches, the exception
or warning type and (a substring of) GroMo's text. A refactor that rewords a message fails here.

Each row is (site, kind, type, GroMo text, action): ``kind`` is "raise" or "warn"; the text is
matched literally (``re.escape``) as a substring, so extra context may follow GroMo's words but
never replace them. An action for a "warn" row may raise after warning (the warning is what is
pinned).
"""

import re
import warnings

import pytest
import torch
from torch import nn

from gromo.containers.growing_block import (
    Conv2dGrowingBlock,
    LinearGrowingBlock,
)
from gromo.modules.conv2d_growing_module import (
    Conv2dGrowingModule,
    Conv2dMergeGrowingModule,
    FullConv2dGrowingModule,
    RestrictedConv2dGrowingModule,
)
from gromo.modules.growing_module import GrowingModule
from gromo.modules.growing_normalisation import (
    GrowingBatchNorm2d,
    GrowingGroupNorm,
    GrowingLayerNorm,
)
from gromo.modules.linear_growing_module import (
    LinearGrowingModule,
    LinearMergeGrowingModule,
)
from gromo.utils import tools
from gromo.utils.tensor_statistic import (
    TensorStatistic,
    TensorStatiticWithEstimationError,
)

CPU = "cpu"


def lin(i=3, o=2, **kwargs):
    return LinearGrowingModule(i, o, device=CPU, **kwargs)


def pair():
    first = lin(2, 3)
    second = lin(3, 2, previous_module=first)
    first.next_module = second
    return first, second


def conv(i=2, o=3, **kwargs):
    return Conv2dGrowingModule(i, o, 3, padding=1, device=CPU, **kwargs)


def conv_pair(kind=RestrictedConv2dGrowingModule):
    first = kind(2, 3, 3, padding=1, input_size=(4, 4), device=CPU)
    second = kind(3, 2, 3, padding=1, previous_module=first, input_size=(4, 4), device=CPU)
    first.next_module = second
    return first, second


def merge(in_features=3, **kwargs):
    return LinearMergeGrowingModule(in_features=in_features, device=CPU, **kwargs)


def conv_merge(**kwargs):
    return Conv2dMergeGrowingModule(3, (4, 4), 3, device=CPU, **kwargs)


def with_previous(module, previous):
    module.previous_module = previous
    return module


def call(function):
    """Run ``function`` and swallow the error it may raise after warning ("warn" rows)."""
    try:
        function()
    except Exception:  # noqa: BLE001 (the warning is what the row pins)
        pass


def _statistic_with_samples():
    statistic = TensorStatistic((2, 2), lambda: (torch.ones(3, 3), 1))
    statistic.updated = False
    return statistic


def _pending_input_extension(bias=False, scaling=None):
    first, second = pair()
    second.create_layer_extensions(2)
    if bias:
        second.extended_input_layer = nn.Linear(2, 2, bias=True)
    if scaling is not None:
        second.input_extension_scaling = scaling
    return first, second


def _deleted_extension_keeping_previous():
    first, second = pair()
    second.create_layer_extensions(2)
    second.delete_update(include_previous=False)


def _deleted_extension_without_previous():
    module = lin()
    module.extended_input_layer = nn.Linear(2, 2, bias=False)
    module.delete_update()


def _gradmax_module(weight=None, extension_weight=None, in_features=3):
    first = lin(2, in_features)
    second = lin(in_features, 2, previous_module=first)
    second.extended_input_layer = nn.Linear(2, 2, bias=False)
    if extension_weight is not None:
        holder = nn.Module()
        holder.weight = nn.Parameter(extension_weight)
        second.extended_input_layer = holder
    if weight is not None:
        second.layer.weight = nn.Parameter(weight)
    return second


def _pairing_module(out_rows=None, in_columns=None):
    first, second = pair()
    if out_rows is not None:
        first.extended_output_layer = nn.Linear(2, out_rows)
    if in_columns is not None:
        second.extended_input_layer = nn.Linear(in_columns, 2, bias=False)
    return second


def _merge_with_samples(attribute):
    module = merge()
    module.add_previous_module(lin(2, 3))
    getattr(module, attribute).samples = 1
    return module


def _m_prev_with_two_successors():
    module = merge()
    second = lin(3, 2, previous_module=module)
    module.set_next_modules([second, lin(3, 4, previous_module=module)])
    second.compute_m_prev_update()


def _growing_gradient_not_available():
    module = lin()
    module.store_pre_activity = True
    module(torch.randn(4, 3))
    module.compute_covariance_loss_gradient_update()


def _conv_merge_with_s_samples():
    module = conv_merge()
    module.tensor_s.samples = 1
    module.set_next_modules([])


def _input_size_change():
    module = conv(input_size=(4, 4))
    module.update_input_size((5, 5))


def _block_without_kernel():
    Conv2dGrowingBlock(2, 2, hidden_channels=1, device=CPU)


def _block_with_two_kernels():
    Conv2dGrowingBlock(2, 2, kernel_size=3, hidden_channels=1, kwargs_layer={"kernel_size": 3}, device=CPU)


LINEAR_TYPE = "<class 'torch.nn.modules.linear.Linear'>"
MERGE_TYPE = "<class 'gromo.modules.linear_growing_module.LinearMergeGrowingModule'>"

CATALOGUE = [
    # ----- gromo.utils.tensor_statistic
    ("TensorStatistic.__init__", "raise", AssertionError,
     "The shape must be a tuple of positive integers. <class 'tuple'>, (2, -1)",
     lambda: TensorStatistic((2, -1), lambda: None)),
    ("TensorStatistic.update", "raise", AssertionError,
     "The update tensor has a different size than the tensor statistic TensorStatistic : _shape=(2, 2), "
     "update.size()=torch.Size([3, 3])",
     lambda: _statistic_with_samples().update()),
    ("TensorStatistic.__call__", "raise", ValueError, "The tensor statistic has not been computed.",
     lambda: TensorStatistic((2, 2), lambda: None)()),
    ("TensorStatiticWithEstimationError.error", "raise", AssertionError, "The trace has not been computed yet.",
     lambda: TensorStatiticWithEstimationError((2, 2), lambda: None).error()),
    # ----- gromo.utils.tools
    ("sqrt_inverse_matrix_semi_positive square", "raise", AssertionError, "The input matrix must be square.",
     lambda: tools.sqrt_inverse_matrix_semi_positive(torch.ones(2, 3))),
    ("sqrt_inverse_matrix_semi_positive symmetric", "raise", AssertionError, "The input matrix must be symmetric.",
     lambda: tools.sqrt_inverse_matrix_semi_positive(torch.tensor([[1.0, 2.0], [0.0, 1.0]]))),
    ("sqrt_inverse_matrix_semi_positive NaN (fails symmetric, as GroMo)", "raise", AssertionError,
     "The input matrix must be symmetric.",
     lambda: tools.sqrt_inverse_matrix_semi_positive(torch.diag(torch.tensor([1.0, float("nan")])))),
    ("optimal_delta dtype", "raise", AssertionError,
     "Both input tensors must have the same dtype, got tensor_s.dtype=torch.float32 and "
     "tensor_m.dtype=torch.float64",
     lambda: tools.optimal_delta(torch.eye(2), torch.ones(2, 2, dtype=torch.float64))),
    ("optimal_delta NaN", "raise", AssertionError, "The optimal delta should not contain NaN values.",
     lambda: tools.optimal_delta(torch.eye(2), torch.full((2, 2), float("nan")))),
    ("optimal_delta pseudo-inverse", "warn", UserWarning,
     "Using the pseudo-inverse for the computation of the optimal delta.",
     lambda: tools.optimal_delta(torch.ones(3, 3), torch.ones(3, 2))),
    ("compute_optimal_added_parameters S square", "raise", AssertionError, "The input matrix S must be square.",
     lambda: tools.compute_optimal_added_parameters(torch.ones(4, 3), torch.ones(4, 3))),
    ("compute_optimal_added_parameters S/N", "raise", AssertionError,
     "The input matrices S and N must have compatible shapes.(got matrix_s.shape=torch.Size([5, 5]) and "
     "matrix_n.shape=torch.Size([4, 3]))",
     lambda: tools.compute_optimal_added_parameters(torch.eye(5), torch.ones(4, 3))),
    ("compute_optimal_added_parameters symmetric", "warn", UserWarning,
     "Warning: The input matrix S is not symmetric.\nMax difference: 1.00e+00,\n% of non-zero elements: 50.00%",
     lambda: tools.compute_optimal_added_parameters(torch.tensor([[2.0, 1.0], [0.0, 2.0]]), torch.ones(2, 2))),
    ("compute_optimal_added_parameters E square", "raise", AssertionError, "The input matrix E must be square.",
     lambda: tools.compute_optimal_added_parameters(
         torch.eye(4), torch.ones(4, 3), matrix_covariance_loss_gradient=torch.ones(3, 2))),
    ("compute_optimal_added_parameters E/N", "raise", AssertionError,
     "The input matrices E and N must have compatible shapes.(got matrix_covariance_loss_gradient.shape="
     "torch.Size([4, 4]) and matrix_n.shape=torch.Size([4, 3]))",
     lambda: tools.compute_optimal_added_parameters(
         torch.eye(4), torch.ones(4, 3), matrix_covariance_loss_gradient=torch.eye(4))),
    ("compute_output_shape_conv", "raise", AssertionError, "The padding must be an integer.",
     lambda: tools.compute_output_shape_conv((4, 4), nn.Conv2d(1, 1, 3, padding="same"))),
    ("create_bordering_effect_weight channels", "raise", ValueError,
     "Input 'channels' must be a positive integer.",
     lambda: tools.create_bordering_effect_weight(0, nn.Conv2d(1, 1, 3))),
    ("create_bordering_effect_weight convolution", "raise", TypeError,
     "Input 'convolution' must be a torch.nn.Conv2d instance.",
     lambda: tools.create_bordering_effect_weight(1, nn.Linear(1, 1))),
    ("apply_border_effect_on_unfolded tensor", "raise", TypeError, "Input 'unfolded_tensor' must be a torch.Tensor",
     lambda: tools.apply_border_effect_on_unfolded([1], (2, 2), nn.Conv2d(1, 1, 3))),
    ("apply_border_effect_on_unfolded conv", "raise", AssertionError,
     "'border_effect_conv' must be a torch.nn.Conv2d instance.",
     lambda: tools.apply_border_effect_on_unfolded(torch.ones(1, 1, 4), (2, 2), nn.Linear(1, 1))),
    ("apply_border_effect_on_unfolded size", "raise", AssertionError,
     "'original_size' must be a tuple of positive integers.",
     lambda: tools.apply_border_effect_on_unfolded(torch.ones(1, 1, 4), (2, 0), nn.Conv2d(1, 1, 3))),
    ("lecun_normal_", "raise", ValueError,
     "Only supports Linear (2D) or Conv2d (4D) weights, got tensor with shape torch.Size([3])",
     lambda: tools.lecun_normal_(torch.ones(3))),
    # ----- gromo.modules.growing_module: MergeGrowingModule
    ("MergeGrowingModule.__str__", "raise", ValueError, "verbose=-1 is not a valid value.",
     lambda: merge().__str__(verbose=-1)),
    ("MergeGrowingModule.compute_optimal_delta S", "raise", AssertionError,
     "No previous tensor S for LinearMergeGrowingModule.", lambda: merge().compute_optimal_delta()),
    ("MergeGrowingModule.update_scaling_factor previous", "raise", TypeError,
     f"Previous module must be a GrowingModule, got {LINEAR_TYPE}",
     lambda: setattr(m := merge(), "previous_modules", [nn.Linear(1, 1)]) or m.update_scaling_factor(1.0)),
    ("MergeGrowingModule.update_scaling_factor next", "raise", TypeError,
     f"Next module must be a GrowingModule, got {LINEAR_TYPE}",
     lambda: setattr(m := merge(), "next_modules", [nn.Linear(1, 1)]) or m.update_scaling_factor(1.0)),
    # ----- GrowingModule
    ("GrowingModule.__init__ no S shape", "warn", UserWarning,
     "The tensor S shape is not provided.It will automatically be determined but we encourage to provide it.",
     lambda: GrowingModule(nn.Linear(2, 2), allow_growing=False, device=CPU)),
    ("GrowingModule.__init__ S 2D", "raise", AssertionError, "The shape of the tensor S must be 2D.",
     lambda: GrowingModule(nn.Linear(2, 2), tensor_s_shape=(2, 2, 2), allow_growing=False, device=CPU)),
    ("GrowingModule.__init__ S square", "raise", AssertionError, "The tensor S must be square.",
     lambda: GrowingModule(nn.Linear(2, 2), tensor_s_shape=(2, 3), allow_growing=False, device=CPU)),
    ("GrowingModule.__init__ S/M", "raise", AssertionError,
     "The input matrices S and M must have compatible shapes.(got tensor_s_shape=(2, 2) and tensor_m_shape=(3, 2))",
     lambda: GrowingModule(nn.Linear(2, 2), tensor_s_shape=(2, 2), tensor_m_shape=(3, 2),
                           allow_growing=False, device=CPU)),
    ("GrowingModule.__init__ deprecated", "warn", DeprecationWarning,
     "The `extended_post_layer_function` parameter is deprecated and will be removed in a future version. "
     "Implement `extended_forward` on the modules used in `post_layer_function` instead (see "
     "`SupportsExtendedForward`).",
     lambda: lin(extended_post_layer_function=nn.Identity())),
    ("GrowingModule.__init__ allow_growing", "raise", AssertionError,
     f"to grow previous_module must be an instance of GrowingModuleor MergeGrowingModule, but got {LINEAR_TYPE}",
     lambda: lin(allow_growing=True, previous_module=nn.Linear(1, 1))),
    ("GrowingModule.activation_gradient previous", "raise", NotImplementedError,
     f"The computation of the activation gradient is not implemented yet for {LINEAR_TYPE} as previous module.",
     lambda: with_previous(lin(), nn.Linear(1, 1)).activation_gradient),
    ("GrowingModule.activation_gradient unknown", "warn", UserWarning,
     "The computation of the activation gradient does not work necessarily with "
     "<class 'torch.nn.modules.activation.Softplus'>. We will try to compute it numerically.",
     lambda: lin(3, 2, previous_module=lin(2, 3, post_layer_function=nn.Softplus())).activation_gradient),
    ("GrowingModule.activation_gradient Sequential", "warn", UserWarning,
     "The computation of the activation gradient does not work necessarily with "
     "<class 'torch.nn.modules.activation.Softplus'> in a Sequential. We will try to compute it numerically.",
     lambda: lin(3, 2, previous_module=lin(2, 3, post_layer_function=nn.Sequential(nn.Softplus())))
     .activation_gradient),
    ("GrowingModule.__str__", "raise", ValueError, "verbose=-1 is not a valid value.",
     lambda: lin().__str__(verbose=-1)),
    ("GrowingModule.__setattr__ tensor", "raise", AssertionError, "optimal_delta_scaling must be a scalar tensor.",
     lambda: setattr(lin(), "optimal_delta_scaling", torch.ones(2))),
    ("GrowingModule.__setattr__ scalar", "raise", AssertionError, "optimal_delta_scaling must be a scalar.",
     lambda: setattr(lin(), "optimal_delta_scaling", "0.3")),
    ("GrowingModule.__setattr__ previous", "raise", TypeError,
     f"Previous module must be a GrowingModule or MergeGrowingModule, got {LINEAR_TYPE}",
     lambda: setattr(with_previous(lin(), nn.Linear(1, 1)), "scaling_factor", 1.0)),
    ("GrowingModule.extended_forward x_ext missing", "raise", ValueError,
     "x_ext must be provided got None for LinearGrowingModule.As the input is extended, an extension is needed.",
     lambda: setattr(m := lin(), "extended_input_layer", nn.Linear(1, 2)) or m.extended_forward(torch.ones(1, 3))),
    ("GrowingModule.extended_forward x_ext ignored", "warn", UserWarning,
     "x_ext must be None got tensor([[1.]]) for LinearGrowingModule. As the input is not extended, no extension "
     "is needed.",
     lambda: lin().extended_forward(torch.ones(1, 3), torch.ones(1, 1))),
    ("GrowingModule.input_size", "raise", ValueError, "The input size of the layer LinearGrowingModule is not defined.",
     lambda: lin().input_size),
    ("GrowingModule.input not stored", "raise", ValueError, "The input is not stored.", lambda: lin().input),
    ("GrowingModule.input not computed", "raise", AssertionError,
     "The input is not stored. Apparently it was not computed yet.",
     lambda: setattr(m := lin(), "store_input", True) or m.input),
    ("GrowingModule.input no previous", "raise", AssertionError,
     "A previous module is needed to store the input.Otherwise _internal_store_input must be set to True.",
     lambda: setattr(m := lin(), "store_input", True) or setattr(m, "_internal_store_input", False) or m.input),
    ("GrowingModule.pre_activity not stored", "raise", ValueError,
     "The pre-activity is not stored for LinearGrowingModule.", lambda: lin().pre_activity),
    ("GrowingModule.pre_activity not computed", "raise", AssertionError,
     "The pre-activity is not stored. Apparently it was not computed yet.",
     lambda: setattr(m := lin(), "store_pre_activity", True) or m.pre_activity),
    ("GrowingModule.pre_activity no next", "raise", AssertionError,
     "A next module is needed to store the input.Otherwise _internal_store_pre_activity must be set to True.",
     lambda: setattr(m := lin(), "store_pre_activity", True) or setattr(m, "_internal_store_pre_activity", False)
     or m.pre_activity),
    ("GrowingModule.projected_v_goal", "raise", AssertionError,
     "The optimal delta layer is not computed.Therefore the projected gradient cannot be computed.",
     lambda: lin().projected_v_goal(torch.ones(1, 3))),
    ("GrowingModule.tensor_s_growth no previous", "raise", ValueError,
     "No previous module for LinearGrowingModule. Thus S growth is not defined.", lambda: lin().tensor_s_growth),
    ("GrowingModule.tensor_s_growth merge", "raise", NotImplementedError,
     "S growth is not implemented for module preceded by an MergeGrowingModule. (error in LinearGrowingModule)",
     lambda: lin(previous_module=merge()).tensor_s_growth),
    ("GrowingModule.tensor_s_growth other", "raise", NotImplementedError,
     f"S growth is not implemented yet for {LINEAR_TYPE} as previous module.",
     lambda: with_previous(lin(), nn.Linear(1, 1)).tensor_s_growth),
    ("GrowingModule.tensor_s_growth setter", "raise", AttributeError,
     "You tried to set tensor_s_growth of a GrowingModule (name=LinearGrowingModule).This is not allowed because "
     "tensor_s_growth refers to the previous module's tensor_s, not the current module's tensor_s.",
     lambda: setattr(lin(), "tensor_s_growth", None)),
    ("GrowingModule._sub_select_added_output_dimension", "raise", AssertionError,
     "The layer LinearGrowingModule should have an extended output layer to sub-select the output dimension.",
     lambda: lin()._sub_select_added_output_dimension(1)),
    ("GrowingModule.sub_select_optimal_added_parameters eigenvalues", "raise", AssertionError,
     "The eigenvalues of the extension should be computed before sub-selecting the optimal added parameters "
     "for LinearGrowingModule.",
     lambda: lin().sub_select_optimal_added_parameters(1)),
    ("GrowingModule.sub_select_optimal_added_parameters zeros", "raise", AssertionError,
     "At least one of zeros_fan_in or zeros_fan_out must be True if zeros_if_not_enough is True.",
     lambda: setattr(m := lin(), "eigenvalues_extension", torch.ones(2)) or m.sub_select_optimal_added_parameters(
         1, zeros_if_not_enough=True, zeros_fan_in=False, zeros_fan_out=False)),
    ("GrowingModule.sub_select_optimal_added_parameters no previous", "raise", ValueError,
     "No previous module for LinearGrowingModule. Therefore new neurons cannot be sub-selected.",
     lambda: setattr(m := lin(), "eigenvalues_extension", torch.ones(2)) or m.sub_select_optimal_added_parameters(1)),
    ("GrowingModule.sub_select_optimal_added_parameters connection", "raise", NotImplementedError,
     "The sub-selection of the optimal added parameters is not implemented yet for a connection from "
     "<class 'gromo.modules.conv2d_growing_module.Conv2dGrowingModule'> to "
     "<class 'gromo.modules.linear_growing_module.LinearGrowingModule'>.",
     lambda: setattr(m := with_previous(lin(), conv()), "eigenvalues_extension", torch.ones(2))
     or m.sub_select_optimal_added_parameters(1)),
    ("GrowingModule.sub_select_optimal_added_parameters merge", "raise", NotImplementedError,
     f"The sub-selection of the optimal added parameters is not implemented yet for {MERGE_TYPE} as previous "
     "module.",
     lambda: setattr(m := lin(previous_module=merge()), "eigenvalues_extension", torch.ones(2))
     or m.sub_select_optimal_added_parameters(1)),
    ("GrowingModule._apply_output_changes scaling", "warn", UserWarning,
     "Scaling factor 0.25 is different from the one used during the extended_forward",
     lambda: lin()._apply_output_changes(scaling_factor=0.25)),
    ("GrowingModule._apply_output_changes no extension", "raise", AssertionError,
     "The layer LinearGrowingModule has no output extension but an extension of size 2 was requested.",
     lambda: lin()._apply_output_changes(extension_size=2)),
    ("GrowingModule.apply_change bias", "raise", AssertionError, "The bias of the input extension must be null.",
     lambda: _pending_input_extension(bias=True)[1].apply_change(scaling_factor=1.0, extension_size=2)),
    ("GrowingModule.apply_change null scaling", "warn", UserWarning,
     "input_extension_scaling is null. The input extension will have no effect.",
     lambda: call(lambda: _pending_input_extension(scaling=0.0)[1].apply_change())),
    ("GrowingModule.apply_change extension size", "raise", AssertionError,
     "We need to determine the size of the extension but it was not given as parameter nor could be "
     "automatically determined as eigenvalues_extension is None(Error occurred in LinearGrowingModule)",
     lambda: _pending_input_extension()[1].apply_change(scaling_factor=1.0)),
    ("GrowingModule.apply_change no extension", "raise", ValueError,
     "The layer LinearGrowingModule has no input extension but an extension of size 2 was requested.",
     lambda: pair()[1].apply_change(extension_size=2)),
    ("GrowingModule._auxiliary_compute_alpha_omega", "raise", AssertionError,
     "No previous module for LinearGrowingModule.Therefore neuron addition is not possible.",
     lambda: lin()._auxiliary_compute_alpha_omega()),
    ("GrowingModule.first_order_improvement", "raise", AssertionError,
     "The first order improvement is not computed. Use compute_optimal_delta before.",
     lambda: lin().first_order_improvement),
    ("GrowingModule.delete_update type", "raise", TypeError,
     f"Unexpected type for previous_module of LinearGrowingModulegot {LINEAR_TYPE} instead of GrowingModule or "
     "MergeGrowingModule.",
     lambda: with_previous(lin(), nn.Linear(1, 1)).delete_update()),
    ("GrowingModule.delete_update previous kept", "warn", UserWarning,
     "The extended_input_layer of LinearGrowingModule has been deleted. However, the extended_output_layer "
     "associated stored in the previous module named LinearGrowingModule has not been deleted.This may lead to "
     "errors when using extended_forward.",
     _deleted_extension_keeping_previous),
    ("GrowingModule.delete_update no previous", "warn", UserWarning,
     "The extended_input_layer of LinearGrowingModule has been deleted.However, no previous module is associated "
     "with this layer.Therefore, no extended_output_layer has been deleted.This is not supposed to happen as to "
     "grow a layer a previous module is needed.",
     _deleted_extension_without_previous),
    ("GrowingModule.scale_layer_extension scale", "raise", AssertionError,
     "scale can't be None if scale_input or scale_output is None.",
     lambda: lin().scale_layer_extension(None, None, 1.0)),
    ("GrowingModule.scale_layer_extension extensions", "raise", ValueError,
     "Cannot scale layer extension as one of the extensions is None.",
     lambda: lin().scale_layer_extension(1.0, None, None)),
    ("GrowingModule.normalize_optimal_updates gradmax_scale", "raise", ValueError,
     "gradmax_scale must be positive, got -1.0.",
     lambda: lin().normalize_optimal_updates(normalization_type="gradmax_normalization", gradmax_scale=-1.0)),
    ("GrowingModule.normalize_optimal_updates gradmax layers", "raise", ValueError,
     "gradmax_normalization requires extended_input_layer and layer with weights.",
     lambda: lin().normalize_optimal_updates(normalization_type="gradmax_normalization")),
    ("GrowingModule.normalize_optimal_updates gradmax extension dims", "warn", UserWarning,
     "gradmax_normalization: extension weight has no reducible dimensions, skipping.",
     lambda: _gradmax_module(extension_weight=torch.ones(3)).normalize_optimal_updates(
         normalization_type="gradmax_normalization")),
    ("GrowingModule.normalize_optimal_updates gradmax layer dims", "warn", UserWarning,
     "gradmax_normalization: layer weight has no reducible dimensions, skipping.",
     lambda: _gradmax_module(weight=torch.ones(3)).normalize_optimal_updates(
         normalization_type="gradmax_normalization")),
    ("GrowingModule.normalize_optimal_updates gradmax no neurons", "warn", UserWarning,
     "gradmax_normalization: no existing neurons to compute reference norm, skipping.",
     lambda: _gradmax_module(in_features=0).normalize_optimal_updates(normalization_type="gradmax_normalization")),
    ("GrowingModule.normalize_optimal_updates gradmax zero target", "warn", UserWarning,
     "gradmax_normalization: target norm is zero (all existing weights are zero), skipping.",
     lambda: _gradmax_module(weight=torch.zeros(2, 3)).normalize_optimal_updates(
         normalization_type="gradmax_normalization")),
    ("GrowingModule.normalize_optimal_updates std_target auto", "raise", AssertionError,
     "Cannot determine std_target automatically as the layer has no weights and there is no extended_input_layer "
     "to get the number of input features from.",
     lambda: lin(0, 2).normalize_optimal_updates()),
    ("GrowingModule.normalize_optimal_updates std_target", "raise", AssertionError,
     "std_target must be a positive float.", lambda: lin().normalize_optimal_updates(std_target=-1.0)),
    ("GrowingModule.normalize_optimal_updates match_extending_layer", "raise", ValueError,
     "match_extending_layer requires a previous GrowingModule with a .layer attribute.",
     lambda: lin().normalize_optimal_updates(normalization_type="match_extending_layer")),
    ("GrowingModule.normalize_optimal_updates equalize_extensions", "raise", ValueError,
     "Cannot use equalize_extensions normalization as there is no previous module.",
     lambda: lin().normalize_optimal_updates(normalization_type="equalize_extensions")),
    ("GrowingModule.normalize_optimal_updates type", "raise", ValueError,
     "normalization_type must be one of ['equalize_second_layer', 'equalize_extensions', 'match_extending_layer', "
     "'weird_normalization', 'legacy_normalization', 'gradmax_normalization'], got bad instead.",
     lambda: lin().normalize_optimal_updates(normalization_type="bad")),
    ("GrowingModule.apply_rescaling strategy", "raise", ValueError, "Unknown rescaling strategy 'bad'. Available:",
     lambda: lin().apply_rescaling("bad")),
    ("GrowingModule.apply_rescaling previous", "raise", AssertionError,
     "apply_rescaling requires a GrowingModule as previous_module, got <class 'NoneType'>.",
     lambda: lin().apply_rescaling("default_vt", extension_size=2)),
    ("GrowingModule.apply_neuron_pairing name", "raise", ValueError, "Unknown neuron pairing 'bad'. Available:",
     lambda: lin().apply_neuron_pairing("bad")),
    ("GrowingModule.apply_neuron_pairing previous", "raise", AssertionError,
     "apply_neuron_pairing requires a GrowingModule as previous_module, got <class 'NoneType'>.",
     lambda: lin().apply_neuron_pairing("vv_z_negz")),
    ("GrowingModule.apply_neuron_pairing output extension", "raise", RuntimeError,
     "Cannot apply neuron pairing: previous module has no extended_output_layer.",
     lambda: _pairing_module().apply_neuron_pairing("vv_z_negz")),
    ("GrowingModule.apply_neuron_pairing odd output", "raise", ValueError,
     "apply_neuron_pairing requires an even-sized output extension, got dh=3.",
     lambda: _pairing_module(out_rows=3).apply_neuron_pairing("vv_z_negz")),
    ("GrowingModule.apply_neuron_pairing input extension", "raise", RuntimeError,
     "Cannot apply neuron pairing: current module has no extended_input_layer.",
     lambda: _pairing_module(out_rows=2).apply_neuron_pairing("vv_z_negz")),
    ("GrowingModule.apply_neuron_pairing odd input", "raise", ValueError,
     "apply_neuron_pairing requires an even-sized input extension, got dh_in=3.",
     lambda: _pairing_module(out_rows=2, in_columns=3).apply_neuron_pairing("vv_z_negz")),
    ("GrowingModule.kaiming_initialization", "raise", ValueError,
     "Unknown distribution 'bad', expected 'uniform' or 'normal'.",
     lambda: lin().kaiming_initialization(torch.ones(2), None, 2, distribution="bad")),
    ("GrowingModule.copy_initialization_variance", "raise", ValueError,
     "Unknown distribution 'bad', expected 'uniform' or 'normal'.",
     lambda: lin().copy_initialization_variance(torch.ones(2), None, 2, distribution="bad")),
    ("GrowingModule.create_layer_extensions previous", "raise", AssertionError,
     "The layer LinearGrowingModule has no previous module.Therefore, neuron addition is not possible.",
     lambda: lin().create_layer_extensions(2)),
    ("GrowingModule.create_layer_extensions pairing", "raise", ValueError,
     "neuron_pairing='vv_z_negz' requires an even extension_size, got 3.",
     lambda: pair()[1].create_layer_extensions(3, neuron_pairing="vv_z_negz")),
    ("GrowingModule.create_layer_extensions init", "raise", ValueError,
     "Unknown initialization method 'bad'. Available methods are: ['copy_uniform', 'copy_normal', 'kaiming', "
     "'kaiming_normal', 'zeros'].",
     lambda: pair()[1].create_layer_extensions(2, input_extension_init="bad")),
    ("GrowingModule.missing_neurons", "raise", ValueError,
     "Target in neurons is not set, cannot compute missing neurons.", lambda: lin().missing_neurons()),
    ("GrowingModule.number_of_neurons_to_add target", "raise", ValueError,
     "Target in neurons is not set, cannot compute neurons to add.", lambda: lin().number_of_neurons_to_add()),
    ("GrowingModule.number_of_neurons_to_add initial", "raise", ValueError,
     "Initial in neurons is not set, cannot compute neurons to add.",
     lambda: setattr(m := lin(), "target_in_neurons", 5) or setattr(m, "_initial_in_neurons", None)
     or m.number_of_neurons_to_add()),
    ("GrowingModule.number_of_neurons_to_add method", "raise", ValueError, "Unknown method: bad.",
     lambda: setattr(m := lin(), "target_in_neurons", 5) or setattr(m, "_initial_in_neurons", 3)
     or m.number_of_neurons_to_add(method="bad")),
    # ----- gromo.modules.linear_growing_module
    ("LinearMergeGrowingModule.set_next_modules non-empty", "warn", UserWarning,
     "You are setting the next modules of LinearMergeGrowingModule with a non-empty tensor S.",
     lambda: (setattr((m := merge()).tensor_s, "samples", 1), m.set_next_modules([lin(3, 1)]))),
    ("LinearMergeGrowingModule.set_next_modules features", "raise", AssertionError,
     "The output features of LinearMergeGrowingModule (3) must match the input features of the next modules. "
     "Found [4].",
     lambda: merge().set_next_modules([lin(4, 2)])),
    ("LinearMergeGrowingModule.set_previous_modules S", "warn", UserWarning,
     "You are setting the previous modules of LinearMergeGrowingModule with a non-empty previous tensor S.",
     lambda: _merge_with_samples("previous_tensor_s").set_previous_modules([lin(2, 3)])),
    ("LinearMergeGrowingModule.set_previous_modules M", "warn", UserWarning,
     "You are setting the previous modules of LinearMergeGrowingModule with a non-empty previous tensor M.",
     lambda: _merge_with_samples("previous_tensor_m").set_previous_modules([lin(2, 3)])),
    ("LinearMergeGrowingModule.set_previous_modules type", "raise", TypeError,
     "The previous modules must be LinearGrowingModule instances or MergeGrowingModule).",
     lambda: merge().set_previous_modules([nn.Linear(2, 3)])),
    ("LinearMergeGrowingModule.set_previous_modules volume", "raise", ValueError,
     "The input features must match the output volume of the previous modules.",
     lambda: merge().set_previous_modules([lin(2, 4)])),
    ("LinearMergeGrowingModule.construct_full_activity", "raise", AssertionError,
     "No previous modules for LinearMergeGrowingModule.", lambda: merge().construct_full_activity()),
    ("LinearMergeGrowingModule.compute_s_update", "raise", AssertionError,
     "The input must be stored to compute the update of S. (error in LinearMergeGrowingModule",
     lambda: merge().compute_s_update()),
    ("LinearGrowingModule.compute_m_prev_update no previous", "raise", ValueError,
     "No previous module for LinearGrowingModule. Thus M_{-2} is not defined.", lambda: lin().compute_m_prev_update()),
    ("LinearGrowingModule.compute_m_prev_update successors", "warn", UserWarning,
     "The previous module has multiple successors.", lambda: call(_m_prev_with_two_successors)),
    ("LinearGrowingModule.compute_m_prev_update other", "raise", NotImplementedError,
     f"The computation of M_{{-2}} is not implemented yet for {LINEAR_TYPE} as previous module.",
     lambda: with_previous(lin(), nn.Linear(1, 1)).compute_m_prev_update()),
    ("LinearGrowingModule.compute_cross_covariance_update no previous", "raise", ValueError,
     "No previous module for LinearGrowingModule. Thus P is not defined.",
     lambda: lin().compute_cross_covariance_update()),
    ("LinearGrowingModule.compute_cross_covariance_update other", "raise", NotImplementedError,
     f"The computation of P is not implemented yet for {LINEAR_TYPE} as previous module.",
     lambda: with_previous(lin(), nn.Linear(1, 1)).compute_cross_covariance_update()),
    ("LinearGrowingModule.compute_covariance_loss_gradient_update stored", "raise", AssertionError,
     "The pre-activity must be stored to compute the update of the gradient covariance. (error in "
     "LinearGrowingModule)",
     lambda: lin().compute_covariance_loss_gradient_update()),
    ("LinearGrowingModule.compute_covariance_loss_gradient_update gradient", "raise", AssertionError,
     "The gradient of the pre-activity must be available to compute the update of the gradient covariance. "
     "(error in LinearGrowingModule",
     _growing_gradient_not_available),
    ("LinearGrowingModule.compute_n_update", "raise", TypeError, "The next module must be a LinearGrowingModule.",
     lambda: lin().compute_n_update()),
    ("LinearGrowingModule.tensor_n", "raise", AssertionError,
     "The optimal delta should be computed before computing N for LinearGrowingModule.", lambda: lin().tensor_n),
    ("LinearGrowingModule.layer_of_tensor", "raise", AssertionError,
     "The new layer should have a bias (bias is not None=False) if and only if the main layer bias (use_bias "
     "=True) is not None.",
     lambda: lin().layer_of_tensor(torch.ones(2, 3))),
    ("LinearGrowingModule.add_parameters both", "raise", AssertionError,
     "Cannot add input and output features at the same time",
     lambda: lin().add_parameters(None, None, added_in_features=1, added_out_features=1)),
    ("LinearGrowingModule.add_parameters in", "raise", AssertionError,
     "matrix_extension should have shape (2, 1), but got torch.Size([3, 1])",
     lambda: lin().add_parameters(torch.ones(3, 1), None, added_in_features=1)),
    ("LinearGrowingModule.add_parameters out", "raise", AssertionError,
     "matrix_extension should have shape (1, 3), but got torch.Size([1, 2])",
     lambda: lin().add_parameters(torch.ones(1, 2), None, added_out_features=1)),
    ("LinearGrowingModule.add_parameters bias", "raise", AssertionError,
     "bias_extension should have shape (1,), but got torch.Size([2])",
     lambda: lin().add_parameters(torch.ones(1, 3), torch.ones(2), added_out_features=1)),
    ("LinearGrowingModule.add_parameters warning", "warn", UserWarning,
     "The size of LinearGrowingModule has been changed to (4, 2) but it is up to the user to change the connected "
     "layers.",
     lambda: lin().add_parameters(None, None, added_in_features=1)),
    ("LinearGrowingModule.layer_in_extension", "raise", AssertionError,
     "weight.shape[0]=3 should be equal to out_features=2", lambda: lin().layer_in_extension(torch.ones(3, 1))),
    ("LinearGrowingModule.layer_out_extension weight", "raise", AssertionError,
     "weight.shape[1]=2 should be equal to in_features=3", lambda: lin().layer_out_extension(torch.ones(1, 2))),
    ("LinearGrowingModule.layer_out_extension bias", "raise", AssertionError,
     "The bias of the extension should be provided because the layer LinearGrowingModule has a bias",
     lambda: lin().layer_out_extension(torch.ones(1, 3))),
    ("LinearGrowingModule.layer_out_extension bias shape", "raise", AssertionError,
     "bias.shape[0]=2 should be equal to weight.shape[0]=1",
     lambda: lin().layer_out_extension(torch.ones(1, 3), torch.ones(2))),
    ("LinearGrowingModule._compute_optimal_added_parameters no previous", "raise", ValueError,
     "No previous module for LinearGrowingModule. Thus the optimal added parameters cannot be computed.",
     lambda: lin()._compute_optimal_added_parameters()),
    ("LinearGrowingModule._compute_optimal_added_parameters other", "raise", NotImplementedError,
     f"The computation of the optimal added parameters is not implemented yet for {MERGE_TYPE} as previous module.",
     lambda: lin(previous_module=merge())._compute_optimal_added_parameters()),
    ("LinearGrowingModule.get_fan_in_from_layer layer", "raise", AssertionError,
     "The layer should be a torch.nn.Linear but got <class 'torch.nn.modules.conv.Conv2d'>.",
     lambda: lin().get_fan_in_from_layer(nn.Conv2d(1, 1, 1))),
    ("LinearGrowingModule.get_fan_in_from_layer neither", "raise", AssertionError,
     "Either layer or num_neurons should be provided.", lambda: lin().get_fan_in_from_layer()),
    # ----- gromo.modules.conv2d_growing_module
    ("Conv2dMergeGrowingModule.input_volume", "warn", UserWarning,
     "Cannot derive the number of features of Conv2dMergeGrowingModule without setting at least one previous module",
     lambda: Conv2dMergeGrowingModule(3, None, 3, device=CPU).input_volume),
    ("Conv2dMergeGrowingModule.padding", "warn", UserWarning,
     "Cannot derive the padding of Conv2dMergeGrowingModule without setting at least one next module",
     lambda: conv_merge().padding),
    ("Conv2dMergeGrowingModule.stride", "warn", UserWarning,
     "Cannot derive the stride of Conv2dMergeGrowingModule without setting at least one next module",
     lambda: conv_merge().stride),
    ("Conv2dMergeGrowingModule.dilation", "warn", UserWarning,
     "Cannot derive the dilation of Conv2dMergeGrowingModule without setting at least one next module",
     lambda: conv_merge().dilation),
    ("Conv2dMergeGrowingModule.set_next_modules non-empty", "warn", UserWarning,
     "You are setting the next modules of Conv2dMergeGrowingModule with a non-empty tensor S.",
     _conv_merge_with_s_samples),
    ("Conv2dMergeGrowingModule.set_next_modules kernel", "raise", AssertionError,
     "Kernel size of next Conv2d modules (5, 5) must match this module's kernel_size (3, 3) (error in "
     "Conv2dMergeGrowingModule)",
     lambda: conv_merge().set_next_modules([Conv2dGrowingModule(3, 2, 5, device=CPU)])),
    ("Conv2dMergeGrowingModule.set_next_modules channels", "raise", AssertionError,
     "Next module input channels 2 should match out_channels=3",
     lambda: conv_merge().set_next_modules([Conv2dGrowingModule(2, 2, 3, device=CPU)])),
    ("Conv2dMergeGrowingModule.set_next_modules features", "raise", AssertionError,
     "Next module input features 5 should match output_volume=48", lambda: conv_merge().set_next_modules([lin(5, 2)])),
    ("Conv2dMergeGrowingModule.set_next_modules type", "raise", NotImplementedError,
     "All next modules must be instances of Conv2dGrowingModule, Conv2dMergeGrowingModule, LinearGrowingModule or "
     "LinearMergeGrowingModule (error in Conv2dMergeGrowingModule).",
     lambda: conv_merge().set_next_modules([nn.Identity()])),
    ("Conv2dMergeGrowingModule.set_previous_modules type", "raise", TypeError,
     "The previous modules must be Conv2dGrowingModule or Conv2dMergeGrowingModule.",
     lambda: conv_merge().set_previous_modules([lin(2, 3)])),
    ("Conv2dMergeGrowingModule.set_previous_modules channels", "raise", ValueError,
     "The input channels must match the output channels of the previous modules.",
     lambda: conv_merge().set_previous_modules([conv(2, 4, input_size=(4, 4))])),
    ("Conv2dMergeGrowingModule.set_previous_modules volume", "raise", ValueError,
     "The output volume of the previous modules 12 should match the input volume input_volume=48.",
     lambda: conv_merge().set_previous_modules([Conv2dGrowingModule(2, 3, 3, input_size=(4, 4), device=CPU)])),
    ("Conv2dMergeGrowingModule.construct_full_activity", "raise", AssertionError,
     "No previous modules for Conv2dMergeGrowingModule.", lambda: conv_merge().construct_full_activity()),
    ("Conv2dMergeGrowingModule.compute_s_update", "raise", AssertionError,
     "The activity must be stored to compute the update of S. (error in Conv2dMergeGrowingModule)",
     lambda: conv_merge().compute_s_update()),
    ("Conv2dGrowingModule.layer_of_tensor bias", "raise", AssertionError,
     "The new layer should have a bias (bias is not None=False) if and only if the main layer bias (use_bias "
     "=True) is not None.",
     lambda: conv().layer_of_tensor(torch.ones(3, 2, 3, 3))),
    ("Conv2dGrowingModule.layer_of_tensor kernel", "raise", AssertionError,
     "weight.shape[2 + i]=5 should be equal to layer.kernel_size[i]=3",
     lambda: conv().layer_of_tensor(torch.ones(3, 2, 5, 5), torch.ones(3))),
    ("Conv2dGrowingModule.layer_in_extension", "raise", AssertionError,
     "weight.shape[0]=4 should be equal to out_channels=3", lambda: conv().layer_in_extension(torch.ones(4, 1, 3, 3))),
    ("Conv2dGrowingModule.layer_in_extension kernel", "raise", AssertionError,
     "weight.shape[2 + i]=1 should be equal to layer.kernel_size[i]=3",
     lambda: conv().layer_in_extension(torch.ones(3, 1, 1, 1))),
    ("Conv2dGrowingModule.layer_out_extension weight", "raise", AssertionError,
     "weight.shape[1]=4 should be equal to in_channels=2",
     lambda: conv().layer_out_extension(torch.ones(1, 4, 3, 3))),
    ("Conv2dGrowingModule.layer_out_extension bias shape", "raise", AssertionError,
     "bias.shape[0]=2 should be equal to weight.shape[0]=1",
     lambda: conv().layer_out_extension(torch.ones(1, 2, 3, 3), torch.ones(2))),
    ("Conv2dGrowingModule.layer_out_extension bias", "raise", AssertionError,
     "The bias of the extension should be provided because the layer has a bias",
     lambda: conv().layer_out_extension(torch.ones(1, 2, 3, 3))),
    ("Conv2dGrowingModule.layer_out_extension no bias", "warn", UserWarning,
     "The bias of the extension should not be provided because the layer has no bias.",
     lambda: conv(use_bias=False).layer_out_extension(torch.ones(1, 2, 3, 3), torch.ones(1))),
    ("Conv2dGrowingModule.compute_m_update", "raise", AssertionError,
     "The gradient of the pre-activity must be a torch.Tensor (error in Conv2dGrowingModule).",
     lambda: setattr(m := conv(), "store_pre_activity", True) or m(torch.ones(1, 2, 4, 4)) is None
     or m.compute_m_update()),
    ("Conv2dGrowingModule.compute_covariance_loss_gradient_update stored", "raise", AssertionError,
     "The pre-activity must be stored to compute the update of the gradient covariance. (error in "
     "Conv2dGrowingModule)",
     lambda: conv().compute_covariance_loss_gradient_update()),
    ("Conv2dGrowingModule.compute_covariance_loss_gradient_update gradient", "raise", AssertionError,
     "The gradient of the pre-activity must be a torch.Tensor (error in Conv2dGrowingModule).",
     lambda: setattr(m := conv(), "store_pre_activity", True) or m(torch.ones(1, 2, 4, 4)) is None
     or m.compute_covariance_loss_gradient_update()),
    ("Conv2dGrowingModule.update_input_size change", "warn", UserWarning,
     "The input size of the layer Conv2dGrowingModule has changed from (4, 4) to (5, 5).This may lead to errors if "
     "the size of the tensor statistics and of the mask tensor T are not updated.",
     _input_size_change),
    ("Conv2dGrowingModule.update_input_size shape", "raise", AssertionError,
     "The input size should be a tuple of two integers, but got new_size=(1, 2, 3).",
     lambda: conv().update_input_size((1, 2, 3))),
    ("Conv2dGrowingModule.input_size", "raise", ValueError,
     "The input size of the layer Conv2dGrowingModule is not defined.", lambda: conv().input_size),
    ("Conv2dGrowingModule.get_fan_in_from_layer layer", "raise", AssertionError,
     f"The layer should be a torch.nn.Conv2d but got {LINEAR_TYPE}.",
     lambda: conv().get_fan_in_from_layer(nn.Linear(1, 1))),
    ("Conv2dGrowingModule.get_fan_in_from_layer neither", "raise", AssertionError,
     "Either layer or num_neurons should be provided.", lambda: conv().get_fan_in_from_layer()),
    ("RestrictedConv2dGrowingModule.linear_layer_of_tensor bias", "raise", AssertionError,
     "The new layer should have a bias (bias is not None=False) if and only if the main layer bias (use_bias "
     "=True) is not None.",
     lambda: conv_pair()[1].linear_layer_of_tensor(torch.ones(2, 1))),
    ("RestrictedConv2dGrowingModule.linear_layer_of_tensor dims", "raise", AssertionError,
     "weight should have 2 or 4 dimensions, but got weight.dim()=3.",
     lambda: conv_pair()[1].linear_layer_of_tensor(torch.ones(2, 1, 1), torch.ones(2))),
    ("RestrictedConv2dGrowingModule.linear_layer_of_tensor shape", "raise", AssertionError,
     "weight should have 2 dimensions or the last two dimensions should be (1, 1), but got "
     "weight.shape=torch.Size([2, 1, 3, 3]).",
     lambda: conv_pair()[1].linear_layer_of_tensor(torch.ones(2, 1, 3, 3), torch.ones(2))),
    ("RestrictedConv2dGrowingModule.bordered_unfolded_extended_prev_input", "raise", ValueError,
     "Cannot compute the bordered unfolded input without a previous module for RestrictedConv2dGrowingModule.",
     lambda: RestrictedConv2dGrowingModule(2, 3, 3, device=CPU).bordered_unfolded_extended_prev_input),
    ("RestrictedConv2dGrowingModule.compute_m_prev_update no previous", "raise", ValueError,
     "No previous module for RestrictedConv2dGrowingModule. Thus M_{-2} is not defined.",
     lambda: RestrictedConv2dGrowingModule(2, 3, 3, device=CPU).compute_m_prev_update()),
    ("RestrictedConv2dGrowingModule.compute_m_prev_update linear", "raise", NotImplementedError,
     "TODO: implement M_prev for LinearGrowingModule",
     lambda: RestrictedConv2dGrowingModule(2, 3, 3, previous_module=lin(3, 2), device=CPU).compute_m_prev_update()),
    ("RestrictedConv2dGrowingModule.compute_m_prev_update linear merge", "raise", NotImplementedError,
     "TODO: implement M_prev for LinearMergeGrowingModule",
     lambda: RestrictedConv2dGrowingModule(2, 3, 3, previous_module=merge(), device=CPU).compute_m_prev_update()),
    ("RestrictedConv2dGrowingModule.compute_m_prev_update conv merge", "raise", NotImplementedError,
     "TODO: implement this",
     lambda: RestrictedConv2dGrowingModule(3, 3, 3, previous_module=conv_merge(), device=CPU).compute_m_prev_update()),
    ("RestrictedConv2dGrowingModule.compute_cross_covariance_update no previous", "raise", ValueError,
     "No previous module for RestrictedConv2dGrowingModule. Thus the cross covariance is not defined.",
     lambda: RestrictedConv2dGrowingModule(2, 3, 3, device=CPU).compute_cross_covariance_update()),
    ("RestrictedConv2dGrowingModule.compute_cross_covariance_update linear", "raise", NotImplementedError,
     "TODO: implement cross cov for LinearGrowingModule",
     lambda: RestrictedConv2dGrowingModule(2, 3, 3, previous_module=lin(3, 2), device=CPU)
     .compute_cross_covariance_update()),
    ("RestrictedConv2dGrowingModule.compute_cross_covariance_update linear merge", "raise", NotImplementedError,
     "TODO: implement cross cov for LinearMergeGrowingModule",
     lambda: RestrictedConv2dGrowingModule(2, 3, 3, previous_module=merge(), device=CPU)
     .compute_cross_covariance_update()),
    ("RestrictedConv2dGrowingModule.tensor_n", "raise", AssertionError,
     "The optimal delta should be computed before the tensor N for RestrictedConv2dGrowingModule.",
     lambda: conv_pair()[1].tensor_n),
    ("RestrictedConv2dGrowingModule._compute_optimal_added_parameters linear", "raise", NotImplementedError,
     "TODO: should we implement Lin -> Conv",
     lambda: RestrictedConv2dGrowingModule(2, 3, 3, previous_module=lin(3, 2), device=CPU)
     ._compute_optimal_added_parameters()),
    ("RestrictedConv2dGrowingModule._compute_optimal_added_parameters linear merge", "raise", NotImplementedError,
     "TODO: should we implement Lin Add -> Conv",
     lambda: RestrictedConv2dGrowingModule(2, 3, 3, previous_module=merge(), device=CPU)
     ._compute_optimal_added_parameters()),
    ("RestrictedConv2dGrowingModule._compute_optimal_added_parameters conv merge", "raise", NotImplementedError,
     "TODO: implement this: Conv Add -> Conv",
     lambda: RestrictedConv2dGrowingModule(3, 3, 3, previous_module=conv_merge(), device=CPU)
     ._compute_optimal_added_parameters()),
    ("FullConv2dGrowingModule.masked_unfolded_prev_input", "raise", ValueError,
     "No previous module for FullConv2dGrowingModule.Therefore the previous masked unfolded activation is not "
     "defined.",
     lambda: FullConv2dGrowingModule(2, 3, 3, device=CPU).masked_unfolded_prev_input),
    ("FullConv2dGrowingModule.compute_m_prev_update no previous", "raise", ValueError,
     "No previous module for FullConv2dGrowingModule. Thus M_{-2} is not defined.",
     lambda: FullConv2dGrowingModule(2, 3, 3, device=CPU).compute_m_prev_update()),
    ("FullConv2dGrowingModule.compute_cross_covariance_update no previous", "raise", ValueError,
     "No previous module for FullConv2dGrowingModule. Thus the cross covariance is not defined.",
     lambda: FullConv2dGrowingModule(2, 3, 3, device=CPU).compute_cross_covariance_update()),
    ("FullConv2dGrowingModule.tensor_n", "raise", AssertionError,
     "The optimal delta should be computed before the tensor N for FullConv2dGrowingModule.",
     lambda: conv_pair(FullConv2dGrowingModule)[1].tensor_n),
    ("FullConv2dGrowingModule._compute_optimal_added_parameters fisher", "raise", NotImplementedError,
     "use_fisher=True is not supported for FullConv2dGrowingModule because the output dimension of the SVD target "
     "is out_channels * k_h * k_w, which does not match the (out_channels, out_channels) shape of "
     "covariance_loss_gradient.",
     lambda: conv_pair(FullConv2dGrowingModule)[1]._compute_optimal_added_parameters(use_fisher=True)),
    # ----- gromo.modules.growing_normalisation
    ("GrowingBatchNorm.grow", "raise", ValueError, "additional_features must be positive, got 0",
     lambda: GrowingBatchNorm2d(3, device=CPU).grow(0)),
    ("GrowingLayerNorm.grow", "raise", ValueError, "additional_first_dim must be positive, got -1",
     lambda: GrowingLayerNorm(3, device=CPU).grow(-1)),
    ("GrowingGroupNorm.grow positive", "raise", ValueError, "additional_channels must be positive, got 0",
     lambda: GrowingGroupNorm(2, 4, device=CPU).grow(0)),
    ("GrowingGroupNorm.grow divisible", "raise", ValueError,
     "After growth: num_channels (5) must be divisible by num_groups (2).",
     lambda: GrowingGroupNorm(2, 4, device=CPU).grow(1)),
    # ----- gromo.containers.growing_block
    ("GrowingBlock.__init__", "raise", AssertionError,
     "Incompatible dimensions: in_features (3) must match out_features (4) or downsample (Identity()) must be a "
     "non-identity module.",
     lambda: LinearGrowingBlock(3, 4, device=CPU)),
    ("GrowingBlock.__str__", "raise", ValueError, "verbose must be a non-negative integer.",
     lambda: LinearGrowingBlock(3, 3, device=CPU).__str__(verbose=-1)),
    ("GrowingBlock.hidden_features", "warn", DeprecationWarning,
     "hidden_features is deprecated, use hidden_neurons instead.",
     lambda: LinearGrowingBlock(3, 3, device=CPU).hidden_features),
    ("GrowingBlock.parameter_update_decrease", "raise", TypeError,
     "parameter_update_decrease must be a float or a torch.Tensor.",
     lambda: setattr(LinearGrowingBlock(3, 3, device=CPU), "parameter_update_decrease", "x")),
    ("GrowingBlock.sub_select_optimal_added_parameters", "raise", AssertionError,
     "No optimal added parameters computed.",
     lambda: LinearGrowingBlock(3, 3, device=CPU).sub_select_optimal_added_parameters(1)),
    ("Conv2dGrowingBlock.__init__ kernel", "raise", ValueError, "kernel_size must be specified for conv_block.",
     _block_without_kernel),
    ("Conv2dGrowingBlock.__init__ kernel twice", "warn", UserWarning,
     "kernel_size specified in both arguments and kwargs for conv_block, using value from kwargs.",
     _block_with_two_kernels),
]


@pytest.mark.parametrize("site, kind, error, text, action", CATALOGUE, ids=[row[0] for row in CATALOGUE])
def test_catalogue_message(site, kind, error, text, action):
    if kind == "raise":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(error) as caught:
                action()
        assert text in str(caught.value), f"{site}: {str(caught.value)!r}"
    else:
        with pytest.warns(error, match=re.escape(text)):
            action()


def test_catalogue_covers_distinct_sites():
    sites = [row[0] for row in CATALOGUE]
    assert len(sites) == len(set(sites))
    assert len(sites) >= 150


def test_eigh_failure_warning_goes_through_tools_warn(monkeypatch):
    calls = []
    original = tools.gk.psd_inv_sqrt
    failures = iter([True])

    def flaky(matrix, **kwargs):
        if next(failures, False):
            raise torch.linalg.LinAlgError("no convergence")
        return original(matrix, **kwargs)

    monkeypatch.setattr(tools.gk, "psd_inv_sqrt", flaky)
    monkeypatch.setattr(tools, "warn", lambda *args, **kwargs: calls.append((args, kwargs)))
    tools.sqrt_inverse_matrix_semi_positive(torch.eye(2, dtype=torch.float64))
    assert len(calls) == 1 and calls[0][1]["category"] is RuntimeWarning
    assert calls[0][1]["message"].startswith(
        "Adding a small identity matrix to make the input matrix positive definite.")


def test_negative_decrease_ladder_texts_go_through_tools_warn(monkeypatch):
    """GroMo's ladder: the decrease warning, then the float64 retry, then (forced) delta set to zero."""
    calls = []
    real = tools.gk.optimal_delta

    class Negative:
        def __init__(self, result):
            self.delta, self.decrease, self.used_pinv = result.delta, -abs(result.decrease) - 1, False

    monkeypatch.setattr(tools.gk, "optimal_delta", lambda *a, **k: Negative(real(*a, **k)))
    monkeypatch.setattr(tools, "warn", lambda message, *args, **kwargs: calls.append(message))
    delta, decrease = tools.optimal_delta(torch.eye(2) * 2, torch.ones(2, 2))
    assert calls[0].startswith("The parameter update decrease should be positive, but got "
                               "parameter_update_decrease=tensor(")
    assert calls[0].endswith(" for layer.")
    assert calls[1] == "Trying to use the pseudo-inverse with torch.float64."
    assert calls[-1] == "Failed to compute the optimal delta, set delta to zero."
    assert not delta.any() and float(decrease) == 0.0
