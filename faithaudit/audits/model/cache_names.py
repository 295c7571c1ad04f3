"""What the installed transformers calls a model's key-value cache, in one place.

transformers 5.x renamed the forward argument and the output field ``past_key_values`` to ``cache`` (5.17 takes
only the old name and silently drops an unknown ``cache=`` into ``**kwargs``; 5.24 takes the new one and warns on
the old until 5.40). The project allows ``transformers>=5.0``, and a production host or a GPU image may hold either,
so every forward or ``generate`` call that passes a cache goes through ``cache_kwargs`` and every read of a
returned cache through ``returned_cache``. A model whose forward names neither is refused when it is loaded
(``check_cache_argument``): a cache it dropped unread would score suffixes without their prefix, silently.
"""

from __future__ import annotations

import inspect
from functools import cache as _memo

from faithaudit.errors import FaithauditError

NEW, OLD = "cache", "past_key_values"


class CacheArgumentError(FaithauditError):
    """The loaded model's forward takes no key-value cache argument this module knows (a worker start-up error)."""

    code = "model_incompatible"


@_memo
def _name_for(model_class: type) -> str:
    params = inspect.signature(model_class.forward).parameters
    if NEW in params:
        return NEW
    if OLD in params:
        return OLD
    import transformers

    raise CacheArgumentError(
        f"{model_class.__name__}.forward takes neither `{NEW}` nor `{OLD}` (transformers {transformers.__version__}): "
        "faithaudit cannot pass it a cached prefix; use a transformers release from 5.0 to 5.x"
    )


def check_cache_argument(model) -> str:
    """The cache argument's name for ``model``; ``CacheArgumentError`` where its forward takes none."""
    return _name_for(type(model))


def cache_kwargs(model, cache) -> dict:
    """``{name: cache}`` under the name ``model``'s forward takes (``cache`` or ``past_key_values``)."""
    return {_name_for(type(model)): cache}


def returned_cache(output):
    """The key-value cache a forward returned, under either field name."""
    return output[NEW] if NEW in output else output[OLD]
