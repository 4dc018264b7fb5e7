"""Boundary checks shared by the modules: each error names the argument, what it got and what
was expected."""

from __future__ import annotations

from torch import Tensor

from selfattention.functional.call import check_mask as _check_mask


def check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_probability(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (0.0 <= value < 1.0):
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def check_float_tensor(name: str, x) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def check_sequence(name: str, x, features: int, feature_name: str = "dim") -> Tensor:
    """x must be a float tensor of shape (batch, seq, features)."""
    check_float_tensor(name, x)
    if x.ndim != 3:
        raise ValueError(
            f"{name} must have shape (batch, seq, {feature_name}={features}), got "
            f"{tuple(x.shape)} ({x.ndim}-D); add a batch axis with {name}.unsqueeze(0)"
        )
    if x.shape[-1] != features:
        raise ValueError(
            f"{name} must have {feature_name}={features} features in its last dimension, got "
            f"shape {tuple(x.shape)}"
        )
    if x.shape[1] == 0:
        raise ValueError(f"{name} must have at least one position, got shape {tuple(x.shape)}")
    return x


def check_mask(name: str, mask) -> Tensor | None:
    """None, or a bool mask (True = may attend); the shape is checked where it is known."""
    return None if mask is None else _check_mask(mask, name=name)
