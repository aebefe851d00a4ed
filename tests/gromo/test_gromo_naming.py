"""GroMo's naming, ``__repr__`` and ``__del__`` of the growing-module bases (drop-in behaviour)."""

import gc

import pytest
import torch
from torch import nn

from gromo.containers.growing_block import LinearGrowingBlock
from gromo.modules.conv2d_growing_module import (
    Conv2dMergeGrowingModule,
    FullConv2dGrowingModule,
    RestrictedConv2dGrowingModule,
)
from gromo.modules.linear_growing_module import LinearGrowingModule, LinearMergeGrowingModule


def test_name_is_the_composite_and_underscore_name_the_argument():
    layer = LinearGrowingModule(3, 4, name="a", device="cpu")
    assert (layer._name, layer.name) == ("a", "LinearGrowingModule(a)")
    unnamed = LinearGrowingModule(3, 4, device="cpu")
    assert (unnamed._name, unnamed.name) == (None, "LinearGrowingModule")
    merge = LinearMergeGrowingModule(in_features=3, name="m", device="cpu")
    assert (merge._name, merge.name) == ("m", "LinearMergeGrowingModule(m)")
    restricted = RestrictedConv2dGrowingModule(2, 3, 3, name="r", device="cpu")
    assert restricted.name == "RestrictedConv2dGrowingModule(r)"


def test_statistic_names_are_built_from_the_composite_name():
    layer = LinearGrowingModule(3, 4, name="a", device="cpu")
    names = [layer._tensor_s.name, layer.tensor_m.name, layer.tensor_m_prev.name,
             layer.cross_covariance.name, layer.covariance_loss_gradient.name]
    assert names == [f"{key}(LinearGrowingModule(a))" for key in ("S", "M", "M_prev", "C", "E")]
    merge = LinearMergeGrowingModule(in_features=3, name="m", device="cpu")
    merge.add_previous_module(LinearGrowingModule(2, 3, device="cpu"))
    assert [merge.tensor_s.name, merge.previous_tensor_s.name, merge.previous_tensor_m.name] == [
        "S(LinearMergeGrowingModule(m))", "S[-1](LinearMergeGrowingModule(m))",
        "M[-1](LinearMergeGrowingModule(m))",
    ]
    full = FullConv2dGrowingModule(2, 3, 3, name="f", device="cpu")
    assert full._tensor_s_growth.name == "S_growth(f)"  # GroMo uses the raw name here


def test_block_keeps_its_raw_name_and_names_its_layers_from_it():
    block = LinearGrowingBlock(3, 3, hidden_features=2, name="blk", device="cpu")
    assert block.name == "blk"
    assert block.first_layer.name == "LinearGrowingModule(blk(first_layer))"
    assert block.second_layer.name == "LinearGrowingModule(blk(second_layer))"


def test_repr_is_the_one_line_str():
    layer = LinearGrowingModule(3, 2, name="a", device="cpu")
    assert repr(layer) == str(layer) == "LinearGrowingModule(a)(in_features=3, out_features=2, use_bias=True)"
    merge = LinearMergeGrowingModule(in_features=3, device="cpu")
    assert repr(merge) == str(merge) == "LinearMergeGrowingModule module with no previous modules and no next modules."
    parent = nn.Sequential(layer)
    assert "(0): LinearGrowingModule(a)(in_features=3" in repr(parent)


def test_growing_module_str_levels():
    layer = LinearGrowingModule(3, 2, name="a", device="cpu")
    assert layer.__str__(verbose=1) == (
        "LinearGrowingModule(a) module with 8 parameters (self._allow_growing=False, "
        "self.store_input=False, self.store_pre_activity=False)."
    )
    lines = layer.__str__(verbose=2).split("\n")
    assert lines[0] == "LinearGrowingModule(a) module with 8 parameters."
    assert [line.split(":")[0].split("=")[0] for line in lines[1:]] == [
        "\tLayer", "\tPost layer function", "\tAllow growing", "\tStore input",
        "\tself._internal_store_input", "\tStore pre-activity", "\tself._internal_store_pre_activity",
        "\tTensor S (internal)", "\tTensor S", "\tTensor M", "\tOptimal delta layer",
        "\tExtended input layer", "\tExtended output layer",
    ]
    conv = RestrictedConv2dGrowingModule(2, 3, 3, name="r", device="cpu")
    assert str(conv) == "Conv2dGrowingModule(r)(in_channels=2, out_channels=3, use_bias=True)"
    with pytest.raises(ValueError, match=r"^verbose=-1 is not a valid value\.$"):
        layer.__str__(verbose=-1)


def test_merge_str_levels():
    merge = LinearMergeGrowingModule(in_features=3, device="cpu")
    merge.add_previous_module(LinearGrowingModule(2, 3, device="cpu"))
    assert merge.__str__(verbose=0) == "LinearMergeGrowingModule module."
    assert str(merge) == "LinearMergeGrowingModule module with 1 previous modules and no next modules."
    lines = merge.__str__(verbose=2).split("\n")
    assert lines[0] == "LinearMergeGrowingModule module."
    assert [line.split(":")[0] for line in lines[1:]] == [
        "\tPrevious modules", "\tNext modules", "\tPost merge function", "\tAllow growing",
        "\tStore input", "\tStore activity", "\tTensor S", "\tPrevious tensor S", "\tPrevious tensor M",
    ]
    with pytest.raises(ValueError, match=r"^verbose=-2 is not a valid value\.$"):
        merge.__str__(verbose=-2)


def test_growing_module_del_unlinks_growing_neighbours():
    first = LinearGrowingModule(2, 3, device="cpu")
    middle = LinearGrowingModule(3, 4, previous_module=first, device="cpu")
    last = LinearGrowingModule(4, 1, previous_module=middle, device="cpu")
    first.next_module, middle.next_module = middle, last
    middle.__del__()
    assert first.next_module is None and last.previous_module is None
    assert middle.previous_module is None and middle.next_module is None


def test_growing_module_del_leaves_a_neighbour_linked_elsewhere():
    first = LinearGrowingModule(2, 3, device="cpu")
    kept = LinearGrowingModule(3, 4, previous_module=first, device="cpu")
    first.next_module = kept
    candidate = LinearGrowingModule(3, 5, previous_module=first, device="cpu")
    del candidate
    gc.collect()
    assert first.next_module is kept


def test_growing_module_del_removes_itself_from_merges_and_resizes_them():
    merge_in = LinearMergeGrowingModule(in_features=3, device="cpu")
    a = LinearGrowingModule(2, 3, next_module=merge_in, device="cpu")
    b = LinearGrowingModule(5, 3, next_module=merge_in, device="cpu")
    merge_in.set_previous_modules([a, b])
    assert merge_in.total_in_features == 3 + 6
    merge_out = LinearMergeGrowingModule(in_features=2, device="cpu")
    c = LinearGrowingModule(3, 2, previous_module=merge_in, next_module=merge_out, device="cpu")
    merge_in.set_next_modules([c])
    merge_out.set_previous_modules([c])
    a.__del__()
    assert merge_in.previous_modules == [b] and merge_in.total_in_features == 6
    assert merge_in.previous_tensor_s._shape == (6, 6) and a.next_module is None
    c.__del__()
    assert merge_in.next_modules == [] and merge_out.previous_modules == []
    assert merge_out.previous_tensor_s is None
    assert c.previous_module is None and c.next_module is None


def test_merge_del_detaches_growing_and_merge_neighbours():
    merge = LinearMergeGrowingModule(in_features=3, device="cpu")
    upstream = LinearGrowingModule(1, 2, device="cpu")
    a = LinearGrowingModule(2, 3, previous_module=upstream, next_module=merge, device="cpu")
    upstream.next_module = a
    b = LinearGrowingModule(3, 4, previous_module=merge, device="cpu")
    after = LinearMergeGrowingModule(in_features=3, device="cpu")
    merge.set_previous_modules([a])
    merge.set_next_modules([b, after])
    after.set_previous_modules([merge])
    merge.__del__()
    assert merge.previous_modules == [] and merge.next_modules == []
    # a ran its own __del__: it left the graph on both sides, as in GroMo
    assert a.next_module is None and a.previous_module is None and upstream.next_module is None
    assert b.previous_module is None
    assert after.previous_modules == [] and after.previous_tensor_s is None


def test_del_is_exception_safe():
    merge = LinearMergeGrowingModule(in_features=3, device="cpu")
    layer = LinearGrowingModule(2, 3, next_module=merge, device="cpu")
    merge.set_previous_modules([layer])

    def broken_update_size():
        raise RuntimeError("boom")

    merge.update_size = broken_update_size
    layer.__del__()  # does not raise
    assert layer.next_module is None and merge.previous_modules == []
    merge.__del__()
    merge.__del__()  # twice is harmless
    half_built = LinearGrowingModule.__new__(LinearGrowingModule)
    half_built.__del__()  # no attributes at all: still no exception
    torch.nn.Module.__init__(half_built)
    half_built.__del__()
