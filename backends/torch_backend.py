"""The PyTorch backend: forward by torch, vjp by torch.autograd.

torch's behaviour passes through unchanged, including where it departs from the reference:
  * all targets ignored under "mean": the loss is NaN (as in the reference) but the gradient is 0,
    not NaN;
  * probability targets with a -inf logit: NaN (0 * -inf), where the reference takes 0 log 0 = 0;
  * an out-of-range or negative target raises IndexError, not ValueError.
torch has no temperature argument: for tau != 1 the adapter computes softmax((x - max x)/tau) with the
max detached, the stable form DESIGN.md asks for, written in torch.

The LM head (linear_cross_entropy, its vjp with respect to hidden, weight and bias by autograd), three ways:
`torch` composes it as users write it, F.linear(h, W, b), then cap * tanh(logits / cap) for soft-capping,
F.cross_entropy, and the z-loss z * logsumexp(logits)**2 over the tokens not ignored (mean: over their
count); `torch-linear-ce` calls torch 2.13's F.linear_cross_entropy with options=None (its reference path,
which holds every logit) and `torch-linear-ce-chunked` with options=LinearCrossEntropyOptions() (its chunked
path); F.linear_cross_entropy has no z-loss and no soft-cap, so those two decline them.

The loss family is written in torch the way a torch user writes it: focal as
-alpha_t (1 - exp(logp_t))**gamma logp_t, MSE on torch.softmax, the hinge as
clamp(margin - (z_t - amax_{j != t} z_j), min=0), entropy as torch.special.entr, KL as F.kl_div(q.log(), p)
and H(p, q) as -xlogy(p, q). Their departures (xentcheck.semantics): autograd through (1 - p_t)**gamma is
NaN at a -inf target logit and, for 0 < gamma < 1, where 1 - p_t rounds to 0; clamp passes the gradient
at the hinge's kink; kl_div is NaN where p_i = q_i = 0 and its gradient NaN where p_i = 0; xlogy's
gradient is 0 at p_i = q_i = 0.
"""
from __future__ import annotations

import numpy as np

from ..records import OPS
from ..reference import validation
from ..reference.dtypes import bfloat16
from .contract import Backend


class TorchBackend(Backend):
    """torch eager (or `compiled`: each op through torch.compile, Inductor), autograd for the vjp."""
    name = "torch"
    framework = "torch"  # xentcheck.semantics: torch's own departures are semantic differences

    def __init__(self, device: str = "cpu", compiled: bool = False, linear: str = "composed"):
        """`linear`: how linear_cross_entropy is computed: "composed" (matmul, soft-cap, F.cross_entropy,
        z-loss), "reference" or "chunked" (F.linear_cross_entropy with options None or
        LinearCrossEntropyOptions())."""
        import torch

        from .contract import BackendUnavailable

        if device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable("torch-cuda: torch sees no CUDA device here")
        self.torch, self.device, self.compiled = torch, device, compiled
        self._sync = torch.cuda.synchronize if device != "cpu" else (lambda: None)
        if device != "cpu":
            self.name = f"torch-{device}"
        if compiled:
            self.name = "torch-compile" if device == "cpu" else f"torch-compile-{device}"
            # never falling back to eager after a few recompiles (new options, dtypes)
            torch._dynamo.config.cache_size_limit = torch._dynamo.config.accumulated_cache_size_limit = 1 << 16
            try:
                torch.compile(lambda a: torch.exp(a) + 1, dynamic=False)(torch.ones(4, device=device))
            except Exception as error:  # noqa: BLE001 - no C++ compiler, no Triton, ...
                raise BackendUnavailable(f"{self.name}: torch.compile does not work here: "
                                         f"{type(error).__name__}: {' '.join(str(error).split())[:200]}") from None
        if linear not in ("composed", "reference", "chunked"):
            raise ValueError(f"linear: must be 'composed', 'reference' or 'chunked'; got {linear!r}")
        if linear != "composed":
            if not hasattr(torch.nn.functional, "linear_cross_entropy"):
                raise BackendUnavailable(f"torch {torch.__version__} has no F.linear_cross_entropy (torch >= 2.13)")
            self.name = "torch-linear-ce" + ("-chunked" if linear == "chunked" else "")
        self.linear = linear
        self._compiled = {}
        if compiled:
            self.jvp = None  # forward mode does not go through Inductor (torch.func.jvp runs eager): not offered
        self.note = (("Inductor; a first shape compiled static, then dynamic shapes (torch's default); bench times "
                      "a static compile per shape; " if compiled else "eager; ")
                     + (f"{torch.get_num_threads()} threads (torch's default)" if device == "cpu"
                        else torch.cuda.get_device_name()))
        F = torch.nn.functional
        self._ops = {
            "softmax": lambda t, axis=-1, temperature=1.0: torch.softmax(self._scaled(t, axis, temperature), axis),
            "log_softmax": lambda t, axis=-1, temperature=1.0: torch.log_softmax(
                self._scaled(t, axis, temperature), axis),
            "logsumexp": lambda t, axis=-1: torch.logsumexp(t, axis),
            "cross_entropy": self._cross_entropy,
            "focal_loss": self._focal_loss,
            "mse_loss": self._mse_loss,
            "multiclass_hinge_loss": self._multiclass_hinge_loss,
            "entropy": lambda p: torch.special.entr(p).sum(-1),
            "kl_divergence": lambda p, q: F.kl_div(self._like(q, p).log(), p, reduction="none").sum(-1),
            "distribution_cross_entropy": lambda p, q: -torch.special.xlogy(p, self._like(q, p)).sum(-1),
            "linear_cross_entropy": self._linear_cross_entropy,
        }

    # -- conversions ---------------------------------------------------------------------------
    def _in(self, array):
        if isinstance(array, self.torch.Tensor):
            return array
        a = np.asarray(array)
        if a.dtype == bfloat16:
            return self.torch.from_numpy(a.view(np.uint16).copy()).view(self.torch.bfloat16).to(self.device)
        return self.torch.from_numpy(np.array(a, copy=True)).to(self.device)

    def _x(self, x):
        """The op's input: integer logits in float64, as the contract says (torch would promote them to its
        default float32, or decline them in its kernels)."""
        return x if isinstance(x, self.torch.Tensor) else self._in(validation.as_float_array(x, "x"))

    def _out(self, tensor) -> np.ndarray:
        t = tensor.detach().cpu()
        if t.dtype == self.torch.bfloat16:
            return t.view(self.torch.uint16).numpy().view(bfloat16)
        return t.numpy()

    def _scaled(self, t, axis, temperature):
        tau = validation.check_temperature(temperature)
        if tau == 1.0:
            return t
        return (t - t.amax(dim=axis, keepdim=True).detach()) / tau

    def _classes_second(self, t):
        return t.movedim(-1, 1) if t.ndim >= 2 else t

    def _target(self, target, logits):
        target = self._in(target)
        if target.is_floating_point():
            return self._classes_second(target.to(logits.dtype))
        return target.long()

    def _weight(self, weight, logits):
        return None if weight is None else self._in(weight).to(logits.dtype)

    def _like(self, array, tensor):
        return self._in(array).to(tensor.dtype)

    # -- the loss family, in torch ----------------------------------------------------------------
    def _reduce(self, losses, reduction):
        return losses if reduction == "none" else losses.sum() if reduction == "sum" else losses.mean()

    def _focal_loss(self, t, target, gamma=2.0, alpha=None, reduction="mean"):
        index = self._in(target).long().unsqueeze(-1)
        logp = self.torch.log_softmax(t, -1).gather(-1, index).squeeze(-1)
        losses = -(1 - logp.exp()) ** gamma * logp
        if alpha is not None:
            a = self._like(np.asarray(alpha), t)
            losses = (a if a.ndim == 0 else a[index.squeeze(-1)]) * losses
        return self._reduce(losses, reduction)

    def _mse_loss(self, t, target, form="full", reduction="mean"):
        index = self._in(target).long()
        p = self.torch.softmax(t, -1)
        if form == "target":
            losses = (p.gather(-1, index.unsqueeze(-1)).squeeze(-1) - 1) ** 2
        else:
            losses = ((p - self.torch.nn.functional.one_hot(index, t.shape[-1]).to(t.dtype)) ** 2).sum(-1)
        return self._reduce(losses, reduction)

    def _multiclass_hinge_loss(self, t, target, margin=1.0, reduction="mean"):
        index = self._in(target).long()
        z_t = t.gather(-1, index.unsqueeze(-1)).squeeze(-1)
        others = t.masked_fill(self.torch.nn.functional.one_hot(index, t.shape[-1]).bool(), float("-inf"))
        return self._reduce(self.torch.clamp(margin - (z_t - others.amax(-1)), min=0), reduction)

    # -- the LM head -------------------------------------------------------------------------------
    def _cross_entropy(self, t, target, reduction="mean", weight=None, ignore_index=-100, label_smoothing=0.0,
                       z_loss=0.0, softcap=None):
        """F.cross_entropy; with z-loss and soft-capping composed in torch (Gemma 2's cap * tanh(l / cap), PaLM's
        z_loss * logsumexp(l) ** 2 per valid example, its mean over the valid examples)."""
        torch = self.torch
        logits = t if softcap is None else softcap * torch.tanh(t / softcap)
        target = self._target(target, logits)
        loss = torch.nn.functional.cross_entropy(self._classes_second(logits), target,
                                                 weight=self._weight(weight, logits), ignore_index=ignore_index,
                                                 reduction=reduction, label_smoothing=label_smoothing)
        if not z_loss:
            return loss
        valid = (torch.ones(logits.shape[:-1], dtype=torch.bool, device=logits.device) if target.is_floating_point()
                 else target != ignore_index)
        # in float32 for float16 and bfloat16 (lse^2 overflows float16 from lse = 256), and 0 where ignored
        # (a mask multiplied in would give inf * 0 = NaN there)
        lse = torch.logsumexp(logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits, -1)
        z = torch.where(valid, z_loss * lse ** 2, 0.0)
        z = z if reduction == "none" else z.sum() if reduction == "sum" else z.sum() / valid.sum()
        return loss + z.to(loss.dtype)

    def _linear_cross_entropy(self, h, weight, target, bias=None, reduction="mean", class_weight=None,
                              ignore_index=-100, label_smoothing=0.0, z_loss=0.0, softcap=None):
        torch, F = self.torch, self.torch.nn.functional
        weight, bias = self._like(weight, h), None if bias is None else self._like(bias, h)
        target, class_weight = self._in(target).long(), self._weight(class_weight, h)
        tokens = h.reshape(-1, h.shape[-1])
        if self.linear != "composed":
            if z_loss or softcap is not None:
                raise NotImplementedError(f"{self.name}: F.linear_cross_entropy has no "
                                          f"{'z-loss' if z_loss else 'soft-cap'}")
            options = torch.nn.LinearCrossEntropyOptions() if self.linear == "chunked" else None
            out = F.linear_cross_entropy(tokens, weight, target.reshape(-1), linear_bias=bias, weight=class_weight,
                                         reduction=reduction, ignore_index=ignore_index,
                                         label_smoothing=label_smoothing, options=options)
            return out.reshape(h.shape[:-1]) if reduction == "none" else out
        loss = self._cross_entropy(F.linear(tokens, weight, bias), target.reshape(-1), reduction, class_weight,
                                   ignore_index, label_smoothing, z_loss, softcap)
        return loss.reshape(h.shape[:-1]) if reduction == "none" else loss

    def _gradients(self, op, x, cotangent, kwargs):
        """(d x, d weight, d bias or None) by autograd, for an op with several inputs' gradients."""
        inputs = {"x": self._in(x).detach().requires_grad_(True)}
        for name in OPS[op].gradients[1:]:
            if kwargs.get(name) is not None:
                inputs[name] = self._like(kwargs[name], inputs["x"]).detach().requires_grad_(True)
        out = self._function(op)(inputs["x"], **dict(kwargs, **{k: v for k, v in inputs.items() if k != "x"}))
        grads = self.torch.autograd.grad(out, list(inputs.values()), self._in(cotangent).to(out.dtype),
                                         allow_unused=True)
        found = {k: (self.torch.zeros_like(t) if g is None else g) for (k, t), g in zip(inputs.items(), grads)}
        return tuple(self._out(found[k]) if k in found else None for k in OPS[op].gradients)

    # -- the contract ----------------------------------------------------------------------------
    def _function(self, op):
        if op not in self._ops:
            raise NotImplementedError(f"{self.name}: no {op} in torch")
        if not self.compiled:
            return self._ops[op]
        if op not in self._compiled:
            # dynamic=None: a second shape recompiles with dynamic shapes, which later shapes reuse (a check or
            # compare of hundreds of shapes would otherwise compile C++ for each)
            self._compiled[op] = self.torch.compile(self._ops[op])
        return self._compiled[op]

    def _grad(self, op, t, cotangent, kwargs, create_graph=False):
        t = t.detach().requires_grad_(True)
        out = self._function(op)(t, **kwargs)
        (grad,) = self.torch.autograd.grad(out, t, self._in(cotangent).to(out.dtype), allow_unused=True,
                                           create_graph=create_graph)
        return t, (self.torch.zeros_like(t) if grad is None else grad)

    def evaluate(self, op, x, **kwargs):
        return self._out(self._function(op)(self._x(x), **kwargs))

    def vjp(self, op, x, cotangent, **kwargs):
        if op in OPS and OPS[op].gradients != ("x",):
            return self._gradients(op, x, cotangent, kwargs)
        return self._out(self._grad(op, self._x(x), cotangent, kwargs)[1])

    def hvp(self, op, x, cotangent, tangent, **kwargs):
        """d/dx <vjp(op, x, cotangent), tangent>: a Hessian-vector product by double backward."""
        if self.compiled:  # "torch.compile with aot_autograd does not currently support double backward"
            raise NotImplementedError(f"{self.name}: torch.compile (AOTAutograd) has no double backward, so no hvp")
        t, grad = self._grad(op, self._x(x), cotangent, kwargs, create_graph=True)
        (second,) = self.torch.autograd.grad(grad, t, self._in(tangent).to(t.dtype))
        return self._out(second)

    def jvp(self, op, x, tangent, **kwargs):
        """J t by forward mode (torch.func.jvp: dual tensors through the op's forward AD formulas)."""
        f, t = self._function(op), self._x(x)
        _, out = self.torch.func.jvp(lambda a: f(a, **kwargs), (t,), (self._in(tangent).to(t.dtype),))
        return self._out(out)

    def prepare(self, op, kind, x, cotangent=None, **kwargs):
        """The inputs moved to torch once; a compiled backend starts afresh (its first call compiles)."""
        if self.compiled:
            self.torch._dynamo.reset()
            self._compiled.clear()
        t, f = self._in(x), self._function(op)
        kwargs = {k: self._in(a) if isinstance(a, np.ndarray) else a for k, a in kwargs.items()}
        if kind == "value":
            return lambda: (f(t, **kwargs), self._sync())
        v = self._in(cotangent)
        return lambda: (self._grad(op, t, v, kwargs), self._sync())
