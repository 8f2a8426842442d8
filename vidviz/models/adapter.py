"""One interface for every explained model: vidviz's own ResNets, torchvision's video models, Hugging Face's.

Every explainer in :mod:`vidviz.explain` talks to a model through these members, and nothing else:

============================  ==========================================================================
``classes``, ``spec``          class names by index; the input it wants (:class:`~vidviz.data.video.InputSpec`)
``layout``                     its own input layout: ``"BCTHW"`` (3D CNNs, Swin, MViT) or ``"BTCHW"`` (HF)
``layer_names``                the layers offered in pickers, first to last (module paths of the original
                               model: what ``model.get_submodule(name)`` takes); any other module path that
                               gives a map works too
``last_layer``                 the default layer ("the last block")
``forward(x)``                 x (B, 3, T, H, W) in vidviz's layout -> logits (B, K)
``model_input(x)``             x in the model's own layout (what it receives)
``run(x, stop=layer)``         the layer's output as a grid (B, C, T', h, w)
``features_logits(x, layer)``  the grid and the logits from one forward
``rest(a, layer, x)``          logits (B, K) when the layer's output is replaced by the grid ``a``
``head_weights(layer)``        W (K, C) when logits = W mean(a) + b exactly (the all-classes fast path), else None
``entry_split(layer)``         an :class:`EntrySplit` where the block after the layer reads it through
                               convolutions alone (Grad-CAM's pooled gradient in closed form), else None
``cascade()``                  (name, module) from the output back to the input: the randomisation check's order
============================  ==========================================================================

:class:`HookedVideoModel` gives any ``nn.Module`` these members with a forward hook on the named module that
reads the layer's output or replaces it, per thread. A :class:`Grid` says how the layer's output maps to
(C, T', h, w): channels-first 5D maps (3D CNNs), channels-last 5D maps (Swin), or token sequences, with or
without class tokens in front, whose grid (T', h, w) comes from the model's config or from the layer itself
(MViT returns it), never from the token count.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from vidviz.data.video import InputSpec
from vidviz.errors import ExplainError


@dataclass(frozen=True)
class EntrySplit:
    """The network after a layer, split at the convolutions that read the layer's output A.

    ``entry(A)`` gives (z, zid): the main path's first convolution ``conv`` of A, and the shortcut's convolution
    ``conv_id`` of A (or A itself where the shortcut is the identity, ``conv_id`` None); ``rest(z, zid)`` gives
    the logits (B, K). Grad-CAM's weights need only dy/dA summed over positions, which the gradients of z and
    zid give in closed form (:func:`vidviz.explain.cam.pooled_input_grad`), so the backward stops there.
    """

    entry: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    rest: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    conv: nn.Conv3d
    conv_id: nn.Conv3d | None


@dataclass(frozen=True)
class Grid:
    """How one layer's output (native layout) maps to a (B, C, T', h, w) grid and back."""

    kind: str  # "cthw": (B, C, T', h, w); "thwc": (B, T', h, w, C); "tokens": (B, prefix + T'hw, C)
    prefix: int = 0  # tokens before the grid (class tokens): not part of the map, kept as they are
    thw: tuple[int, int, int] | None = None  # the token grid (tokens only)
    order: str = "thw"  # the grid tokens' order: "thw" (time slowest) or "hwt" (TimeSformer: time fastest)

    def to_grid(self, y: torch.Tensor) -> torch.Tensor:
        """Native output y -> (B, C, T', h, w)."""
        if self.kind == "cthw":
            return y
        if self.kind == "thwc":
            return y.permute(0, 4, 1, 2, 3)  # (B, T', h, w, C) -> (B, C, T', h, w)
        t, h, w = self.thw
        g = y[:, self.prefix:]  # (B, T'hw, C)
        if self.order == "thw":
            return g.reshape(g.shape[0], t, h, w, g.shape[-1]).permute(0, 4, 1, 2, 3)  # (B, C, T', h, w)
        return g.reshape(g.shape[0], h, w, t, g.shape[-1]).permute(0, 4, 3, 1, 2)  # (B, C, T', h, w)

    def to_native(self, a: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """The grid a (B, C, T', h, w) in the native layout of ``like`` (its class tokens kept, batch expanded)."""
        if self.kind == "cthw":
            return a
        if self.kind == "thwc":
            return a.permute(0, 2, 3, 4, 1)  # (B, T', h, w, C)
        b, c = a.shape[:2]
        g = a.permute(0, 2, 3, 4, 1) if self.order == "thw" else a.permute(0, 3, 4, 2, 1)  # (B, T', h, w, C) / (B, h, w, T', C)
        g = g.reshape(b, -1, c)  # (B, T'hw, C)
        if not self.prefix:
            return g
        return torch.cat([like[:, :self.prefix].expand(b, -1, -1).to(g.dtype), g], dim=1)  # (B, prefix + T'hw, C)


class _Stop(Exception):
    """Raised by a reading hook to end a forward at the layer (nothing after it is computed)."""


# Hooks and threads: every hooked module carries one permanent forward hook, registered once, that calls the
# action the *current thread* set for that module (none: it does nothing). So one model serves many threads at
# once (the app's sessions), each forward seeing only its own reading or replacing hook.
_LOCAL = threading.local()
_HOOK_LOCK = threading.Lock()


def _dispatch(mod: nn.Module, inp, out):
    fn = getattr(_LOCAL, "actions", {}).get(id(mod))
    return None if fn is None else fn(out)


#: (layer name, the module's first output, the whole output) -> its Grid, or ExplainError
GridRule = Callable[[str, torch.Tensor, object], Grid]


class HookedVideoModel(nn.Module):
    """Any video classifier ``net`` behind the adapter interface (see the module's docstring).

    ``layers`` are module paths in ``net``; ``grid_rule`` says how a layer's output is a map;
    ``head_weights(net, layer)`` gives the fast path's (K, C) weights for a layer, or None; ``logits_of`` reads the
    logits from ``net``'s output (Hugging Face returns an object with ``.logits``); ``tails[layer](net, a)`` runs
    the network after a layer; ``entry_splits(net, layer)`` gives an :class:`EntrySplit`. Each takes the network
    it runs on, never keeps one: a copy of the adapter (the randomisation check's) then computes with its own.
    """

    def __init__(self, net: nn.Module, classes: Sequence[str], spec: InputSpec, arch: str, layers: Sequence[str],
                 default_layer: str, grid_rule: GridRule, layout: str = "BCTHW",
                 head_weights: Callable[[nn.Module, str], torch.Tensor | None] | None = None,
                 logits_of: Callable[[object], torch.Tensor] | None = None, arch_kwargs: dict | None = None,
                 head_modules: Sequence[str] = (), notes: str = "",
                 tails: dict[str, Callable[[nn.Module, torch.Tensor], torch.Tensor]] | None = None,
                 entry_splits: Callable[[nn.Module, str], EntrySplit | None] | None = None):
        super().__init__()
        self.net = net
        self.classes = list(classes)
        self.spec = spec
        self.arch = arch
        self.arch_kwargs = dict(arch_kwargs or {})
        self._layers = list(layers)
        self._default = default_layer
        self._grid_rule = grid_rule
        self.layout = layout
        self._head_weights = head_weights or (lambda net, layer: None)
        self._logits_of = logits_of or (lambda out: out)
        self._head_modules = list(head_modules)
        self.notes = notes  # what a researcher should know about this adapter's layers (shown in the app)
        self._tails = dict(tails or {})  # layer -> the network after it, where the model is that plain a sequence
        self._entry_splits = entry_splits or (lambda net, layer: None)

    # ------------------------------------------------------------ what the pickers show
    @property
    def layer_names(self) -> list[str]:
        return list(self._layers)

    @property
    def last_layer(self) -> str:
        return self._default

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def has_layer(self, name: str) -> bool:
        try:
            self.net.get_submodule(name)
        except AttributeError:
            return False
        return bool(name)

    def _module(self, name: str) -> nn.Module:
        if not self.has_layer(name):
            raise ExplainError(f"unknown layer {name!r}: not a module of this {self.arch} "
                               f"(layers: {', '.join(self._layers)}; any module path of the model works)")
        return self.net.get_submodule(name)

    # ------------------------------------------------------------ forward passes
    def model_input(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, T, H, W) -> the model's own layout."""
        return x if self.layout == "BCTHW" else x.transpose(1, 2)  # (B, T, 3, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._logits_of(self.net(self.model_input(x)))  # (B, K)

    @contextmanager
    def _acting(self, layer: str, fn) -> Iterator[None]:
        """While inside, ``fn(output)`` runs after ``layer`` in this thread's forwards (its result, if not None,
        replaces the output)."""
        mod = self._module(layer)
        with _HOOK_LOCK:
            if not getattr(mod, "_vidviz_hooked", False):
                mod.register_forward_hook(_dispatch)
                mod._vidviz_hooked = True
        actions = _LOCAL.__dict__.setdefault("actions", {})
        if id(mod) in actions:
            raise ExplainError(f"layer {layer!r} is already being read in this thread")
        actions[id(mod)] = fn
        try:
            yield
        finally:
            actions.pop(id(mod), None)

    def _grid(self, name: str, out) -> tuple[Grid, torch.Tensor]:
        y = out[0] if isinstance(out, (tuple, list)) else out
        if not isinstance(y, torch.Tensor):
            raise ExplainError(f"layer {name!r} does not output a tensor")
        return self._grid_rule(name, y, out), y

    def features_logits(self, x: torch.Tensor, layer: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(the layer's grid (B, C, T', h, w), logits (B, K)) from one forward of x (B, 3, T, H, W)."""
        layer = layer or self.last_layer
        seen = []

        def read(out):
            grid, y = self._grid(layer, out)
            seen.append(grid.to_grid(y).clone())  # a copy: the model may change y in place next

        with self._acting(layer, read):
            logits = self(x)  # (B, K)
        if len(seen) != 1:
            raise ExplainError(f"layer {layer!r} ran {len(seen)} times in one forward; name a layer that runs once")
        return seen[0], logits

    def run(self, x: torch.Tensor, start: str | None = None, stop: str | None = None) -> torch.Tensor:
        """The output of ``stop`` as a grid (B, C, T', h, w); the forward ends there."""
        if start is not None or stop is None:
            raise ExplainError("a hooked model runs from the input to a layer only (use rest() for the part after it)")
        seen = []

        def read(out):
            grid, y = self._grid(stop, out)
            seen.append(grid.to_grid(y).clone())  # a copy: the model may change y in place next
            raise _Stop

        with self._acting(stop, read):
            try:
                self(x)
            except _Stop:
                pass
        if not seen:
            raise ExplainError(f"layer {stop!r} does not run in this model's forward")
        return seen[0]

    def has_tail(self, layer: str) -> bool:
        """Whether the network after ``layer`` is a plain sequence of modules that runs from its output alone."""
        return layer in self._tails

    def entry_split(self, layer: str) -> EntrySplit | None:
        """The network after ``layer`` split at the convolutions that read its output (:class:`EntrySplit`), or
        None where the next block reads it otherwise."""
        return self._entry_splits(self.net, layer) if layer in self._tails else None

    def rest(self, a: torch.Tensor, layer: str, x: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, K) when ``layer``'s output is replaced by the grid a (B, C, T', h, w).

        Where the network after the layer is a plain sequence (:meth:`has_tail`), only that runs; otherwise the
        layers before it run on x (the clip, expanded to a's batch), whose output does not depend on a.
        """
        if layer in self._tails:
            return self._tails[layer](self.net, a)  # (B, K): the grid of a channels-first layer is its output
        if x is None:
            raise ExplainError(f"{self.arch}: the part after a layer needs the clip itself (pass x)")

        def replace(out):
            grid, y = self._grid(layer, out)
            native = grid.to_native(a, y).clone()  # not a itself: the model may add to its input in place
            if isinstance(out, tuple):
                return (native, *out[1:])
            if isinstance(out, list):
                return [native, *out[1:]]
            return native

        with self._acting(layer, replace):
            return self(x.expand(a.shape[0], *x.shape[1:]))  # (B, K)

    def grid_leaf(self, x: torch.Tensor, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward in which the layer's output is a leaf of the autograd graph: (the grid a (B, C, T', h, w),
        requires grad; logits (B, K), a function of a). Gradients with respect to a then cost one backward through
        the part after the layer only (nothing before it is recomputed)."""
        seen = []

        def swap(out):
            grid, y = self._grid(layer, out)
            a = grid.to_grid(y).detach().clone().requires_grad_(True)  # (B, C, T', h, w)
            seen.append(a)
            native = grid.to_native(a, y).clone()  # not a itself: the model may add to it in place
            if isinstance(out, tuple):
                return (native, *out[1:])
            if isinstance(out, list):
                return [native, *out[1:]]
            return native

        with self._acting(layer, swap), torch.enable_grad():
            logits = self(x)  # (B, K)
        if len(seen) != 1:
            raise ExplainError(f"layer {layer!r} ran {len(seen)} times in one forward; name a layer that runs once")
        return seen[0], logits

    def head_weights(self, layer: str) -> torch.Tensor | None:
        """W (K, C) when the logits are W mean_{t,i,j}(a) + b exactly after ``layer``; else None."""
        return self._head_weights(self.net, layer)

    def cascade(self) -> list[tuple[str, nn.Module]]:
        """The classifier's modules, the listed layers from the last back, then everything (what no listed layer
        holds: embeddings, patch merging...), so that the last step has every parameter randomised."""
        mods = [(n, self.net.get_submodule(n)) for n in self._head_modules]
        return mods + [(n, self.net.get_submodule(n)) for n in reversed(self._layers)] + [("all", self.net)]


def tokens_rule(prefix: int, thw: tuple[int, int, int], order: str = "thw") -> GridRule:
    """A Grid rule for token models with a fixed grid from the config: any layer whose output holds
    ``prefix + T'hw`` tokens is a map; anything else is an error naming the shape."""
    want = prefix + thw[0] * thw[1] * thw[2]

    def rule(name: str, y: torch.Tensor, out) -> Grid:
        if y.dim() != 3 or y.shape[1] != want:
            raise ExplainError(f"layer {name!r} outputs {tuple(y.shape)}, not this model's token grid "
                               f"({prefix} class token(s) + {thw[0]}x{thw[1]}x{thw[2]} = {want} tokens); "
                               "name an encoder layer or a module whose output keeps the tokens")
        return Grid("tokens", prefix, tuple(thw), order)

    return rule


def cnn_rule(channels_last: bool = False) -> GridRule:
    """A Grid rule for 3D CNNs (channels-first 5D maps) and Swin (channels-last 5D maps)."""

    def rule(name: str, y: torch.Tensor, out) -> Grid:
        if y.dim() != 5:
            raise ExplainError(f"layer {name!r} outputs {tuple(y.shape)}, not a 5D space-time map")
        return Grid("thwc" if channels_last else "cthw")

    return rule
