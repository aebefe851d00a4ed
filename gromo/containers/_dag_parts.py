"""The pieces a ``GrowingDAG`` is assembled from: node and edge modules, their detachment, and the
node module applied to a main part and an extension part.

A node is a merge module whose post-merge function is ``Sequential(norm, activation)``; an edge is
a growing layer between two merges (or a ``ConstantModule``, the zero stand-in for "no connection"). Module
``_name``s follow GroMo: a node's is its key cut at ``"_"``, an edge's is ``L{u}_{v}`` (linear) or
``C{u}_{v}`` (convolution) with both ends cut at ``"_"``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gromo.modules.constant_module import ConstantModule
from gromo.modules.conv2d_growing_module import Conv2dMergeGrowingModule, FullConv2dGrowingModule
from gromo.modules.growing_module import GrowingModule, MergeGrowingModule, SupportsExtendedForward
from gromo.modules.growing_normalisation import GrowingLayerNorm
from gromo.modules.linear_growing_module import LinearGrowingModule, LinearMergeGrowingModule
from gromo.utils.tools import lecun_normal_
from gromo.utils.utils import activation_fn

SUPPORTED_LAYER_TYPES = ["linear", "convolution"]


def base_name(key: str) -> str:
    """The part of a node key before ``"_"`` (a candidate's future name)."""
    return key.split("_")[0]


def set_module_name(module: nn.Module, raw_name: str) -> None:
    """Give ``module`` GroMo's raw name ``_name`` (DAG dictionaries are keyed by it)."""
    module._name = raw_name


def apply_post_merge(module: MergeGrowingModule, x: torch.Tensor | None,
                     x_ext: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """A node module on a main part and an extension part (new neurons).

    The main part goes through the merge (which stores it when asked); the extension through the
    post-merge function member by member, members with ``extended_forward`` (growing norms) passing
    the new neurons through as the module layer does. ``None`` stays ``None``.
    """
    main = module(x) if x is not None else None
    if x_ext is None:
        return main, None
    function = module.post_merge_function
    if function is None:
        return main, x_ext
    members = list(function) if isinstance(function, nn.Sequential) else [function]
    for member in members:
        if isinstance(member, SupportsExtendedForward):
            _, x_ext = member.extended_forward(None, x_ext)
        else:
            x_ext = member(x_ext)
    return main, x_ext


def make_node_module(key: str, attrs: dict[str, Any], dag_use_layer_norm: bool,
                     device: torch.device) -> MergeGrowingModule:
    """The merge module of node ``key`` with attributes ``attrs`` (type, size, shape, …).

    Raises:
        KeyError: a convolution node without ``kernel_size``, or with a layer norm and no ``shape``.
        NotImplementedError: unknown node type.
    """
    size = attrs["size"]
    use_layer_norm = attrs.get("use_layer_norm", dag_use_layer_norm)
    activation = activation_fn(attrs.get("activation"))
    if attrs["type"] == "linear":
        norm = GrowingLayerNorm(size, elementwise_affine=False) if use_layer_norm else nn.Identity()
        module = LinearMergeGrowingModule(
            post_merge_function=nn.Sequential(norm, activation), in_features=size, allow_growing=True,
            device=device, name=base_name(key),
        )
    elif attrs["type"] == "convolution":
        shape = attrs.get("shape", (1, 1))
        if use_layer_norm:
            if "shape" not in attrs:
                raise KeyError(
                    "The shape of the input (h,w) should be specified at initialization when using "
                    'LayerNorm. Example: key "shape" in node_attributes[new_node]'
                )
            norm = GrowingLayerNorm([size, *attrs["shape"]], elementwise_affine=False)
        else:
            norm = nn.Identity()
        module = Conv2dMergeGrowingModule(
            in_channels=size, input_size=shape, next_kernel_size=attrs["kernel_size"],
            input_volume=size * shape[0] * shape[1] if shape is not None else None,
            post_merge_function=nn.Sequential(norm, activation), allow_growing=True, device=device,
            name=base_name(key),
        )
    else:
        raise NotImplementedError
    set_module_name(module, base_name(key))
    return module


def _edge_name(layer_type: str, u: str, v: str) -> str:
    prefix = "C" if layer_type == "convolution" else "L"
    return f"{prefix}{base_name(u)}_{base_name(v)}"


def make_edge_module(u: str, v: str, node_u: dict, node_v: dict, attrs: dict[str, Any],
                     dag_use_bias: bool, zero_weights: bool, device: torch.device) -> tuple[GrowingModule, str]:
    """The growing layer of edge ``(u, v)`` and its edge ``type``.

    Raises:
        KeyError: a conv→conv edge without ``kernel_size``.
        NotImplementedError: a linear→convolution edge.
    """
    module_u, type_u, type_v = node_u["module"], node_u["type"], node_v["type"]
    if attrs.get("constant"):
        module = ConstantModule(module_u.out_features, node_v["size"], device=device)
        set_module_name(module, _edge_name("linear", u, v))
        return module, "constant"
    use_bias = attrs.get("use_bias", dag_use_bias)
    if type_u == "linear" and type_v == "linear":
        module = LinearGrowingModule(node_u["size"], node_v["size"], use_bias=use_bias, device=device,
                                     name=_edge_name("linear", u, v))
    elif type_u == "convolution" and type_v == "convolution":
        if "kernel_size" not in attrs:
            raise KeyError(
                "The kernel size of the edge should be specified at initialization. Example: key "
                '"kernel_size" in edge_attributes[edge]'
            )
        kh, kw = attrs["kernel_size"]
        module = FullConv2dGrowingModule(
            node_u["size"], node_v["size"], attrs["kernel_size"], input_size=module_u.output_size,
            stride=attrs.get("stride", 1), padding=attrs.get("padding", ((kh - 1) // 2, (kw - 1) // 2)),
            dilation=attrs.get("dilation", 1), use_bias=use_bias, device=device,
            name=_edge_name("convolution", u, v),
        )
    elif type_u == "convolution" and type_v == "linear":
        module = LinearGrowingModule(module_u.out_features, node_v["size"], use_bias=use_bias, device=device,
                                     name=_edge_name("linear", u, v))
    else:
        raise NotImplementedError(f"An edge from a {type_u} node to a {type_v} node is not supported.")
    set_module_name(module, _edge_name(type_v if type_u == type_v else "linear", u, v))
    with torch.no_grad():
        if zero_weights:
            module.weight.zero_()
        else:
            lecun_normal_(module.weight)
        if module.bias is not None:
            module.bias.zero_()
    return module, type_v


def detach_edge(edge: GrowingModule) -> None:
    """Unlink an edge module from both merges (which then follow their remaining neighbours' sizes)."""
    previous, following = edge.previous_module, edge.next_module
    if isinstance(previous, MergeGrowingModule):
        previous.set_next_modules([m for m in previous.next_modules if m is not edge])
        previous.update_size()
    if isinstance(following, MergeGrowingModule):
        following.set_previous_modules([m for m in following.previous_modules if m is not edge])
        following.update_size()
    edge.previous_module = None
    edge.next_module = None


def detach_node(node: MergeGrowingModule) -> None:
    """Unlink a node module from all its edges (detaching each) and empty its lists."""
    for edge in list(node.previous_modules) + list(node.next_modules):
        if isinstance(edge, GrowingModule):
            detach_edge(edge)
    node.previous_modules = []
    node.next_modules = []
