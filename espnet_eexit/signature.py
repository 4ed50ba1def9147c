"""Advertise the full argument list of classes that forward ``**kwargs`` to an ESPnet class.

ESPnet reads constructor signatures (``inspect.signature``) to print defaults with
``--print_config`` and to dump complete ``*_conf`` sections in ``config.yaml``; a plain
``**kwargs`` would hide every ESPnet option of our subclasses.
"""
import inspect
from typing import Callable, Sequence


def merged_signature(
    ours: Callable, theirs: Callable, positional: Sequence[str] = ("self",)
) -> inspect.Signature:
    """``(<positional>, *, <ours...>, <theirs not in ours...>)``, without ``**kwargs``.

    Everything after ``positional`` becomes keyword-only (how ESPnet calls constructors), which
    also lets required arguments follow ones with defaults.
    """
    params = []
    seen = set()
    for source in (inspect.signature(ours).parameters, inspect.signature(theirs).parameters):
        for name, p in source.items():
            if name in seen or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            seen.add(name)
            kind = p.POSITIONAL_OR_KEYWORD if name in positional else p.KEYWORD_ONLY
            params.append(p.replace(kind=kind))
    params.sort(key=lambda p: p.kind)  # stable: positional ones first, in their order
    return inspect.Signature(params)
