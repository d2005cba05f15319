"""Loss-landscape curvature of every member of a population: the Hessian's top eigenvalue (power
iteration) and its trace (Hutchinson), vectorized over the members.

Both follow PyHessian (Yao et al. 2020), which the Phase-Transition Model Zoo uses:

- The loss is the cross-entropy, averaged over all given examples, in evaluation mode (as
  PyHessian, which calls ``model.eval()``): dropout off, batch norm with its running statistics.
  The Hessian is over the trained parameters; batch-norm running statistics are held fixed.
  Pass e.g. 10 batches x 64 samples as a list or as one ``[640, ...]`` tensor: the loss is the
  mean over every example, which is the mean of the batch losses when the batches have equal
  size (PyHessian weighs batches by size too).
- :func:`hessian_top_eig` returns the **largest-magnitude** eigenvalue, with its sign: power
  iteration converges to the eigenvector of largest ``|lambda|`` and reports its Rayleigh
  quotient ``v^T H v``, as PyHessian's ``eigenvalues()`` does. PyHessian stops once the
  relative change ``|lambda_t - lambda_{t-1}| / (|lambda_{t-1}| + 1e-6)`` falls below ``tol``
  (``stop="change"`` here). That change underestimates the remaining error by the factor
  ``1 / (1 - q)``, ``q = (lambda_2 / lambda_1)^2`` the per-step contraction: with close top
  eigenvalues it stops percent-level short (1.4% on a trained digits MLP with
  ``lambda_2 / lambda_1 = 0.955``, at ``tol = 1e-3``). The default ``stop="error"`` also
  estimates ``q`` from two consecutive changes and stops once the extrapolated remaining error
  ``change * q / (1 - q)`` is below ``tol`` as well (Aitken's estimate for a geometric
  sequence): never earlier than PyHessian, later only when the gap is small.
- :func:`hessian_trace` averages ``z^T H z`` over Rademacher vectors ``z``.
- The data is shared by every member (``x [N, ...]``) or given per member (``x [P, N, ...]``,
  ``y [P, N]``): e.g. each run's own training subsample when the zoo varies ``train_fraction``.

How the members are vectorized: member ``p``'s loss depends only on its own parameters, so the
gradient of the *sum* of the members' losses with respect to the stacked parameters is the
stack of the per-member gradients, and its Hessian is block diagonal: one Hessian-vector
product of the summed loss is the per-member product for all members at once, computed by
:func:`~catalog.network.population_forward`'s batched kernels (a ``vmap`` over members runs the
same batched kernels and measured no faster). The product itself is ``torch.func.vjp`` of
``torch.func.grad``: the gradient graph is built once and its ``vjp`` function is reused for
every product (``H`` is symmetric, so ``v^T H = (H v)^T``). That measured about 2x faster than
``jvp(grad(f))``, which re-runs the forward and backward pass for every product.

Every member draws its random vectors from its own generator (seed ``seed + i``, or one seed per
member), so a member's result does not depend on which other members share its population:
analyzing models one at a time or 64 at a time gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import grad, vjp

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec, population_forward
from weightspace.analysis._population import (
    Params,
    member_seeds,
    population_data,
    population_size,
    take,
)


def n_trained(spec: NetworkSpec) -> int:
    """``D``, the number of trained parameters (batch-norm running statistics excluded)."""
    return sum(p.numel for p in spec.params if p.trainable)


def _to_flat(spec: NetworkSpec, tensors: Params) -> Tensor:
    """The trained parameters ``{name: [P, *shape]}`` as ``[P, D]``, in ``spec.params`` order."""
    trained = [p for p in spec.params if p.trainable]
    return torch.cat([tensors[p.name].reshape(tensors[p.name].shape[0], -1) for p in trained], 1)


def _from_flat(spec: NetworkSpec, flat: Tensor) -> dict[str, Tensor]:
    """The inverse of :func:`_to_flat`."""
    out, offset = {}, 0
    for p in spec.params:
        if p.trainable:
            out[p.name] = flat[:, offset:offset + p.numel].reshape(flat.shape[0], *p.shape)
            offset += p.numel
    return out


def _hvp_function(spec: NetworkSpec, params: Params, x: Tensor,
                  y: Tensor) -> Callable[[Tensor], Tensor]:
    """``v [P, D] -> H v [P, D]`` for every member, the gradient graph built once.

    ``x``: shared ``[N, *input_shape]`` or per member ``[P, N, *input_shape]`` (``y`` ``[N]`` or
    ``[P, N]``)."""
    n = y.shape[-1]
    fixed = {p.name: params[p.name].detach() for p in spec.params if not p.trainable}

    def summed_loss(p: dict[str, Tensor]) -> Tensor:
        out = population_forward(spec, {**p, **fixed}, x)  # [P, N, C]
        labels = y.flatten() if y.dim() == 2 else y.repeat(out.shape[0])
        # Sum over members of each member's mean loss: block-diagonal Hessian (module docstring).
        return F.cross_entropy(out.flatten(0, 1), labels, reduction="sum") / n

    trained = {p.name: params[p.name].detach() for p in spec.params if p.trainable}
    _, vjp_fn = vjp(grad(summed_loss), trained)

    def hvp(v: Tensor) -> Tensor:
        return _to_flat(spec, vjp_fn(_from_flat(spec, v))[0])

    return hvp


class _Products:
    """Hessian-vector products for the still-active members of a group.

    The graph covers the members it was built for; once at most half of them are still active
    it is rebuilt for those alone, so converged members stop costing compute. Per-member data
    (``y [P, N]``) is taken along with the members.
    """

    def __init__(self, spec: NetworkSpec, params: Params, x: Tensor, y: Tensor) -> None:
        self.spec, self.params, self.x, self.y = spec, params, x, y
        self.members = torch.arange(next(iter(params.values())).shape[0])
        self.hvp = _hvp_function(spec, params, x, y)

    def __call__(self, active: Tensor, v: Tensor) -> Tensor:
        """``H v`` for the members ``active`` (sorted indices), ``v [len(active), D]``."""
        if 2 * len(active) <= len(self.members):
            self.members = active.clone()
            x, y = (self.x[active], self.y[active]) if self.y.dim() == 2 else (self.x, self.y)
            self.hvp = _hvp_function(self.spec, take(self.params, active), x, y)
        if len(active) == len(self.members):
            return self.hvp(v)
        full = v.new_zeros(len(self.members), v.shape[1])
        pos = torch.searchsorted(self.members, active)
        full[pos] = v
        return self.hvp(full)[pos]


def _data_of(x: Tensor, y: Tensor, group: Tensor) -> tuple[Tensor, Tensor]:
    """The data of the members ``group``: all of it if shared, their batches if per member."""
    return (x[group], y[group]) if y.dim() == 2 else (x, y)


def _groups(n: int, member_chunk: int | None) -> list[Tensor]:
    if member_chunk is not None and member_chunk < 1:
        raise WeightzooError(f"member_chunk must be a positive number of networks, got {member_chunk}")
    step = n if member_chunk is None else member_chunk
    return [torch.arange(s, min(n, s + step)) for s in range(0, n, step)]


def _resolution(dtype: torch.dtype) -> float:
    """A relative change this small is rounding noise of ``dtype`` (a few dozen ulps)."""
    return 32 * torch.finfo(dtype).eps


def _check_count(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise WeightzooError(f"{name} must be a positive integer, got {value!r}")


def hessian_top_eig(
    spec: NetworkSpec, params: Params, x: Tensor | Sequence[Tensor], y: Tensor | Sequence[Tensor],
    iters: int = 100, tol: float = 1e-3, seed: int | Sequence[int] = 0,
    stop: str = "error", member_chunk: int | None = None,
) -> Tensor:
    """The Hessian eigenvalue of largest magnitude of each network's loss, by power iteration.

    Args:
        spec: the shared architecture (a classifier: outputs are logits).
        params: ``{name: Tensor[P, *shape]}`` stacked parameters.
        x: inputs ``[N, *input_shape]`` shared by every network, or a sequence of batches
            (concatenated), or one batch per network ``[P, N, *input_shape]``.
        y: class labels ``[N]``, or a sequence of batches, or ``[P, N]`` with per-network ``x``.
        iters: maximum power iterations (default ``100``).
        tol: relative tolerance (default ``1e-3``, as PyHessian).
        seed: member ``i`` starts from a Gaussian vector seeded ``seed + i`` (default ``0``), or
            give one seed per member.
        stop: ``"error"`` (default): a member stops once both its last relative change and its
            extrapolated remaining relative error are below ``tol``; ``"change"``: once its last
            relative change is (PyHessian's rule). See the module docstring.
        member_chunk: at most this many members per computation, to bound memory (default all).

    Shapes:
        returns ``[P]``: the Rayleigh quotient ``v^T H v`` of the last iterate (it keeps the
        eigenvalue's sign; its magnitude is the largest of the Hessian's eigenvalues).
    """
    n_pop = population_size(spec, params)
    x, y = population_data(spec, x, y, n_pop)
    _check_count("iters", iters)
    if stop not in ("error", "change"):
        raise WeightzooError(f"unknown stop rule {stop!r}; valid: 'error', 'change'")
    seeds = member_seeds(seed, n_pop)
    out = torch.empty(n_pop, dtype=spec.torch_dtype)
    for group in _groups(n_pop, member_chunk):
        gens = [torch.Generator().manual_seed(seeds[i]) for i in group.tolist()]
        v = torch.stack([torch.randn(n_trained(spec), generator=g, dtype=spec.torch_dtype) for g in gens])
        v = v / v.norm(dim=1, keepdim=True)
        products = _Products(spec, take(params, group), *_data_of(x, y, group))
        eig = torch.full((len(group),), float("nan"), dtype=spec.torch_dtype)
        last_change = torch.full((len(group),), float("inf"), dtype=spec.torch_dtype)
        active = torch.arange(len(group))
        for it in range(iters):
            hv = products(active, v[active])
            new = (hv * v[active]).sum(1)  # Rayleigh quotient of the unit vector v
            v[active] = hv / hv.norm(dim=1, keepdim=True).clamp_min(torch.finfo(hv.dtype).tiny)
            if it == 0:
                eig[active] = new
                continue
            old = eig[active]
            eig[active] = new
            change = (new - old).abs() / (old.abs() + 1e-6)
            done = change < tol
            if stop == "error":
                q = change / last_change[active]  # estimated contraction per step
                remaining = change * q / (1 - q)
                # q >= 1: not (yet) converging geometrically, unless the change is at the
                # dtype's resolution, where the estimate is noise.
                done &= ((q < 1) & (remaining < tol)) | (change < _resolution(hv.dtype))
            last_change[active] = change
            active = active[~done]
            if len(active) == 0:
                break
        out[group] = eig
    return out


def hessian_trace(
    spec: NetworkSpec, params: Params, x: Tensor | Sequence[Tensor], y: Tensor | Sequence[Tensor],
    samples: int = 100, seed: int | Sequence[int] = 0, tol: float | None = None,
    member_chunk: int | None = None,
) -> Tensor:
    """The trace of each network's loss Hessian, by Hutchinson's estimator with Rademacher
    vectors: the mean of ``z^T H z`` over ``samples`` random sign vectors ``z``.

    Args:
        spec: the shared architecture (a classifier: outputs are logits).
        params: ``{name: Tensor[P, *shape]}`` stacked parameters.
        x: inputs ``[N, *input_shape]`` shared by every network, or a sequence of batches
            (concatenated), or one batch per network ``[P, N, *input_shape]``.
        y: class labels ``[N]``, or a sequence of batches, or ``[P, N]`` with per-network ``x``.
        samples: random vectors per member (default ``100``).
        seed: member ``i`` draws its vectors from a generator seeded ``seed + i`` (default
            ``0``), or give one seed per member.
        tol: stop a member early once its running mean changes by less than this, relative
            (PyHessian's rule, default there ``1e-3``); ``None`` (default) always uses all
            ``samples`` vectors.
        member_chunk: at most this many members per computation, to bound memory (default all).

    Shapes:
        returns ``[P]``.
    """
    n_pop = population_size(spec, params)
    x, y = population_data(spec, x, y, n_pop)
    _check_count("samples", samples)
    seeds = member_seeds(seed, n_pop)
    out = torch.empty(n_pop, dtype=spec.torch_dtype)
    for group in _groups(n_pop, member_chunk):
        gens = [torch.Generator().manual_seed(seeds[i]) for i in group.tolist()]
        products = _Products(spec, take(params, group), *_data_of(x, y, group))
        total = torch.zeros(len(group), dtype=torch.float64)
        count = torch.zeros(len(group), dtype=torch.float64)
        mean = torch.zeros(len(group), dtype=torch.float64)
        active = torch.arange(len(group))
        for _ in range(samples):
            z = torch.stack([torch.randint(0, 2, (n_trained(spec),), generator=gens[i])
                             for i in active.tolist()]).to(spec.torch_dtype) * 2 - 1
            total[active] += (products(active, z) * z).sum(1).double()
            count[active] += 1
            old, mean[active] = mean[active], total[active] / count[active]
            if tol is not None:
                first = count[active] == 1
                keep = first | ((mean[active] - old).abs() / (old.abs() + 1e-6) >= tol)
                active = active[keep]
                if len(active) == 0:
                    break
        out[group] = mean.to(spec.torch_dtype)
    return out
