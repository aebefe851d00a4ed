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

from gromo.utils import tools

from .gromo_catalogue_containers import CONTAINER_ROWS
from .gromo_catalogue_conv import CONV_ROWS
from .gromo_catalogue_modules import MODULE_ROWS

CATALOGUE = MODULE_ROWS + CONV_ROWS + CONTAINER_ROWS



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


# ----------------------------------------------------------------------------------------------
# Printed sites of the catalogue (containers and training utilities)
# ----------------------------------------------------------------------------------------------


def test_container_prints_gromo_lines(capsys):
    """GrowingContainer.select_update(verbose), GrowingMLP.normalise(verbose) and
    mini_batch_gradient_descent(verbose) print GroMo's lines."""
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from gromo.containers.growing_mlp import GrowingMLP
    from gromo.utils.training_utils import compute_statistics
    from gromo.utils.utils import mini_batch_gradient_descent

    torch.manual_seed(3)
    model = GrowingMLP(4, 2, hidden_size=3, number_hidden_layers=2, activation=nn.ReLU(), device="cpu")
    x, y = torch.randn(32, 4), torch.randn(32, 2)
    compute_statistics(model, DataLoader(TensorDataset(x, y), batch_size=16))
    model.compute_optimal_updates()
    model.reset_computation()
    capsys.readouterr()
    model.select_update(0, verbose=True)
    lines = capsys.readouterr().out.splitlines()
    first = model._growing_layers[0]
    assert lines[0] == f"Layer 0 update: {first.first_order_improvement}"
    assert lines[1] == f"Layer 0 parameter improvement: {first.parameter_update_decrease}"
    assert lines[2] == f"Layer 0 eigenvalues extension: {first.eigenvalues_extension}"
    assert lines[3].startswith("Layer 1 update: ") and "Deleting layer 1" in lines

    model.normalise(verbose=True)
    assert capsys.readouterr().out.startswith("Normalisation: [(0, ")

    losses, _ = mini_batch_gradient_descent(model, nn.functional.mse_loss, x, y, lrate=1e-3, max_epochs=1,
                                            batch_size=16, fast=True, verbose=True)
    assert capsys.readouterr().out.splitlines()[0] == f"Epoch 0: Train loss {losses[-1]}"
