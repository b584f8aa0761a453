"""The model registry: ``get(name, num_classes, input_shape) -> Model`` and ``names()``.

The attacked models of Zhu, Huang, Xie, "Privacy Attack in Federated Learning is Not Easy: An
Experimental Study" (arXiv 2409.19301), by the names its reference code uses: cnn, cnn3, mlp,
fc2, lenet, resnet18, vgg16; plus lenet_dlg, the DLG paper's own LeNet, and rgap_cnn, the small
LeakyReLU CNN that R-GAP inverts (`leakjax.attacks.rgap`). Everything outside this
package sees a model only through :class:`Model`: pure ``init`` / ``apply`` / ``features`` over
variable pytrees, the last linear layer always the ``nn.Dense`` named ``"head"``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from leakjax.models import cnn, conv, lenet, mlp, resnet, vgg
from leakjax.models.generators import DMGANDiscriminator
from leakjax.types import Array, ConfigError, PRNGKey, Variables


@dataclasses.dataclass(frozen=True)
class Model:
    """A registered network with pure functions over its variables.

    Attributes:
        name: registry name.
        module: the ``flax.linen`` module. Its ``__call__(x, train, mask, return_features)``
            returns logits, or with ``return_features="head"`` (or another Dense's name, e.g.
            ``"fc1"``) that layer's input.
        input_shape: ``(H, W, C)`` of one NHWC input.
        num_classes: number of logits.
        has_batch_stats: the variables hold BatchNorm running statistics.
    """

    name: str
    module: nn.Module
    input_shape: tuple[int, int, int]
    num_classes: int
    has_batch_stats: bool

    def init(self, key: PRNGKey) -> Variables:
        """Fresh float32 variables ``{'params': ...[, 'batch_stats': ...]}`` (torch-like init).

        Compiled once per module and input shape (and kept in the persistent compilation
        cache): run op by op, ResNet-18's init compiled ~600 small programs, 6-8 s in every
        fresh process; jitted it takes 0.6 s (BUILD_NOTES, "Model init").
        """
        return _init(self.module, self.input_shape, key)

    def apply(
        self, variables: Variables, x: Array, train: bool = False, mask: Array | None = None
    ) -> tuple[Array, Variables]:
        """Logits ``[B, num_classes]`` of normalized NHWC float32 images ``x``.

        Args:
            variables: from :meth:`init` (or trained).
            x: ``[B, H, W, C]``.
            train: with BatchNorm, normalize with the statistics of this batch (the rows where
                ``mask`` is true) and return running averages updated with momentum 0.9
                (torch's 0.1); otherwise use the running averages.
            mask: ``[B]`` bool or 0/1 float, the real (non-padding) rows; None means all.

        Returns:
            ``(logits, variables')``; ``variables'`` is ``variables`` itself unless BatchNorm
            statistics were updated.
        """
        if train and self.has_batch_stats:
            logits, updates = self.module.apply(
                variables, x, train=True, mask=mask, mutable=["batch_stats"]
            )
            return logits, {**variables, **updates}
        return self.module.apply(variables, x, train=False), variables

    def features(
        self,
        variables: Variables,
        x: Array,
        train: bool = False,
        mask: Array | None = None,
        layer: str = "head",
    ) -> Array:
        """The input ``[B, F]`` of the Dense ``layer`` (default: the last, ``"head"``).

        Used by label inference (the head's input) and by CPA's feature inversion (the input of
        the attacked ``"fc1"``). ``train`` and ``mask`` act as in :meth:`apply`; statistics
        updates are discarded.
        """
        if train and self.has_batch_stats:
            z, _ = self.module.apply(
                variables, x, train=True, mask=mask, return_features=layer, mutable=["batch_stats"]
            )
            return z
        return self.module.apply(variables, x, train=False, return_features=layer)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init(module: nn.Module, input_shape: tuple[int, int, int], key: PRNGKey) -> Variables:
    dummy = jnp.zeros((1, *input_shape), jnp.float32)
    return dict(module.init(key, dummy, train=False))


@dataclasses.dataclass(frozen=True)
class _Entry:
    build: Callable[..., nn.Module]  # (num_classes, input_shape, impl, **options) -> module
    min_hw: Callable[[dict[str, Any]], int]  # smallest H and W the model accepts
    has_batch_stats: Callable[[dict[str, Any]], bool]


def _cnn(num_classes, input_shape, impl, variant: str = "auto"):
    if variant not in ("auto", "cifar", "mnist"):
        raise ConfigError(f"model option variant={variant!r} is not one of auto, cifar, mnist")
    if variant == "auto":
        variant = "mnist" if input_shape[2] == 1 else "cifar"
    return cnn.CNN(num_classes, variant=variant, impl=impl)


def _cnn_min(opts):
    return 6 if opts.get("variant") == "mnist" else 2


def _vgg(num_classes, input_shape, impl, head: str = "small", batch_norm: bool = False):
    if head not in ("small", "cpa"):
        raise ConfigError(f"model option head={head!r} is not one of small, cpa")
    return vgg.VGG16(num_classes, head=head, batch_norm=bool(batch_norm), impl=impl)


def _dmgan_discriminator(num_classes, input_shape, impl, width: int = 64):
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ConfigError(f"model option width={width!r} must be a positive int")
    slope = 0.01 if input_shape[2] == 1 else 0.2  # the reference's MNIST / CIFAR variants
    return DMGANDiscriminator(num_classes, width=width, negative_slope=slope, impl=impl)


_REGISTRY: dict[str, _Entry] = {
    "cnn": _Entry(_cnn, _cnn_min, lambda o: False),
    "cnn3": _Entry(
        lambda n, s, impl: cnn.CNN3(n, impl=impl),
        lambda o: 4,
        lambda o: False,
    ),
    "dmgan_discriminator": _Entry(_dmgan_discriminator, lambda o: 4, lambda o: False),
    "mlp": _Entry(lambda n, s, impl: mlp.MLP(n), lambda o: 1, lambda o: False),
    "fc2": _Entry(lambda n, s, impl: mlp.FC2(n), lambda o: 1, lambda o: False),
    "lenet": _Entry(
        lambda n, s, impl: lenet.LeNet(n, impl=impl),
        lambda o: 16,
        lambda o: False,
    ),
    "lenet_dlg": _Entry(
        lambda n, s, impl: lenet.LeNetDLG(n, impl=impl),
        lambda o: 4,
        lambda o: False,
    ),
    "rgap_cnn": _Entry(
        lambda n, s, impl: cnn.RGAPCNN(n, impl=impl),
        lambda o: 4,
        lambda o: False,
    ),
    "resnet18": _Entry(
        lambda n, s, impl: resnet.ResNet18(n, impl=impl),
        lambda o: 8,
        lambda o: True,
    ),
    "vgg16": _Entry(
        _vgg,
        lambda o: 32,
        lambda o: bool(o.get("batch_norm", False)),
    ),
}


def names() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def _options(entry: _Entry) -> list[str]:
    params = list(inspect.signature(entry.build).parameters)[3:]
    return params


def options(name: str) -> dict[str, Any]:
    """The options of model ``name`` with their defaults (``model.<option>`` in a config):
    cnn ``variant``, vgg16 ``head`` and ``batch_norm``, dmgan_discriminator ``width``."""
    if name not in _REGISTRY:
        raise ConfigError(f"model.name={name!r} is not one of {', '.join(names())}")
    params = inspect.signature(_REGISTRY[name].build).parameters
    return {k: params[k].default for k in _options(_REGISTRY[name])}


def get(
    name: str,
    num_classes: int,
    input_shape: tuple[int, int, int],
    *,
    conv_impl: str = "auto",
    **kwargs: Any,
) -> Model:
    """Builds the registered model ``name``.

    Args:
        name: one of :func:`names`.
        num_classes: number of logits (any positive int).
        input_shape: ``(H, W, C)`` of NHWC inputs.
        conv_impl: convolution implementation, one of
            :data:`leakjax.models.conv.IMPLS` ("auto": the fastest measured on this backend).
        **kwargs: model options: cnn ``variant`` ("auto" | "cifar" | "mnist"); vgg16 ``head``
            ("small" | "cpa") and ``batch_norm`` (bool); dmgan_discriminator ``width`` (int,
            the first convolution's channels; 64: the reference's).

    Returns:
        A :class:`Model`.

    Raises:
        ConfigError: unknown name, option or conv_impl, or unusable sizes.
    """
    if name not in _REGISTRY:
        raise ConfigError(f"model={name!r} is not one of {', '.join(names())}")
    entry = _REGISTRY[name]
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes={num_classes!r} must be a positive int")
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else ()
    if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ConfigError(f"input_shape={input_shape!r} must be (H, W, C) of positive ints")
    conv.resolve_impl(conv_impl)
    allowed = _options(entry)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ConfigError(
            f"model {name!r} has no option(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(allowed) or 'none'}"
        )
    module = entry.build(num_classes, shape, conv_impl, **kwargs)
    opts = dict(kwargs)
    if name == "cnn":
        opts["variant"] = module.variant
    min_hw = entry.min_hw(opts)
    if min(shape[0], shape[1]) < min_hw:
        raise ConfigError(
            f"input_shape={shape!r} is too small for model {name!r} (H and W >= {min_hw})"
        )
    return Model(
        name=name,
        module=module,
        input_shape=shape,
        num_classes=num_classes,
        has_batch_stats=entry.has_batch_stats(opts),
    )


def param_count(variables: Variables) -> int:
    """Number of trainable parameters (``variables['params']``)."""
    return sum(int(p.size) for p in jax.tree.leaves(variables["params"]))
