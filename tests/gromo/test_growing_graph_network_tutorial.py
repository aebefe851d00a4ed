"""GroMo's graph tutorial, unchanged: a GrowingGraphNetwork trained and grown for a few steps on
small synthetic data with ``gromo.utils.training_utils``."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from gromo.containers.growing_graph_network import GrowingGraphNetwork
from gromo.utils.training_utils import evaluate_model, gradient_descent


def test_graph_tutorial_grows_and_learns(generator):
    warnings.simplefilter("ignore", UserWarning)
    n, in_features, classes = 384, 6, 3
    x = torch.randn(n, in_features, generator=generator)
    y = (torch.sin(2 * x[:, :3]).sum(1) + x[:, 3] * x[:, 4] > 0).long() + (x[:, 5] > 1).long()
    train = torch.utils.data.TensorDataset(x[:256], y[:256])
    val = torch.utils.data.TensorDataset(x[256:], y[256:])
    train_loader = torch.utils.data.DataLoader(train, batch_size=64, shuffle=True,
                                               generator=torch.Generator().manual_seed(0))
    val_loader = torch.utils.data.DataLoader(val, batch_size=64)
    loss_fn = nn.CrossEntropyLoss()

    model = GrowingGraphNetwork(in_features=in_features, out_features=classes, loss_fn=loss_fn, neurons=8,
                                neuron_epochs=2, neuron_lrate=1e-2, neuron_batch_size=64)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        gradient_descent(model, train_loader, optimizer, None, loss_fn)
    start_loss, _ = evaluate_model(model, val_loader, loss_fn)

    for step in range(3):
        model.global_step = step
        actions = model.dag.define_next_actions(expand_end=True)
        bottleneck, input_b = model.dag.calculate_bottleneck(actions, train_loader, loss_fn=loss_fn)
        node = max(bottleneck, key=lambda name: float(bottleneck[name].norm()))
        actions = model.restrict_action_space(actions, chosen_outputs=[node])
        model.execute_expansions(actions, bottleneck, input_b, amplitude_factor=False, evaluate=False,
                                 verbose=False)
        for action in actions:
            best = None
            for factor in (0.0, 0.05, 0.1, 0.5, 1.0):
                model.set_scaling_factor(factor)
                loss, _ = evaluate_model(model, val_loader, loss_fn, use_extended_model=True,
                                         mask=action.create_mask())
                if best is None or loss < best[1]:
                    best = (factor, loss)
            action.metrics["scaling_factor"], action.metrics["loss_val"] = best
        model.choose_growth_best_action(actions)
        chosen = model.chosen_action
        model.apply_change()
        grown_loss, _ = evaluate_model(model, val_loader, loss_fn)
        assert abs(grown_loss - chosen.metrics["loss_val"]) < 1e-5  # the applied change is the scored one
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(3):
            gradient_descent(model, train_loader, optimizer, None, loss_fn)

    final_loss, _ = evaluate_model(model, val_loader, loss_fn)
    assert model.dag.number_of_nodes() >= 3  # the architecture grew, not only widths
    assert final_loss < start_loss
    assert model.growth_history and all("_" not in node for node in model.dag.nodes)
