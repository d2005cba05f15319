"""``pdiff``: a 1-D convolutional autoencoder over flat parameter vectors plus a DDPM in its
latent space (Wang et al. 2024, "Neural Network Diffusion").

Training:

1. the modelled parameters (all trainable ones, or the subset named by the ``params``
   hyperparameter, e.g. the last layers as p-diff does) are normalized per tensor with the
   training set's statistics and concatenated into one vector per network (zero-padded to a
   multiple of ``2^len(channels)``);
2. the autoencoder (strided ``Conv1d`` + instance norm + LeakyReLU down, transposed
   convolutions up) is trained on every training network to reconstruct the clean vector from a
   noised input, with noise also added to the latent, both as in p-diff:
   ``x <- (1 - f) x + f * eps`` with ``f = input_noise`` (0.001) and ``latent_noise`` (0.1);
3. the latents of the top ``q`` fraction of networks by ``select_column`` (default
   ``test_acc``; ``q = 1`` takes all, as p-diff's checkpoints of good runs) are expressed in
   scaled coordinates of the subspace they span (lossless for them, see :meth:`fit_ddpm`)
   and a DDPM (linear beta schedule, ``timesteps`` steps, an MLP denoiser with
   a sinusoidal timestep embedding) is trained on them. The denoiser predicts
   ``v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0`` (Salimans & Ho 2022) rather than
   ``eps``: with a few dozen latents of thousands of dimensions, an epsilon predictor's small
   errors at large ``t`` blow up ``1 / sqrt(alpha_bar_t)``-fold in its estimate of ``x_0``
   (measured: samples decoded to ~25% accuracy); ``v`` is well conditioned at both ends.

Sampling runs the DDPM's reverse (ancestral) process from Gaussian noise, decodes the latents and
denormalizes. **Parameters not modelled** (those left out of ``params``) are copied, for every
sample, from the best training network by ``select_column``, as p-diff keeps the rest of the
network it was trained from fixed.

The default schedule, ``beta`` linear from ``5e-4`` to ``0.1`` over 200 steps, is Ho et al.'s
``1e-4 .. 0.02`` over 1000 steps rescaled by ``1000 / 200`` (Nichol & Dhariwal 2021), which
keeps ``alpha_bar_T`` near zero with 5x fewer sampling steps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec
from weightspace.generators._tokens import (
    denormalize,
    flatten,
    normalize,
    normalizer_from_tensors,
    normalizer_tensors,
    require_float_column,
    select_params,
    top_fraction,
    unflatten,
)
from weightspace.generators.base import Generator, check_training_set, one_cycle
from weightspace.generators.registry import register_generator
from weightspace.normalization import ParamNormalizer


def ddpm_schedule(timesteps: int, beta_start: float, beta_end: float) -> dict[str, Tensor]:
    """The linear DDPM noise schedule (Ho et al. 2020), in float64.

    ``betas[t]`` for ``t = 0 .. T-1`` rises linearly from ``beta_start`` to ``beta_end``;
    ``alphas = 1 - betas``; ``alpha_bar[t] = prod_{s <= t} alphas[s]``; the posterior variance of
    ``x_{t-1}`` given ``x_t, x_0`` is ``beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)`` (0 at
    ``t = 0``).

    Shapes:
        every entry is ``[T]``.
    """
    if timesteps < 1 or not 0.0 < beta_start <= beta_end < 1.0:
        raise WeightzooError(f"the DDPM schedule needs timesteps >= 1 and 0 < beta_start <= beta_end < 1, got "
                             f"timesteps={timesteps}, beta_start={beta_start}, beta_end={beta_end}")
    betas = torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
    alphas = 1.0 - betas
    alpha_bar = torch.cumprod(alphas, dim=0)
    prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
    posterior_var = betas * (1.0 - prev) / (1.0 - alpha_bar)
    return {"betas": betas, "alphas": alphas, "alpha_bar": alpha_bar, "posterior_var": posterior_var}


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of integer timesteps (Vaswani et al.). Shapes: ``[B] -> [B, dim]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)  # [half]
    args = t.float()[:, None] * freqs[None]  # [B, half]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


def _mix_noise(x: Tensor, factor: float, gen: torch.Generator) -> Tensor:
    """p-diff's noise augmentation ``(1 - f) x + f * eps``. Shapes: any -> same."""
    if factor <= 0:
        return x
    return (1.0 - factor) * x + factor * torch.randn(x.shape, generator=gen)


class ConvAutoencoder(nn.Module):
    """1-D convolutional autoencoder of a flat vector (p-diff's encoder/decoder, smaller).

    Args:
        length: the (padded) vector length ``L``, a multiple of ``2^len(channels)``.
        channels: channels of the successive stride-2 levels, e.g. ``(16, 32, 64)``.
        latent_channels: channels of the latent map.

    Shapes:
        ``encode([B, L]) -> [B, latent_channels, L / 2^len(channels)]``; ``decode`` inverts.
    """

    def __init__(self, length: int, channels: Sequence[int], latent_channels: int) -> None:
        super().__init__()
        self.length = length
        down, c_in = [], 1
        for c in channels:
            down += [nn.Conv1d(c_in, c, 5, stride=2, padding=2), nn.InstanceNorm1d(c, affine=True), nn.LeakyReLU()]
            c_in = c
        down.append(nn.Conv1d(c_in, latent_channels, 1))
        self.encoder = nn.Sequential(*down)
        up: list[nn.Module] = [nn.Conv1d(latent_channels, channels[-1], 1)]
        rev = list(channels[::-1]) + [channels[0]]
        for c, c_next in zip(rev[:-1], rev[1:]):
            up += [nn.LeakyReLU(), nn.ConvTranspose1d(c, c_next, 4, stride=2, padding=1),
                   nn.InstanceNorm1d(c_next, affine=True)]
        up += [nn.LeakyReLU(), nn.Conv1d(channels[0], 1, 5, padding=2)]
        self.decoder = nn.Sequential(*up)

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x[:, None])  # [B, C_lat, L / 2^k]

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)[:, 0]  # [B, L]


class Denoiser(nn.Module):
    """The DDPM's epsilon predictor: an MLP on the flat latent with a timestep embedding.

    Shapes:
        ``forward(x [B, K], t [B]) -> [B, K]``.
    """

    def __init__(self, dim: int, hidden: int, t_dim: int = 64) -> None:
        super().__init__()
        self.t_dim = t_dim
        self.t_mlp = nn.Sequential(nn.Linear(t_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.inp = nn.Linear(dim, hidden)
        self.mid = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, dim))
        # A per-timestep scalar gate on x_t itself: at large t the answer is nearly x_t, a full-rank
        # map the hidden bottleneck (hidden << K) could not represent; the MLP learns the rest,
        # which lives in the low-dimensional span of the training latents.
        self.skip = nn.Linear(t_dim, 1)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        temb = timestep_embedding(t, self.t_dim)  # [B, t_dim]
        h = self.inp(x) + self.t_mlp(temb)  # [B, hidden]
        return self.out(h + self.mid(h)) + self.skip(temb) * x  # [B, K]


@register_generator("pdiff")
class PDiffGenerator(Generator):
    """p-diff: conv autoencoder over flat parameters + a DDPM on its latents.

    Args:
        spec: the architecture (any: chains and graphs, the vector is just the parameters).
        params: names of the parameters to model, a list or a comma-separated string (default
            ``None``: every trainable parameter); the rest is copied from the best training
            network by ``select_column``.
        select_column: metadata column ranking the training networks (default ``test_acc``).
        q: fraction of best networks the DDPM is trained on (default ``0.3``; the autoencoder
            sees all networks).
        higher_is_better: a higher ``select_column`` is better (default ``True``).
        channels: channels of the autoencoder's stride-2 levels (default ``(16, 32, 32)``).
        latent_channels: channels of the latent map (default ``8``; the latent has
            ``latent_channels * L / 2^len(channels)`` entries, here as many as parameters).
        ae_epochs: autoencoder epochs (default ``60``).
        ae_lr: peak autoencoder AdamW learning rate of a one-cycle schedule (default ``5e-3``).
        input_noise: p-diff's input noise factor (default ``0.001``).
        latent_noise: p-diff's latent noise factor (default ``0.1``).
        ddpm_steps: DDPM training steps (default ``8000``; cheap: the DDPM works in at most
            ``k - 1`` dimensions).
        ddpm_lr: peak DDPM AdamW learning rate of a one-cycle schedule (default ``3e-3``).
        hidden: the denoiser MLP's width (default ``384``).
        timesteps: diffusion steps ``T`` (default ``200``).
        beta_start: first beta (default ``5e-4``).
        beta_end: last beta (default ``0.1``).
        batch_size: networks per autoencoder step (default ``8``; the DDPM takes 32 latents a step).

    Shapes:
        ``fit({name: [N, *shape]}, N rows)``; ``sample(n) -> {name: [n, *shape]}``.
    """

    def __init__(self, spec: NetworkSpec, params: Sequence[str] | str | None = None,
                 select_column: str = "test_acc", q: float = 0.3, higher_is_better: bool = True,
                 channels: Sequence[int] = (16, 32, 32), latent_channels: int = 8, ae_epochs: int = 60,
                 ae_lr: float = 5e-3, input_noise: float = 0.001, latent_noise: float = 0.1,
                 ddpm_steps: int = 8000, ddpm_lr: float = 3e-3, hidden: int = 384, timesteps: int = 200,
                 beta_start: float = 5e-4, beta_end: float = 0.1, batch_size: int = 8) -> None:
        names = select_params(spec, params, "generator 'pdiff' params")
        super().__init__(spec, params=None if params is None else names, select_column=select_column, q=q,
                         higher_is_better=higher_is_better, channels=[int(c) for c in channels],
                         latent_channels=latent_channels, ae_epochs=ae_epochs, ae_lr=ae_lr,
                         input_noise=input_noise, latent_noise=latent_noise, ddpm_steps=ddpm_steps,
                         ddpm_lr=ddpm_lr, hidden=hidden, timesteps=timesteps, beta_start=beta_start,
                         beta_end=beta_end, batch_size=batch_size)
        if not channels or min(int(c) for c in channels) < 1 or latent_channels < 1:
            raise WeightzooError(f"pdiff needs at least one positive channel count, got channels={channels}, "
                                 f"latent_channels={latent_channels}")
        if batch_size < 1 or ae_epochs < 0 or ddpm_steps < 0:
            raise WeightzooError("pdiff needs batch_size >= 1, ae_epochs >= 0 and ddpm_steps >= 0")
        if not 0.0 < q <= 1.0:
            raise WeightzooError(f"q must be in (0, 1], got {q}")
        self.schedule = ddpm_schedule(int(timesteps), float(beta_start), float(beta_end))
        self.names = names
        self.rest = [p.name for p in spec.params if p.name not in set(names)]
        self.n_flat = sum(math.prod(p.shape) for p in spec.params if p.name in set(names))
        fold = 2 ** len(channels)
        self.length = -(-self.n_flat // fold) * fold  # padded to a multiple of the total stride
        self.latent_shape = (int(latent_channels), self.length // fold)
        self.ae: ConvAutoencoder | None = None
        self.denoiser: Denoiser | None = None
        self.norm: ParamNormalizer | None = None
        # The DDPM's coordinates: latent = (x * scale) @ basis + center (see fit_ddpm).
        self.center = torch.zeros(0, dtype=torch.float64)  # [K]
        self.basis = torch.zeros(0, 0, dtype=torch.float64)  # [r, K] orthonormal rows
        self.scale = torch.zeros(0, dtype=torch.float64)  # [r]
        self.fixed: dict[str, Tensor] = {}  # {name: [*shape]} unmodelled parameters (copied)
        #: Per epoch of the autoencoder / per 100 DDPM steps: mean losses of the last :meth:`fit`.
        self.history: dict[str, list[float]] = {"reconstruction": [], "ddpm": []}

    # ----------------------------------------------------------------------------- pieces
    def _build_ae(self) -> ConvAutoencoder:
        h = self.hparams
        return ConvAutoencoder(self.length, h["channels"], int(h["latent_channels"]))

    def _vectors(self, params: Mapping[str, Tensor]) -> Tensor:
        """Normalized, padded flat vectors. Shapes: ``{name: [B, *shape]}`` -> ``[B, L]``."""
        if self.norm is None:
            raise self.not_trained()
        flat = flatten(normalize(self.norm, params, self.names), self.names)  # [B, P]
        return F.pad(flat, (0, self.length - self.n_flat))

    def _require(self) -> tuple[ConvAutoencoder, Denoiser]:
        if self.ae is None or self.denoiser is None or self.norm is None or self.basis.numel() == 0:
            raise self.not_trained()
        return self.ae, self.denoiser

    def decode(self, latents: Tensor) -> dict[str, Tensor]:
        """Networks of latents. Shapes: ``[B, C, L']`` -> ``{name: [B, *shape]}``."""
        ae = self.ae
        if ae is None or self.norm is None:
            raise self.not_trained()
        with torch.no_grad():
            flat = ae.decode(latents)[:, :self.n_flat]  # [B, P]
        out = denormalize(self.norm, unflatten(flat, self.spec, self.names), self.names, self.spec.torch_dtype)
        b = latents.shape[0]
        for k, v in self.fixed.items():
            out[k] = v.unsqueeze(0).expand(b, *v.shape).to(self.spec.torch_dtype).contiguous()
        return {k: out[k] for k in self.spec.param_names}

    def encode(self, params: Mapping[str, Tensor]) -> Tensor:
        """Latents of networks. Shapes: ``{name: [B, *shape]}`` -> ``[B, C, L']``."""
        ae = self.ae
        if ae is None or self.norm is None:
            raise self.not_trained()
        with torch.no_grad():
            return ae.encode(self._vectors(params))

    # ----------------------------------------------------------------------------- Generator
    def fit(self, params: Mapping[str, Tensor], table: pa.Table, *, seed: int = 0,
            progress: bool = False) -> None:
        from tqdm.auto import tqdm

        n = check_training_set(params, self.spec, f"generator {self.name!r}")
        h = self.hparams
        scores = require_float_column(table, h["select_column"], n, f"generator {self.name!r}")
        best = top_fraction(scores, float(h["q"]), bool(h["higher_is_better"]))  # best first
        gen = torch.Generator().manual_seed(seed)
        raw = {k: params[k].detach().cpu() for k in self.spec.param_names}
        self.fixed = {k: raw[k][int(best[0])].clone() for k in self.rest}
        self.norm = ParamNormalizer.from_weights({k: raw[k] for k in self.names})
        x = self._vectors(raw)  # [N, L]
        with torch.random.fork_rng():  # a seeded initialisation that leaves the caller's RNG alone
            torch.manual_seed(seed)
            self.ae = ae = self._build_ae()
        self.history = {"reconstruction": [], "ddpm": []}
        bs = min(int(h["batch_size"]), n)

        # 1. the autoencoder, on every training network
        epochs = int(h["ae_epochs"])
        opt = torch.optim.AdamW(ae.parameters(), lr=h["ae_lr"], weight_decay=2e-6)
        steps = max(1, epochs * math.ceil(n / bs))
        sched = one_cycle(opt, h["ae_lr"], steps, pct_start=0.1)
        ae.train()
        for _ in tqdm(range(epochs), desc="train pdiff autoencoder", disable=not progress, unit="epoch"):
            order, total = torch.randperm(n, generator=gen), 0.0
            for start in range(0, n, bs):
                xb = x[order[start:start + bs]]  # [b, L]
                z = _mix_noise(ae.encode(_mix_noise(xb, h["input_noise"], gen)), h["latent_noise"], gen)
                loss = F.mse_loss(ae.decode(z)[:, :self.n_flat], xb[:, :self.n_flat])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * xb.shape[0]
            self.history["reconstruction"].append(total / n)
        ae.eval()

        # 2. the DDPM, on the standardized latents of the best networks
        with torch.no_grad():
            lat = ae.encode(x[best]).flatten(1)  # [k, K]
        self.fit_ddpm(lat, gen, progress)

    def fit_ddpm(self, lat: Tensor, gen: torch.Generator, progress: bool = False) -> None:
        """Train the DDPM on latents (standardized per dimension first). Shapes: ``lat [k, K]``."""
        from tqdm.auto import tqdm

        h = self.hparams
        # Principal coordinates: k latents span at most k - 1 dimensions around their mean, so
        # rotating them onto an orthonormal basis of that span loses nothing, and the DDPM
        # learns a density in r <= k - 1 dimensions instead of K >> k (where a small denoiser
        # trained for seconds does not converge: samples stayed at noise distance from every
        # training latent). One scale for all coordinates (mean variance 1) keeps the geometry:
        # whitening each coordinate would turn any k points into a regular simplex, and the
        # DDPM then learned nothing (loss 1.0 on 150 CNN latents).
        lat = lat.double()
        self.center = lat.mean(0)  # [K]
        _, sv, vh = torch.linalg.svd(lat - self.center, full_matrices=False)
        r = max(1, int((sv > sv[0] * 1e-6).sum())) if float(sv[0]) > 0 else 1
        self.basis = vh[:r].contiguous()  # [r, K]
        coords = (lat - self.center) @ self.basis.T  # [k, r]
        rms = float(coords.pow(2).mean().sqrt()) or 1.0
        self.scale = torch.full((r,), rms, dtype=torch.float64)  # [r]
        data = (coords / self.scale).float()  # [k, r], mean variance 1 per coordinate
        k = data.shape[0]
        with torch.random.fork_rng():
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            self.denoiser = den = Denoiser(r, int(h["hidden"]))
        alpha_bar = self.schedule["alpha_bar"].float()
        n_steps, t_max = int(h["ddpm_steps"]), int(h["timesteps"])
        bs = 32
        opt = torch.optim.AdamW(den.parameters(), lr=h["ddpm_lr"], weight_decay=0.0)
        sched = one_cycle(opt, h["ddpm_lr"], n_steps, pct_start=0.05)
        den.train()
        self.history["ddpm"] = []
        bar = tqdm(range(n_steps), desc="train pdiff DDPM", disable=not progress, unit="step")
        running = 0.0
        for step in bar:
            x0 = data[torch.randint(0, k, (bs,), generator=gen)]  # [b, K]
            t = torch.randint(0, t_max, (bs,), generator=gen)
            eps = torch.randn(x0.shape, generator=gen)
            ab = alpha_bar[t][:, None]
            xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps  # a draw of q(x_t | x_0)
            v = ab.sqrt() * eps - (1 - ab).sqrt() * x0  # the v target (Salimans & Ho 2022)
            loss = F.mse_loss(den(xt, t), v)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            running += float(loss.detach())
            if (step + 1) % 100 == 0:
                self.history["ddpm"].append(running / 100)
                bar.set_postfix(loss=f"{running / 100:.4f}")
                running = 0.0
        den.eval()

    def sample_latents(self, n: int, seed: int = 0) -> Tensor:
        """DDPM ancestral sampling of ``n`` latents (scaled principal coordinates). Shapes: ``-> [n, r]``."""
        _, den = self._require()
        gen = torch.Generator().manual_seed(seed)
        s = self.schedule
        betas, alphas, alpha_bar, post_var = (s[k].float() for k in ("betas", "alphas", "alpha_bar",
                                                                      "posterior_var"))
        x = torch.randn(n, self.basis.shape[0], generator=gen)  # x_T
        with torch.no_grad():
            for t in range(int(self.hparams["timesteps"]) - 1, -1, -1):
                ab, ab_prev = alpha_bar[t], (alpha_bar[t - 1] if t > 0 else torch.ones(()))
                v = den(x, torch.full((n,), t, dtype=torch.long))
                x0 = ab.sqrt() * x - (1 - ab).sqrt() * v  # the denoiser's estimate of x_0
                # mean of the posterior q(x_{t-1} | x_t, x_0) at that estimate (Ho et al. eq. 7)
                x = (betas[t] * ab_prev.sqrt() * x0 + (1 - ab_prev) * alphas[t].sqrt() * x) / (1 - ab)
                if t > 0:
                    x = x + post_var[t].sqrt() * torch.randn(x.shape, generator=gen)
        return x

    def sample(self, n: int, *, seed: int = 0,
               condition: Mapping[str, float] | None = None) -> dict[str, Tensor]:
        if condition:
            raise WeightzooError("generator 'pdiff' is not conditional; drop the condition values")
        self._require()
        if n < 1:
            raise WeightzooError(f"n must be >= 1, got {n}")
        z = self.sample_latents(n, seed)  # [n, r]
        z = ((z.double() * self.scale) @ self.basis + self.center).float()  # [n, K]
        return self.decode(z.view(n, *self.latent_shape))

    def state_tensors(self) -> dict[str, Tensor]:
        ae, den = self._require()
        if self.norm is None:
            raise self.not_trained()
        out = {f"ae.{k}": v for k, v in ae.state_dict().items()}
        out.update({f"denoiser.{k}": v for k, v in den.state_dict().items()})
        out.update(normalizer_tensors(self.norm, self.names))
        out.update({"latent.center": self.center, "latent.basis": self.basis, "latent.scale": self.scale})
        out.update({f"fixed.{k}": v for k, v in self.fixed.items()})
        return out

    def load_state(self, tensors: Mapping[str, Tensor], config: Mapping[str, Any]) -> None:
        self.center, self.basis = tensors["latent.center"].double(), tensors["latent.basis"].double()
        self.scale = tensors["latent.scale"].double()
        self.ae, self.denoiser = self._build_ae(), Denoiser(self.basis.shape[0], int(self.hparams["hidden"]))
        self.ae.load_state_dict({k[3:]: v for k, v in tensors.items() if k.startswith("ae.")})
        self.denoiser.load_state_dict({k[9:]: v for k, v in tensors.items() if k.startswith("denoiser.")})
        self.ae.eval()
        self.denoiser.eval()
        self.norm = normalizer_from_tensors(tensors, self.names)
        self.fixed = {k: tensors[f"fixed.{k}"] for k in self.rest}
