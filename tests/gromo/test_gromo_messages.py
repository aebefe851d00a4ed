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

from .gromo_catalogue_conv import CONV_ROWS
from .gromo_catalogue_modules import MODULE_ROWS

CATALOGUE = MODULE_ROWS + CONV_ROWS



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
