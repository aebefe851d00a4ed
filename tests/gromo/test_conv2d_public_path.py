"""The growing convolutions live in a private package but are published under GroMo's path."""

from __future__ import annotations

import io
import pickle

import torch

import gromo.modules.conv2d_growing_module as face
from gromo.modules.conv2d_growing_module import (
    Conv2dGrowingModule,
    Conv2dMergeGrowingModule,
    FullConv2dGrowingModule,
    RestrictedConv2dGrowingModule,
)

PUBLIC = "gromo.modules.conv2d_growing_module"


def test_classes_and_their_functions_name_the_public_path():
    for cls in (Conv2dGrowingModule, RestrictedConv2dGrowingModule, FullConv2dGrowingModule,
                Conv2dMergeGrowingModule, face._ZeroWidthSafeConv2d):
        assert cls.__module__ == PUBLIC and getattr(face, cls.__name__) is cls
        assert repr(cls) == f"<class '{PUBLIC}.{cls.__name__}'>"
    assert Conv2dGrowingModule.layer_of_tensor.__module__ == PUBLIC


def test_a_checkpoint_names_only_the_public_path():
    module = RestrictedConv2dGrowingModule(2, 3, 3, padding=1, device="cpu")
    buffer = io.BytesIO()
    torch.save(module, buffer)
    assert b"_conv2d" not in buffer.getvalue()
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert type(loaded) is RestrictedConv2dGrowingModule and type(loaded.layer) is face._ZeroWidthSafeConv2d
    x = torch.randn(1, 2, 5, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loaded(x), module(x), rtol=0, atol=0)
    assert type(pickle.loads(pickle.dumps(Conv2dMergeGrowingModule(3, (4, 4), 3, device="cpu")))) is (
        Conv2dMergeGrowingModule)
