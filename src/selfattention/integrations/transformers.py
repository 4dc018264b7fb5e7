"""Run Hugging Face models through ``sa.attention``: an ``attn_implementation`` for transformers.

    from selfattention.integrations import transformers as sa_hf
    bridge = sa_hf.register()                   # registers "selfattention"
    model = AutoModel.from_pretrained(path, attn_implementation="selfattention")
    model(**batch, output_attentions=True)      # per-head weights from sa.attention
    bridge.served                               # Counter: backend name -> attention calls served

transformers calls the registered function once per attention layer as

    f(module, query (b, h, i, d), key (b, g, j, d), value (b, g, j, e), attention_mask,
      scaling=..., dropout=..., **kwargs) -> (out (b, i, h, e), weights (b, h, i, j) | None)

where g divides h (grouped key/value heads). This module translates that call into ours:

- the mask: transformers builds it with its ``sdpa_mask`` for our name (bool, True = may attend,
  our polarity), or returns None when the pattern is plain causal (then ``module.is_causal`` and
  q length > 1 become ``causal=True``, aligned top-left as SDPA's flag is); a 4-D float mask a
  user passed in is split into the bool mask (large negatives) and an additive ``bias`` (any
  other nonzero value); a ``position_bias`` keyword (T5-style) is added to the bias;
- a ``sliding_window`` keyword on a causal layer becomes ``window=(sliding_window - 1, 0)`` when
  queries and keys are the same positions (no cache offset), so the window kernels can skip work;
  the explicit mask still holds in every case;
- ``output_attentions=True`` asks for ``return_weights=True``; with ``backend="auto"`` the
  dispatcher then picks a backend that returns weights; otherwise the fastest one that serves;
- dropout is what the model passes (transformers passes 0.0 outside training).

A query with no allowed key (a left-padding position) gets zeros, not NaN, where ``eager`` gives
a uniform average: compare such models only on positions that are not padding.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import Tensor

from selfattention.functional import attention, explain_dispatch
from selfattention.functional.backends import REGISTRY
from selfattention.functional.call import check_backend, check_normalize
from selfattention.functional.normalize import Normalize

try:
    import transformers as _hf
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "selfattention.integrations.transformers needs transformers >= 4.53 "
        f"(AttentionInterface and AttentionMaskInterface): {exc}"
    ) from exc

__all__ = ["Bridge", "register", "split_mask"]

log = logging.getLogger(__name__)

# Names transformers gives a meaning of its own; registering over them would change every model.
_RESERVED = ("eager", "sdpa", "flex_attention", "paged", "flash_attention", "kernels")
# Keyword arguments that change the maths in ways sa.attention does not express (yet).
_UNSUPPORTED = ("softcap", "s_aux", "sinks")


def split_mask(attention_mask: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """transformers' mask -> (bool mask, True = may attend; additive bias), either may be None.

    A bool mask is already our polarity. A float mask is additive: entries at or below half the
    dtype's most negative value (or -inf) are "may not attend"; any other nonzero entry is a
    genuine bias, kept (0 where masked) so that the mask alone decides what is excluded.
    """
    if attention_mask is None:
        return None, None
    if attention_mask.dtype == torch.bool:
        return attention_mask, None
    if not attention_mask.is_floating_point():
        raise TypeError(
            f"attention_mask must be bool or floating-point, got dtype {attention_mask.dtype}"
        )
    blocked = attention_mask <= torch.finfo(attention_mask.dtype).min / 2  # -inf included
    mask = None if not bool(blocked.any()) else ~blocked
    bias = attention_mask.masked_fill(blocked, 0.0)
    return mask, (bias if bool(bias.any()) else None)


def _arguments(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    attention_mask: Tensor | None,
    scaling: float | None,
    dropout: float,
    kwargs: dict,
) -> dict:
    """The keyword arguments of ``sa.attention`` for one transformers call (all but normalize)."""
    mask, bias = split_mask(attention_mask)
    position_bias = kwargs.get("position_bias")
    if position_bias is not None:
        bias = position_bias if bias is None else bias + position_bias
    i, j = query.shape[-2], key.shape[-2]
    # As transformers' sdpa path: no mask on a causal layer means plain causal (top-left);
    # one query (decoding with a cache) sees every cached key.
    is_causal = kwargs.get("is_causal")
    is_causal = getattr(module, "is_causal", True) if is_causal is None else is_causal
    window = None
    sliding = kwargs.get("sliding_window")
    if isinstance(sliding, int) and sliding > 0 and is_causal and i == j:
        window = (sliding - 1, 0)  # HF keeps keys with q - k < sliding_window
    return dict(
        mask=mask,
        bias=None if bias is None else bias.to(query.dtype),
        causal=bool(is_causal) and attention_mask is None and i > 1,
        window=window,
        scale=scaling,
        dropout_p=float(dropout),
        return_weights=bool(kwargs.get("output_attentions", False)),
    )


@dataclass(frozen=True)
class Bridge:
    """The function registered with transformers, with the defaults it was registered with.

    ``served`` counts, per backend name, the attention calls it served (a record for the user,
    never read back by the computation).
    """

    name: str
    backend: str = "auto"
    normalize: str | Normalize = "softmax"
    served: Counter = field(default_factory=Counter, compare=False, repr=False)

    def __call__(
        self,
        module: torch.nn.Module,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        attention_mask: Tensor | None,
        scaling: float | None = None,
        dropout: float = 0.0,
        **kwargs,
    ) -> tuple[Tensor, Tensor | None]:
        """q (b, h, i, d), k (b, g, j, d), v (b, g, j, e) -> (out (b, i, h, e), W | None)."""
        for kw in _UNSUPPORTED:
            if kwargs.get(kw) is not None:
                raise ValueError(f"attn_implementation={self.name!r} does not support {kw}=")
        h, g = query.shape[1], key.shape[1]
        if h % g:
            raise ValueError(f"query heads ({h}) must be a multiple of key/value heads ({g})")
        # grouped-query attention: sa.attention reads kv head t for query heads t·(h/g) ...

        call = _arguments(module, query, key, attention_mask, scaling, dropout, kwargs)
        call["normalize"] = self.normalize
        try:
            chosen = explain_dispatch(query, key, value, backend=self.backend, **call).chosen
        except ValueError as exc:
            raise ValueError(f"attn_implementation={self.name!r}: {exc}") from exc
        self.served[chosen] += 1
        log.debug("%s: layer %s served by %s", self.name, getattr(module, "layer_idx", "?"), chosen)

        result = attention(query, key, value, backend=chosen, **call)
        out, w = result if call["return_weights"] else (result, None)
        return out.transpose(1, 2).contiguous(), w  # (b, h, i, e) -> (b, i, h, e)


def register(name: str = "selfattention", **defaults) -> Bridge:
    """Register ``name`` as an ``attn_implementation`` that runs through ``sa.attention``.

    Args:
        name: the string to pass as ``attn_implementation=`` (``from_pretrained``,
            ``from_config``, ``model.set_attn_implementation``).
        **defaults: ``backend`` ("auto" or a name of ``sa.functional.backends.REGISTRY``;
            "auto" picks one that returns weights when ``output_attentions=True``) and
            ``normalize`` (as ``sa.attention``; anything but "softmax" changes the model).

    Returns:
        The registered ``Bridge`` (``bridge.served`` counts the calls each backend served).
        Registering the same name again replaces the earlier bridge.
    """
    if not isinstance(name, str) or not name.strip() or "/" in name or "|" in name:
        raise ValueError(f"name must be a non-empty string without '/' or '|', got {name!r}")
    if any(name == r or name.startswith(r) for r in _RESERVED):
        raise ValueError(f"name must not start with any of {list(_RESERVED)}, got {name!r}")
    allowed = ("backend", "normalize")
    unknown = sorted(set(defaults) - set(allowed))
    if unknown:
        raise TypeError(f"register() got unexpected argument(s) {unknown}; expected {allowed}")
    backend = check_backend(defaults.get("backend", "auto"), REGISTRY, name="backend")
    normalize = defaults.get("normalize", "softmax")
    check_normalize(normalize, name="normalize")
    bridge = Bridge(name=name, backend=backend, normalize=normalize)
    AttentionInterface.register(name, bridge)
    # Without a mask function of its own, transformers would hand a custom name no mask at all.
    AttentionMaskInterface.register(name, sdpa_mask)
    log.debug("registered attn_implementation=%r (transformers %s)", name, _hf.__version__)
    return bridge
