"""GroMo's message catalogue, the rows of the containers and the training utilities (raised texts;
the printed ones are pinned in test_gromo_messages.py): (site, kind, type, GroMo text, action)."""

import torch
from torch import nn

from gromo.containers.growing_block import LinearGrowingBlock
from gromo.containers.growing_mlp import GrowingMLP
from gromo.containers.sequential_growing_container import SequentialGrowingModel
from gromo.utils.utils import mini_batch_gradient_descent


def _mlp() -> GrowingMLP:
    torch.manual_seed(0)
    return GrowingMLP(4, 2, hidden_size=3, number_hidden_layers=2, device="cpu")


def _block_with(width: int, layer: str, attribute: str, extension: nn.Module) -> LinearGrowingBlock:
    """A 3→3 block of hidden ``width`` with ``extension`` set as ``<layer>.<attribute>``."""
    torch.manual_seed(0)
    block = LinearGrowingBlock(3, 3, hidden_features=width, name="block")
    setattr(getattr(block, layer), attribute, extension)
    return block


def _descent(x, y, model=None, parameters=None):
    return mini_batch_gradient_descent(
        model if model is not None else nn.Linear(3, 2), nn.functional.mse_loss, x, y, lrate=1e-2,
        max_epochs=1, batch_size=4, parameters=parameters, fast=True, verbose=False)


CONTAINER_ROWS = [
    ("GrowingBlock.extended_forward output", "raise", AssertionError,
     "The output of layer 2 LinearGrowingModule(block(second_layer)) should not be extended.",
     lambda: _block_with(2, "second_layer", "extended_output_layer", nn.Linear(2, 1)).extended_forward(
         torch.randn(4, 3))),
    ("GrowingBlock.extended_forward input", "raise", AssertionError,
     "Second layer LinearGrowingModule(block(second_layer)) should have an extended input layer.",
     lambda: _block_with(0, "first_layer", "extended_output_layer", nn.Linear(3, 2)).extended_forward(
         torch.randn(4, 3))),
    ("SequentialGrowingModel.set_growing_layers", "raise", ValueError,
     "Invalid scheduling method: bogus. Supported methods are 'sequential' and 'all'.",
     lambda: _mlp().set_growing_layers("bogus")),
    ("SequentialGrowingModel.number_of_neurons_to_add", "raise", RuntimeError,
     "number_of_neurons_to_add is only supported when a single layer is being grown (e.g. with "
     "scheduling_method='sequential').",
     lambda: _mlp().number_of_neurons_to_add()),
    # GrowingMLP overrides update_information without the check; the base's is called directly.
    ("SequentialGrowingModel.update_information", "raise", AssertionError,
     "parameter_update_decrease should be a tensor",
     lambda: SequentialGrowingModel.update_information(_mlp())),
    ("GrowingContainer.currently_updated_layer", "raise", AssertionError, "No layer to update",
     lambda: _mlp().currently_updated_layer),
    ("GrowingContainer.apply_change", "raise", AssertionError, "No layer to update",
     lambda: _mlp().apply_change()),
    ("GrowingMLP.__getitem__", "raise", AssertionError, "item=5 should be in [0, 3)",
     lambda: _mlp()[5]),
    ("mini_batch_gradient_descent types", "raise", TypeError,
     "X and Y should have the same type. Got type(X)=<class 'torch.Tensor'> and type(Y)=<class 'str'>",
     lambda: _descent(torch.randn(4, 3), "targets.pt")),
    ("mini_batch_gradient_descent X", "raise", TypeError,
     "Inappropriate type for X. Expected torch.Tensor or str. Got <class 'list'>",
     lambda: _descent([1.0], [2.0])),
    ("mini_batch_gradient_descent parameters", "raise", AttributeError,
     "When the model is just a forward function, the parameters argument must not be None",
     lambda: _descent(torch.randn(4, 3), torch.randn(4, 2), model=lambda x: x[:, :2])),
]
