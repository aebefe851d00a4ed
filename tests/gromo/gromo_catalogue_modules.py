"""GroMo's message catalogue, first part: rows for tensor_statistic, tools, the growing-module
bases and the linear modules, with the small builders the rows use (see test_gromo_messages)."""


from unittest import mock

import torch
from torch import nn

from gromo.containers.growing_block import (
    Conv2dGrowingBlock,
)
from gromo.modules import growing_module
from gromo.modules.conv2d_growing_module import (
    Conv2dGrowingModule,
    Conv2dMergeGrowingModule,
    RestrictedConv2dGrowingModule,
)
from gromo.modules.growing_module import GrowingModule
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


def grown_with_replaced_solver(first, second, x, change):
    """``second.compute_optimal_updates()`` after one gathered batch, with the new-neuron solver
    replaced at GroMo's public path by one whose (alpha, omega, sigma) pass through ``change``: a
    user's solver returning inconsistent shapes (the packaging's shape assertions)."""
    second.init_computation()
    (second(first(x)) ** 2).sum().backward()
    second.update_computation()

    def solver(**arguments):
        return change(*tools.compute_optimal_added_parameters(**arguments))

    with mock.patch.object(growing_module, "compute_optimal_added_parameters", solver):
        second.compute_optimal_updates()


def one_more_alpha_row(alpha, omega, sigma):
    return torch.zeros(alpha.shape[0] + 1, alpha.shape[1]), omega, sigma


def one_more_omega_row(alpha, omega, sigma):
    return alpha, torch.zeros(omega.shape[0] + 1, omega.shape[1]), sigma


def one_more_alpha_column(alpha, omega, sigma):
    return torch.zeros(alpha.shape[0], alpha.shape[1] + 1), omega, sigma


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

MODULE_ROWS = [
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
    ("LinearGrowingModule._compute_optimal_added_parameters count", "raise", AssertionError,
     "alpha and omega should have the same number of added neurons.but got",
     lambda: grown_with_replaced_solver(*pair(), torch.randn(8, 2), one_more_alpha_row)),
    ("LinearGrowingModule._compute_optimal_added_parameters omega", "raise", AssertionError,
     "omega should have the same number of output features (3) as the layer (2).",
     lambda: grown_with_replaced_solver(*pair(), torch.randn(8, 2), one_more_omega_row)),
]
