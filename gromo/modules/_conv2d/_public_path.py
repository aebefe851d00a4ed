"""Pinning a class moved into this private package to its public GroMo module path.

Imports, pickles and reprs name the public path (numpy's ``set_module`` idiom); the class's own
functions are pinned too, so that tools listing "the functions of this module" (documentation,
the API-surface tests) still find them under the public path.
"""

from __future__ import annotations

import inspect

#: the public GroMo module every class of this package is published under
PUBLIC_PATH = "gromo.modules.conv2d_growing_module"


def public_path(cls: type) -> type:
    """Class decorator: ``__module__`` of ``cls`` and of the functions it defines = ``PUBLIC_PATH``."""
    cls.__module__ = PUBLIC_PATH
    for member in vars(cls).values():
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        functions = (member.fget, member.fset, member.fdel) if isinstance(member, property) else (member,)
        for function in functions:
            # only functions written in this package: an alias of a base-class function keeps its module
            if inspect.isfunction(function) and function.__module__.startswith(__package__):
                function.__module__ = PUBLIC_PATH
    return cls
