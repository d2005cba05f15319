"""Loss-landscape curvature of every member of a population: the Hessian's top eigenvalue (Lanczos)
and its trace (Hutchinson), vectorized over the members.

Both follow PyHessian (Yao et al. 2020), which the Phase-Transition Model Zoo uses, in what they
compute:

- The loss is the cross-entropy, averaged over all given examples, in evaluation mode (as
  PyHessian, which calls ``model.eval()``): dropout off, batch norm with its running statistics.
  The Hessian is over the trained parameters; batch-norm running statistics are held fixed.
  Pass e.g. 10 batches x 64 samples as a list or as one ``[640, ...]`` tensor: the loss is the
  mean over every example, which is the mean of the batch losses when the batches have equal
  size (PyHessian weighs batches by size too).
- :func:`hessian_top_eig` returns the **largest-magnitude** eigenvalue, with its sign, as
  PyHessian's ``eigenvalues()`` (power iteration) does, but by Lanczos with full
  reorthogonalization on the same Hessian-vector products. Power iteration stalls: from a start
  vector with little weight on the top eigenvector it first settles on ``lambda_2``, and its
  Rayleigh quotient changes so little there that any stop rule on the change ends the iteration
  (on a digits MLP with ``lambda_2 / lambda_1 = 0.945``, 26% of 2000 random starts stopped at
  ``lambda_2``, 5.5% low, at ``tol = 1e-3``, after 37 products on average). Lanczos keeps every direction it has seen
  (the Krylov basis), so the weight on the top eigenvector grows like a Chebyshev polynomial
  instead of ``(lambda_1 / lambda_2)^t``, and its Ritz values do not plateau (the same starts:
  none low, 13 products on average). A member stops once its Ritz pair's residual
  ``|H y - theta y|`` is below ``tol * |theta|``: an eigenvalue then lies within that distance
  of ``theta``, and the top Ritz value's own error is about ``residual^2 / gap``, far smaller.
  The default ``tol = 1e-4`` is stricter than PyHessian's ``1e-3`` because a start vector
  nearly orthogonal to the top eigenvector can still meet ``1e-3`` at ``lambda_2`` (6 of 2000
  starts on that MLP; none at ``1e-4``). No method sees an eigenvector its start has no weight
  on: on a synthetic Hessian with ``lambda_2 / lambda_1 = 0.95`` and ``D = 111``, ``1e-4``
  finds ``lambda_1`` from starts with down to 3e-5 of their weight on it (random starts have
  about ``1 / sqrt(D) = 0.1``), not from 1e-5. At most :data:`LANCZOS_BASIS` vectors are kept
  per member; past that it restarts from its Ritz vector.
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


#: Lanczos vectors held per member: a member not converged after this many steps restarts from its
#: Ritz vector, so memory stays at this many copies of its parameters however many ``iters``.
#: Members of digits MLPs converge in 8-16 steps at the default ``tol = 1e-4`` (up to 18 at ``1e-5``).
LANCZOS_BASIS = 20


def _tridiagonal(alpha: Tensor, beta: Tensor) -> Tensor:
    """The symmetric tridiagonal matrices with diagonals ``alpha [A, k]`` and off-diagonals
    ``beta [A, k - 1]``, as ``[A, k, k]``."""
    return torch.diag_embed(alpha) + torch.diag_embed(beta, 1) + torch.diag_embed(beta, -1)


def _lanczos_top(products: _Products, q: Tensor, iters: int, tol: float) -> Tensor:
    """Lanczos with full reorthogonalization from the unit start vectors ``q [G, D]``: the Ritz
    value of largest magnitude of each member, once its residual is below ``tol`` times it, or
    after ``iters`` Hessian-vector products. Every :data:`LANCZOS_BASIS` steps it restarts from
    its Ritz vector.

    Shapes:
        ``q [G, D]`` -> ``[G]``.
    """
    g, d = q.shape
    size = min(LANCZOS_BASIS, iters)
    basis = q.new_zeros(g, size, d)  # rows: the members still active; [:, :j + 1] the Krylov basis
    basis[:, 0] = q
    alpha = torch.zeros(g, size, dtype=torch.float64)  # the tridiagonal T = Q^T H Q, in float64
    beta = torch.zeros(g, size, dtype=torch.float64)
    eig = torch.full((g,), float("nan"), dtype=q.dtype)
    # Below a few dozen ulps the residual is rounding noise: a tighter tol cannot be met.
    rel_tol = max(tol, _resolution(q.dtype))
    active = torch.arange(g)
    j = 0
    for _ in range(iters):
        qj, known = basis[:, j], basis[:, :j + 1]
        w = products(active, qj)
        alpha[:, j] = (w * qj).sum(1).double()
        # Full reorthogonalization against every basis vector (q_j and q_{j-1} are the three-term
        # recurrence itself), twice: one Gram-Schmidt pass loses orthogonality in floating point,
        # and a basis that is not orthogonal brings back copies of converged Ritz values.
        for _ in range(2):
            w = w - torch.bmm(torch.bmm(known, w[:, :, None]).transpose(1, 2), known)[:, 0]
        b = w.norm(dim=1)
        beta[:, j] = b.double()
        theta, s = torch.linalg.eigh(_tridiagonal(alpha[:, :j + 1], beta[:, :j]))
        pick = theta.abs().argmax(1)  # largest magnitude, at either end of the spectrum
        rows = torch.arange(len(active))
        top, ritz = theta[rows, pick], s[rows, :, pick]  # [A], [A, j + 1]: y = Q ritz
        # |H y - top y| = beta_j |ritz_j| for the Ritz vector y = Q ritz, and for a symmetric H
        # some eigenvalue lies within |H y - t y| of t for any unit y and scalar t.
        resid = beta[:, j] * ritz[:, -1].abs()
        eig[active] = top.to(eig.dtype)
        keep = (resid > rel_tol * top.abs()) & torch.isfinite(top)
        if not keep.all():
            active, basis, alpha, beta = active[keep], basis[keep], alpha[keep], beta[keep]
            w, b, ritz = w[keep], b[keep], ritz[keep]
            if len(active) == 0:
                break
        if j + 1 < size:
            j += 1
            basis[:, j] = w / b.clamp_min(torch.finfo(w.dtype).tiny)[:, None]
        else:
            # Restart from the Ritz vector, which keeps the basis at LANCZOS_BASIS vectors per
            # member: the next cycle's Ritz value starts at top and only grows in magnitude.
            y = torch.bmm(ritz.to(basis.dtype)[:, None], basis)[:, 0]
            basis[:, 0] = y / y.norm(dim=1, keepdim=True)
            alpha.zero_()
            beta.zero_()
            j = 0
    return eig


def hessian_top_eig(
    spec: NetworkSpec, params: Params, x: Tensor | Sequence[Tensor], y: Tensor | Sequence[Tensor],
    iters: int = 100, tol: float = 1e-4, seed: int | Sequence[int] = 0,
    member_chunk: int | None = None,
) -> Tensor:
    """The Hessian eigenvalue of largest magnitude of each network's loss, by Lanczos with full
    reorthogonalization.

    Args:
        spec: the shared architecture (a classifier: outputs are logits).
        params: ``{name: Tensor[P, *shape]}`` stacked parameters.
        x: inputs ``[N, *input_shape]`` shared by every network, or a sequence of batches
            (concatenated), or one batch per network ``[P, N, *input_shape]``.
        y: class labels ``[N]``, or a sequence of batches, or ``[P, N]`` with per-network ``x``.
        iters: maximum Lanczos steps, one Hessian-vector product each (default ``100``).
        tol: relative tolerance in ``(0, 1)`` (default ``1e-4``): a member stops once the
            residual of its Ritz pair is below ``tol`` times its Ritz value, so an eigenvalue lies
            within that distance (see the module docstring; below the dtype's resolution, 32
            ulps, the resolution is used).
        seed: member ``i`` starts from a Gaussian vector seeded ``seed + i`` (default ``0``), or
            give one seed per member.
        member_chunk: at most this many members per computation, to bound memory (default all).

    Shapes:
        returns ``[P]``: the Ritz value of largest magnitude (it keeps the eigenvalue's sign; its
        magnitude is the largest of the Hessian's eigenvalues).
    """
    n_pop = population_size(spec, params)
    x, y = population_data(spec, x, y, n_pop)
    _check_count("iters", iters)
    if not 0 < tol < 1:
        raise WeightzooError(f"tol must be a relative tolerance in (0, 1), e.g. 1e-4, got {tol!r}")
    seeds = member_seeds(seed, n_pop)
    out = torch.empty(n_pop, dtype=spec.torch_dtype)
    for group in _groups(n_pop, member_chunk):
        gens = [torch.Generator().manual_seed(seeds[i]) for i in group.tolist()]
        q = torch.stack([torch.randn(n_trained(spec), generator=g, dtype=spec.torch_dtype) for g in gens])
        q = q / q.norm(dim=1, keepdim=True)
        products = _Products(spec, take(params, group), *_data_of(x, y, group))
        out[group] = _lanczos_top(products, q, iters, tol)
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
