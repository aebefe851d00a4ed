"""GroMo's utilities: config.loader, the new names of utils.utils, disk datasets, the HSIC
dependence estimator and GrowingDropout — against values computed independently."""

from __future__ import annotations

import math
import string

import numpy as np
import pytest
import scipy.linalg
import scipy.spatial
import torch
from torch import nn

from gromo.config import loader
from gromo.modules.growing_dropout import GrowingDropout, GrowingDropout1d, GrowingDropout2d
from gromo.utils import dependence_estimator as de
from gromo.utils import disk_dataset as dd
from gromo.utils import utils


# ----- config.loader ---------------------------------------------------------------------------

def test_load_config_lookup_rules(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "sub" / "deeper").mkdir(parents=True)
    (project / ".git").mkdir()
    monkeypatch.chdir(project / "sub" / "deeper")
    assert loader.load_config() == ({}, "gromo.config")
    assert loader._find_project_root([]) == (project, ".git directory")
    (project / "gromo.config").write_text('[gromo]\nenv = "dev"\n[gromo.dev]\ndevice = "meta"\n')
    assert loader.load_config() == ({"device": "meta"}, "gromo.config")
    # a pyproject without [tool.gromo] falls back to gromo.config
    (project / "pyproject.toml").write_text('[tool.other]\nx = 1\n')
    assert loader.load_config() == ({"device": "meta"}, "gromo.config")
    (project / "pyproject.toml").write_text('[tool.gromo.production]\ndevice = "cpu"\n')
    assert loader.load_config() == ({"device": "cpu"}, "pyproject.toml")
    # a sub-directory gromo.config is not the project's
    (project / "sub" / "gromo.config").write_text('[gromo.production]\ndevice = "cuda"\n')
    assert loader.load_config()[0] == {"device": "cpu"}
    (project / "pyproject.toml").write_text("[tool.gromo\n")
    with pytest.raises(loader.tomllib.TOMLDecodeError):  # parse errors propagate
        loader.load_config()
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "pyproject.toml").write_text("")
    assert loader._find_project_root([str(alone)]) == (alone, "pyproject.toml")


def test_set_from_conf():
    class Holder:
        _config_data = {"device": "meta"}

    holder = Holder()
    assert utils.set_from_conf(holder, "device") == "meta" and holder.device == "meta"
    assert utils.set_from_conf(holder, "other", default=3, setter=False) == 3 and not hasattr(holder, "other")
    with pytest.raises(AssertionError):
        utils.set_from_conf(object(), "device")


# ----- utils.utils -----------------------------------------------------------------------------

def test_line_search_calls_and_minimum():
    calls: list[float] = []

    def cost(gamma):
        calls.append(gamma)
        return (gamma - 0.3) ** 2

    factor, loss = utils.line_search(cost)
    grid = np.geomspace(1e-6, 1, 100)
    assert len(calls) == 201 and factor == grid[np.argmin((grid - 0.3) ** 2)] and loss == (factor - 0.3) ** 2
    calls.clear()
    factors, losses = utils.line_search(lambda g: calls.append(g) or (g - 30.0) ** 2, return_history=True)
    assert len(factors) == len(losses) == 401 and factors[0] == 0.0 and max(factors) == pytest.approx(1000.0)


def test_f1_family_bic_and_alphabetic_index():
    actual, predicted = [0, 1, 1, 2], [0, 1, 2, 2]
    assert utils.calculate_true_positives(actual, predicted, 1) == (1, 0, 1)
    assert utils.f1(actual, predicted, 2) == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert utils.f1_micro(actual, predicted) == pytest.approx(0.75)
    assert utils.f1_macro(actual, predicted) == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert utils.f1_micro(torch.tensor(actual), torch.tensor(predicted)) == pytest.approx(0.75)
    with pytest.raises(ZeroDivisionError):
        utils.f1([0, 0], [1, 1], 0)
    assert utils.compute_BIC(10, 0.5, 8) == pytest.approx(10 * 3 + 2)
    assert [utils.alphabetic_index(i) for i in (0, 25, 26, 701, 702)] == ["a", "z", "aa", "zz", "aaa"]
    assert utils.alphabetic_index(3, alphabet="xy") == "xy"
    assert string.ascii_lowercase[7] == utils.alphabetic_index(7)
    with pytest.raises(ValueError, match="index must be non-negative"):
        utils.alphabetic_index(-1)


def test_activation_table_and_relu_one_at_zero():
    table = utils.known_activations_zero_plus_gradient
    assert table[nn.GELU] == 0.5 and table[nn.SELU] == 1.0507 and table[nn.Sigmoid] == 0.25
    assert table[utils.ReLUDerivativeOneAtZero] == 1.0 and table[GrowingDropout2d] == 1.0
    assert isinstance(utils.activation_fn("  ReLU_Derivative_One_At_Zero "), utils.ReLUDerivativeOneAtZero)
    assert utils.activation_fn("softmax").dim == 1
    with pytest.raises(ValueError, match="Unknown activation function: swish"):
        utils.activation_fn(" Swish")
    relu = utils.ReLUDerivativeOneAtZero()
    assert not isinstance(relu, nn.ReLU)
    x = torch.tensor([-math.inf, -1.0, 0.0, 2.0], requires_grad=True)
    out = relu(x)
    assert out.tolist() == [0.0, 0.0, 0.0, 2.0] and not torch.signbit(out).any()
    out.sum().backward()
    assert x.grad.tolist() == [0.0, 0.0, 1.0, 1.0]


def test_gradient_descent_helpers(generator):
    x = torch.randn(40, 3, generator=generator)
    y = (x[:, 0] > 0).long()
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    losses, accuracies = utils.mini_batch_gradient_descent(model, nn.CrossEntropyLoss(), x, y, lrate=0.05,
                                                           max_epochs=15, batch_size=8, verbose=False)
    assert len(losses) == len(accuracies) == 15 and losses[-1] < losses[0] and 0 <= accuracies[-1] <= 1
    with pytest.raises(TypeError, match="X and Y should have the same type"):
        utils.mini_batch_gradient_descent(model, nn.MSELoss(), x, "y", 0.1, 1, 4)
    with pytest.raises(TypeError, match="Inappropriate type for X"):
        utils.mini_batch_gradient_descent(model, nn.MSELoss(), [1], [2], 0.1, 1, 4)
    with pytest.raises(ValueError, match="At least one key is required for X and Y"):
        utils.mini_batch_gradient_descent(model, nn.MSELoss(), "x.pt", "y.pt", 0.1, 1, 4)
    with pytest.raises(AttributeError, match="the parameters argument must not be None or empty"):
        utils.mini_batch_gradient_descent(lambda t: t, nn.MSELoss(), x, y, 0.1, 1, 4)
    weight = torch.zeros(3, requires_grad=True)
    target = x @ torch.tensor([1.0, -2.0, 0.5])
    optimizer = torch.optim.SGD([weight], lr=0.1)
    history, acc = utils.batch_gradient_descent(lambda: x @ weight, nn.MSELoss(), target, optimizer, max_epochs=50)
    assert len(history) == 50 and acc == [] and history[-1] < 0.05 * history[0]


# ----- disk datasets ---------------------------------------------------------------------------

def test_disk_datasets(tmp_path, generator, monkeypatch):
    a, b = torch.randn(6, 2, generator=generator), torch.randn(6, 3, generator=generator)
    t = torch.randn(6, 1, generator=generator)
    torch.save({"a": a, "b": b}, tmp_path / "inputs.pt")
    torch.save({"t": t}, tmp_path / "targets.pt")
    rows = list(dd.DiskDataset(str(tmp_path / "inputs.pt"), str(tmp_path / "targets.pt"), ["a", "b"], ["t"]))
    assert len(rows) == 6 and torch.equal(rows[4][0], torch.cat([a, b], 1)[4]) and torch.equal(rows[4][1], t[4])
    mapped = dd.MemMapDataset(str(tmp_path / "inputs.pt"), str(tmp_path / "targets.pt"), ["b"], ["t"])
    assert len(mapped) == 6 and (tmp_path / "__input.npy").exists() and (tmp_path / "__target.npy").exists()
    assert torch.equal(mapped[2][0], b[2]) and torch.equal(mapped[2][1], t[2])
    torch.save({"t": t[:5]}, tmp_path / "short.pt")
    with pytest.raises(ValueError, match="Input and target tensors must have same length, got 6 and 5"):
        list(dd.DiskDataset(str(tmp_path / "inputs.pt"), str(tmp_path / "short.pt"), ["a"], ["t"]))
    with pytest.raises(ValueError, match="Input and target tensors must have same length, got 6 and 5"):
        dd.MemMapDataset(str(tmp_path / "inputs.pt"), str(tmp_path / "short.pt"), ["a"], ["t"])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "temp").mkdir()
    dd.convert_dict_to_npy(str(tmp_path / "inputs.pt"), "x")
    simple = dd.SimpleMemMapDataset(["temp/x_a.npy", "temp/x_b.npy"], ["temp/x_a.npy"])
    assert len(simple) == 6 and torch.equal(simple[1][0], torch.cat([a[1], b[1]])) and torch.equal(simple[1][1], a[1])
    np.save(tmp_path / "temp" / "five.npy", np.zeros((5, 1)))
    with pytest.raises(ValueError, match=r"got target lengths \[5\]"):
        dd.SimpleMemMapDataset(["temp/x_a.npy"], ["temp/five.npy"])
    with pytest.raises(ValueError, match=r"got input lengths \[6, 5\]"):
        dd.SimpleMemMapDataset(["temp/x_a.npy", "temp/five.npy"], ["temp/x_a.npy"])


# ----- dependence estimator --------------------------------------------------------------------

def test_hsic_against_numpy(generator):
    x = torch.randn(30, 4, generator=generator, dtype=torch.float64)
    y = x[:, :1] ** 2 + 0.1 * torch.randn(30, 1, generator=generator, dtype=torch.float64)
    xn = x.numpy()
    torch.testing.assert_close(de.linear_kernel(x), torch.from_numpy(xn @ xn.T))
    d = scipy.spatial.distance.cdist(xn, xn, "sqeuclidean")
    lower_median = np.sort(d.ravel())[(d.size - 1) // 2]
    torch.testing.assert_close(de.gaussian_kernel(x), torch.from_numpy(np.exp(-d / (2 * (lower_median + 1e-7)))))
    torch.testing.assert_close(de.gaussian_kernel(x, sigma=2.0), torch.from_numpy(np.exp(-d / 8)))
    h = np.eye(30) - np.ones((30, 30)) / 30
    k = de.gaussian_kernel(x).numpy()
    centred = de.center_kernel_matrix(torch.from_numpy(k))
    torch.testing.assert_close(centred, torch.from_numpy(h @ k @ h))
    assert float(de.HSIC(centred, centred)) == pytest.approx(np.trace(h @ k @ h @ h @ k @ h) / 29**2)
    torch.manual_seed(0)
    dependencies = de.calculate_dependency({"x": x, "noise": torch.randn(30, 4, generator=generator,
                                                                          dtype=torch.float64)}, y, n_samples=30)
    assert 0 < float(dependencies["noise"]) < float(dependencies["x"]) <= 1
    raw = de.calculate_dependency({"x": x}, y, n_samples=30, normalize=False)["x"]
    assert float(raw) == pytest.approx(float(de.HSIC(centred, de.center_kernel_matrix(de.gaussian_kernel(y)))))
    assert scipy.linalg.norm(h.sum(0)) < 1e-12


# ----- dropout ---------------------------------------------------------------------------------

def test_growing_dropout_keeps_the_extension(generator):
    dropout = GrowingDropout2d(0.5, name="drop")
    assert repr(dropout) == "GrowingDropout2d(p=0.5, inplace=False, name=drop)"
    x = torch.ones(4, 8, 3, 3)
    torch.manual_seed(0)
    main, extension = dropout.extended_forward(x, x.clone())
    kept = main.sum((2, 3)) / 9
    assert set(kept.unique().tolist()) <= {0.0, 2.0} and 0 < float((kept == 0).float().mean()) < 1
    assert torch.equal(extension, x)
    assert dropout.extended_forward(None, x)[0] is None
    dropout.eval()
    assert torch.equal(dropout(x), x)
    assert GrowingDropout1d(0.2).name == "growing_dropout" and isinstance(GrowingDropout1d(0.2), nn.Dropout1d)
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
        GrowingDropout(1.5)
