"""Autograd kernels of population passes (:mod:`catalog.nodes` calls them): small batched
products oriented the way MKL runs fast, and layer normalization with a fast forward. Kept
apart from the node definitions so that parsing a spec imports no torch."""

from __future__ import annotations

import functools

import torch
from torch import Tensor


def oriented_bmm(a: Tensor, b: Tensor) -> Tensor:
    """``torch.bmm(a, b)`` (``[N, m, k] @ [N, k, n]``) for batches of small matrices, computed
    the way round that MKL's batched kernels run fast: a product with fewer output columns than
    rows as ``C^T = B^T A^T``, returned as a transposed view. Measured on 8,192 products with 16
    tokens of 8 dims (one thread, whatever the operands' layout): any ``[16, 16] @ [16, 8]`` took
    1.9 ms, the same arithmetic as ``([8, 16] @ [16, 16])^T`` 0.8 ms."""
    if b.shape[-1] < a.shape[-2]:
        return torch.bmm(b.transpose(-1, -2), a.transpose(-1, -2)).transpose(-1, -2)
    return torch.bmm(a, b)


class _SmallBmm(torch.autograd.Function):
    """:func:`oriented_bmm` whose backward is made of oriented products too. Autograd's own
    backward of ``bmm`` hands MKL the slow forms (``[T, T] @ [T, d]`` for the gradient of ``q``
    and ``v``): with it, attention was a third of a ViT population's step. Written with
    ``setup_context``, saving only its inputs, with a forward-mode rule, so ``torch.func``
    transforms (``vmap``, ``hessian``) and double backward (the Hessian-vector products of
    ``weightspace.analysis``) work through it."""

    generate_vmap_rule = True

    @staticmethod
    def forward(a: Tensor, b: Tensor) -> Tensor:
        return oriented_bmm(a, b)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(*inputs)
        ctx.save_for_forward(*inputs)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        a, b = ctx.saved_tensors
        grad_a = small_bmm(grad, b.transpose(-1, -2)) if ctx.needs_input_grad[0] else None
        grad_b = small_bmm(a.transpose(-1, -2), grad) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b

    @staticmethod
    def jvp(ctx, tangent_a: Tensor | None, tangent_b: Tensor | None) -> Tensor:
        a, b = ctx.saved_tensors
        parts = [small_bmm(tangent_a, b) if tangent_a is not None else None,
                 small_bmm(a, tangent_b) if tangent_b is not None else None]
        return sum(t for t in parts if t is not None)


def small_bmm(a: Tensor, b: Tensor) -> Tensor:
    """``torch.bmm(a, b)`` for batches of small matrices, forward and backward each product in
    the orientation MKL runs fast (:func:`oriented_bmm`): the values of
    :func:`oriented_bmm`, bit for bit. A Python-level autograd node costs a few microseconds,
    which a one-network pass of a few small matrices does not win back: those call
    :func:`oriented_bmm` itself."""
    return _SmallBmm.apply(a, b)


class _Normalize(torch.autograd.Function):
    """:func:`normalize`: the forward pass made of reductions and elementwise kernels, the
    backward pass ATen's own layer-norm backward. ATen's fused layer-norm forward runs row by row
    and is slow for short rows: 1.7 ms for 65,536 rows of 16 (one thread), against 0.75 ms for
    these five kernels; its backward, 0.45 ms, is fast. Written like :class:`_SmallBmm`
    (``setup_context``, a forward-mode rule, a differentiable backward) for ``torch.func``
    transforms and Hessian-vector products."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
        mean = x.mean(-1, keepdim=True)                                      # [*, 1]
        centered = x - mean
        rstd = torch.rsqrt((centered * centered).mean(-1, keepdim=True) + eps)  # [*, 1]
        return centered * rstd, mean, rstd

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, _ = inputs
        out, mean, rstd = output
        ctx.mark_non_differentiable(mean, rstd)
        ctx.save_for_backward(x, mean, rstd)
        ctx.save_for_forward(out, rstd)

    @staticmethod
    def backward(ctx, grad: Tensor, _mean: Tensor | None, _rstd: Tensor | None) -> tuple[Tensor, None]:
        x, mean, rstd = ctx.saved_tensors
        grad_x, _, _ = torch.ops.aten.native_layer_norm_backward(
            grad, x, [x.shape[-1]], mean, rstd, None, None, [True, False, False])
        return grad_x, None

    @staticmethod
    def jvp(ctx, tangent: Tensor, _eps: None) -> tuple[Tensor, None, None]:
        # y = c r with c = x - mean(x), r = (mean(c^2) + eps)^(-1/2):
        # dy = r (dc - y mean(y dc)), dc = dx - mean(dx).
        out, rstd = ctx.saved_tensors
        dc = tangent - tangent.mean(-1, keepdim=True)
        return rstd * (dc - out * (out * dc).mean(-1, keepdim=True)), None, None


def normalize(x: Tensor, eps: float) -> Tensor:
    """``F.layer_norm(x, x.shape[-1:], eps=eps)`` without an affine map, for a population's large
    activations (values equal to float rounding; see :class:`_Normalize`)."""
    return _Normalize.apply(x, eps)[0]



def _memory_format(x: Tensor) -> torch.memory_format:
    """Channels last for a 4-d tensor stored so (convolution outputs of a population), else
    row-major."""
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


class _BatchNormTraining(torch.autograd.Function):
    """:func:`batch_norm_training`. The forward pass is torch's kernel; the backward pass takes
    the weight and bias gradients (per-channel sums) from torch's kernel and forms the input
    gradient from them with elementwise products and sums of whole tensors."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor | None, bias: Tensor | None, running_mean: Tensor,
                running_var: Tensor, momentum: float, eps: float) -> Tensor:
        x = x.contiguous(memory_format=_memory_format(x))
        out, mean, invstd = torch.ops.aten.native_batch_norm(
            x, weight, bias, running_mean, running_var, True, momentum, eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight, mean, invstd = ctx.saved_tensors
        w = torch.ones_like(mean) if weight is None else weight
        # In x's layout: with another one (a transposed view from the next node's backward) the
        # kernel's sums took a path where they depended on the channel's position too.
        grad = grad.contiguous(memory_format=_memory_format(x))
        # grad_w = sum(dy * xhat), grad_b = sum(dy) over all but the channel dim: torch's sums
        # do not depend on where a channel sits.
        _, grad_w, grad_b = torch.ops.aten.native_batch_norm_backward(
            grad, x, w, None, None, mean, invstd, True, ctx.eps, [False, True, True])
        grad_x = None
        if ctx.needs_input_grad[0]:
            # dx = w invstd (dy - sum(dy) / n - xhat sum(dy xhat) / n) = a dy + b x + c, with the
            # per-channel a = w invstd, b = -a invstd sum(dy xhat) / n, c = -a sum(dy) / n - b mean.
            n = x.numel() // x.shape[1]
            view = (1, -1, *[1] * (x.dim() - 2))
            a = w * invstd
            b = -a * invstd * grad_w / n
            c = -a * grad_b / n - b * mean
            grad_x = grad * a.view(view) + x * b.view(view) + c.view(view)
        has_affine = weight is not None
        return (grad_x, grad_w if has_affine and ctx.needs_input_grad[1] else None,
                grad_b if ctx.needs_input_grad[2] else None, None, None, None, None)


def batch_norm_training(x: Tensor, weight: Tensor | None, bias: Tensor | None, running_mean: Tensor,
                        running_var: Tensor, momentum: float, eps: float) -> Tensor:
    """``F.batch_norm(x, running_mean, running_var, weight, bias, training=True, momentum, eps)``
    (the running statistics updated in place), for a population whose members are channels:
    ``x [B, P*C, *S]``. torch's own backward vectorizes across channels where they are innermost
    in memory (channels-last maps, ``[B, C]`` features), and the channels of the vectors'
    remainder took a scalar path that rounds the input gradient differently: a member's
    gradients depended on its position and on the population's size. The input gradient here is
    made of elementwise operations, which round alike everywhere."""
    return _BatchNormTraining.apply(x, weight, bias, running_mean, running_var, momentum, eps)


#: Batched products of these ``(rows, inner, columns)`` sizes rounded a matrix by its position in
#: the batch under Intel MKL without strict reproducibility (``MKL_CBWR``), in one orientation or
#: another: the probe of :func:`products_depend_on_position`.
PROBE_SIZES = ((13, 7, 9), (37, 64, 5), (37, 3, 10))


@functools.cache
def products_depend_on_position() -> bool:
    """Whether this process's batched matrix products give a matrix other bits at another place
    in the batch: 7 products of each of :data:`PROBE_SIZES`, forward and as in a backward pass
    (``A^T G``, ``G B^T``), each compared with the same product first in a batch of two. True
    when MKL started without ``MKL_CBWR=AUTO,STRICT`` (:data:`catalog.MKL_CBWR`, set when
    :mod:`catalog` is imported, but only in effect if torch had computed no product before)."""
    g = torch.Generator().manual_seed(0)
    for rows, inner, cols in PROBE_SIZES:
        a, b = torch.randn(7, rows, inner, generator=g), torch.randn(7, inner, cols, generator=g)
        grad = torch.randn(7, rows, cols, generator=g)
        for fn in (lambda a, b, g: torch.bmm(a, b), lambda a, b, g: torch.bmm(a.transpose(1, 2), g),
                   lambda a, b, g: torch.bmm(g, b.transpose(1, 2))):
            full = fn(a, b, grad)
            if any(not torch.equal(full[k], fn(a[[k, k]], b[[k, k]], grad[[k, k]])[0]) for k in range(7)):
                return True
    return False
