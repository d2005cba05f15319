"""``hyperrep``: a hyper-representation autoencoder over neuron tokens, sampled by a KDE over the
latents of the best training networks (Schürholt et al. 2021/2022; SANE, 2024).

Training:

1. every training network is normalized per tensor (``(w - mean) / std`` with the training set's
   statistics, which commutes with neuron permutations) and cut into **neuron tokens**
   (:class:`~weightspace.generators._tokens.NeuronTokenizer`, one rule for any architecture): a
   chain's (MLP, CNN, SIREN) neuron is its incoming weights + bias; a graph's (ResNet with batch
   norm, VGG, ViT, ...) token is one row of a node's trainable parameters grouped by leading dim
   (an output channel's weights + bias, a norm's per-channel weight and bias, an attention's
   projection row), as SANE does for ResNets;
2. two **views** of each network are made by random neuron permutations
   (:func:`weightspace.symmetry.permute_neurons` for a chain; for a graph
   :func:`weightspace.graph_symmetry.permute_graph`, which permutes residual streams as one and
   attention heads as blocks), optionally plus a little Gaussian noise on the encoder's input;
3. a transformer encoder (token embedding + layer and position embeddings) maps the tokens to
   one small latent vector per token, a transformer decoder maps the latents back to tokens;
4. loss = MSE reconstruction of each view's (clean) tokens, on the parameter entries only
   (padding is ignored), + ``contrastive_weight`` x NT-Xent between the two views' pooled,
   projected latents (the two views of one network are the positive pair; the other networks of
   the batch are the negatives).

Sampling: the (un-augmented) training networks are encoded; the latents of the top ``q``
fraction by ``select_column`` (default ``test_acc``) are fitted by a Gaussian KDE, new latents
are drawn from it and decoded. The KDE's kernel covariance is ``h^2`` times the covariance of
those latents (scipy's ``gaussian_kde`` convention); with fewer latents than latent dimensions
that covariance is singular, so a draw adds ``h * (Z - mean)^T g / sqrt(k - 1)``,
``g ~ N(0, I_k)``, which is exactly ``N(0, h^2 Cov)`` on the span of the latents. ``h`` follows
Scott's (``n^(-1/(d+4))``) or Silverman's (``(n (d + 2) / 4)^(-1/(d+4))``) rule with ``d`` the
dimension the latents span, ``min(dim, k - 1)``, or is a given number.

Batch-norm running statistics are buffers, not weights: they are not tokens, and every sample
gets each buffer tensor's training mean (positive for ``running_var``) as a placeholder;
:func:`~weightspace.generators.output.generate_zoo` recomputes every sample's statistics from
data for its own weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec
from weightspace.generators._tokens import (
    NeuronTokenizer,
    denormalize,
    normalize,
    normalizer_from_tensors,
    normalizer_tensors,
    require_float_column,
    top_fraction,
)
from weightspace.generators.base import Generator, check_training_set, one_cycle
from weightspace.generators.registry import register_generator
from weightspace.graph_symmetry import graph_symmetries, permute_graph, random_graph_permutation
from weightspace.normalization import ParamNormalizer
from weightspace.symmetry import permute_neurons, random_permutations


class TokenAutoencoder(nn.Module):
    """Transformer encoder/decoder between neuron tokens and per-token latents.

    Args:
        n_tokens: ``T``.
        width: ``D``, the token width.
        layer_index: the layer of each token, ``[T]``.
        d_model: transformer width.
        d_latent: latent size per token.
        depth: transformer layers of the encoder and of the decoder.
        heads: attention heads.
        proj_dim: output size of the contrastive projection head.

    Shapes:
        ``encode([B, T, D]) -> [B, T, d_latent]``; ``decode([B, T, d_latent]) -> [B, T, D]``;
        ``project([B, T, d_latent]) -> [B, proj_dim]``.
    """

    def __init__(self, n_tokens: int, width: int, layer_index: Tensor, d_model: int, d_latent: int,
                 depth: int, heads: int, proj_dim: int) -> None:
        super().__init__()
        n_layers = int(layer_index.max()) + 1
        self.register_buffer("layer_index", layer_index.clone(), persistent=False)
        self.embed = nn.Linear(width, d_model)
        # Learned position (token slot) and layer embeddings: the encoder knows where a token sits.
        self.pos_enc = nn.Parameter(torch.randn(n_tokens, d_model) * 0.02)
        self.layer_enc = nn.Embedding(n_layers, d_model)
        self.pos_dec = nn.Parameter(torch.randn(n_tokens, d_model) * 0.02)
        self.layer_dec = nn.Embedding(n_layers, d_model)

        def stack() -> nn.TransformerEncoder:
            layer = nn.TransformerEncoderLayer(d_model, heads, 2 * d_model, dropout=0.0, batch_first=True,
                                               norm_first=True)
            return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)

        self.encoder, self.decoder = stack(), stack()
        # No normalization between the residual streams and the linear maps in and out: the
        # identity path token -> latent -> token stays linear (scale-preserving), so exact
        # reconstruction is learnable early and the attention blocks learn what it misses.
        self.to_latent = nn.Linear(d_model, d_latent)
        self.from_latent = nn.Linear(d_latent, d_model)
        self.out = nn.Linear(d_model, width)
        self.proj = nn.Sequential(nn.Linear(d_latent, proj_dim), nn.ReLU(), nn.Linear(proj_dim, proj_dim))

    def encode(self, tokens: Tensor) -> Tensor:
        h = self.embed(tokens) + self.pos_enc + self.layer_enc(self.layer_index)  # [B, T, d_model]
        return self.to_latent(self.encoder(h))  # [B, T, d_latent]

    def decode(self, z: Tensor) -> Tensor:
        h = self.from_latent(z) + self.pos_dec + self.layer_dec(self.layer_index)  # [B, T, d_model]
        return self.out(self.decoder(h))  # [B, T, D]

    def project(self, z: Tensor) -> Tensor:
        return self.proj(z.mean(dim=1))  # [B, proj_dim]


def nt_xent(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    """NT-Xent (SimCLR) loss of two views: row ``i`` of ``a`` and of ``b`` are a positive pair.

    Shapes:
        ``a, b: [B, K]`` -> scalar.
    """
    z = F.normalize(torch.cat([a, b]), dim=1)  # [2B, K]
    sim = z @ z.T / temperature  # [2B, 2B]
    n = a.shape[0]
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))  # never one's own pair
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


def kde_factor(rule: str | float, n: int, dim: int) -> float:
    """The KDE bandwidth factor ``h`` for ``n`` points spanning ``dim`` dimensions.

    ``"scott"``: ``n^(-1/(d+4))``; ``"silverman"``: ``(n (d + 2) / 4)^(-1/(d+4))``; a number is
    used as is.
    """
    if isinstance(rule, str) and rule not in ("scott", "silverman"):
        try:
            rule = float(rule)  # "0.1" from the command line (--hparam bandwidth=0.1)
        except ValueError:
            pass
    if isinstance(rule, (int, float)) and not isinstance(rule, bool):
        if rule < 0:
            raise WeightzooError(f"bandwidth must be >= 0, got {rule}")
        return float(rule)
    if rule == "scott":
        return n ** (-1.0 / (dim + 4))
    if rule == "silverman":
        return (n * (dim + 2) / 4.0) ** (-1.0 / (dim + 4))
    raise WeightzooError(f"bandwidth must be 'scott', 'silverman' or a number, got {rule!r}")


#: (epochs, lr) for layer chains (MLP, CNN, SIREN): tuned on digits-mlp and the CNN zoo.
CHAIN_TRAINING = (60, 3e-3)
#: (epochs, lr) for graph architectures (ResNet, VGG, ViT, ...), whose many small nodes give many
#: tokens per network: on 64 ResNet-8s with batch norm the chain values gave samples of 74.2%
#: mean accuracy and these 92.7%; on 64 digit ViTs 87.5% and 89.3% (max-IoU 0.42 and 0.50).
GRAPH_TRAINING = (200, 1e-2)


@register_generator("hyperrep")
class HyperRepGenerator(Generator):
    """Hyper-representation autoencoder over neuron tokens + KDE sampling of the best models.

    Args:
        spec: any architecture: a layer chain (MLP, CNN, SIREN) or a graph (ResNet with batch
            norm, VGG, ViT, ...); see :class:`~weightspace.generators._tokens.NeuronTokenizer`.
        epochs: training epochs over the training networks (default: by architecture,
            :data:`CHAIN_TRAINING` or :data:`GRAPH_TRAINING`).
        batch_size: networks per step (default ``16``).
        lr: peak AdamW learning rate of a one-cycle schedule (default: by architecture, as
            ``epochs``).
        weight_decay: AdamW weight decay (default ``1e-4``).
        d_model: transformer width (default ``64``).
        d_latent: latent size per neuron token (default ``64``: trained networks' weights are mostly
            incompressible noise, and a narrower latent reconstructs networks that do not work).
        depth: transformer layers of the encoder and of the decoder (default ``1``).
        heads: attention heads (default ``4``).
        contrastive_weight: weight of the NT-Xent term (default ``0.1``).
        temperature: NT-Xent temperature (default ``0.1``).
        input_noise: std of Gaussian noise on the encoder's (normalized) input views (default ``0.0``).
        select_column: metadata column ranking the training models for the KDE (default ``test_acc``).
        q: fraction of best models whose latents the KDE is fitted on (default ``0.3``).
        higher_is_better: a higher ``select_column`` is better (default ``True``).
        bandwidth: KDE bandwidth factor ``h``, a number (or its text) or the rule ``"scott"`` /
            ``"silverman"`` (default ``"0.1"``: text, so that ``--hparam bandwidth=scott`` parses
            too). In the latent space of a few dozen networks the rules of thumb give ``h`` near 1
            (``n^(-1/(d+4))`` with large ``d``), which decodes to broken networks on digits-mlp
            (49% mean accuracy vs 96% at ``0.1``), so the default is a fixed factor.

    Shapes:
        ``fit({name: [N, *shape]}, N rows)``; ``sample(n) -> {name: [n, *shape]}``.
    """

    def __init__(self, spec: NetworkSpec, epochs: int | None = None, batch_size: int = 16, lr: float | None = None,
                 weight_decay: float = 1e-4, d_model: int = 64, d_latent: int = 64, depth: int = 1,
                 heads: int = 4, contrastive_weight: float = 0.1, temperature: float = 0.1,
                 input_noise: float = 0.0, select_column: str = "test_acc", q: float = 0.3,
                 higher_is_better: bool = True, bandwidth: str | float = "0.1") -> None:
        default_epochs, default_lr = CHAIN_TRAINING if spec.is_chain else GRAPH_TRAINING
        epochs = default_epochs if epochs is None else epochs
        lr = default_lr if lr is None else lr
        if isinstance(epochs, bool) or not isinstance(epochs, int) or isinstance(lr, bool) \
                or not isinstance(lr, (int, float)) or lr <= 0:
            raise WeightzooError(f"hyperrep needs an integer epochs and a positive lr, got epochs={epochs!r}, "
                                 f"lr={lr!r}")
        # The resolved values are the ones recorded (rows, saved generators), so a run repeats.
        super().__init__(spec, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                         d_model=d_model, d_latent=d_latent, depth=depth, heads=heads,
                         contrastive_weight=contrastive_weight, temperature=temperature,
                         input_noise=input_noise, select_column=select_column, q=q,
                         higher_is_better=higher_is_better, bandwidth=bandwidth)
        self.tokenizer = NeuronTokenizer(spec, what=f"generator {self.name!r}")
        if epochs < 0 or batch_size < 2:
            raise WeightzooError(f"hyperrep needs epochs >= 0 and batch_size >= 2 (the contrastive loss needs "
                                 f"pairs), got epochs={epochs}, batch_size={batch_size}")
        if d_model % heads:
            raise WeightzooError(f"d_model ({d_model}) must be a multiple of heads ({heads})")
        kde_factor(bandwidth, 2, 1)  # validate the rule now, not after training
        if not 0.0 < q <= 1.0:
            raise WeightzooError(f"q must be in (0, 1], got {q}")
        self.names = [p.name for p in spec.params]  # all of them (buffers too): normalized, permuted, saved
        self.model: TokenAutoencoder | None = None
        self.norm: ParamNormalizer | None = None
        self.latents: Tensor | None = None  # [k, T * d_latent] latents of the KDE's models
        #: Mean loss and reconstruction MSE (normalized weights) per epoch of the last :meth:`fit`.
        self.history: list[dict[str, float]] = []

    # ----------------------------------------------------------------------------- pieces
    def _build_model(self) -> TokenAutoencoder:
        h = self.hparams
        return TokenAutoencoder(self.tokenizer.n_tokens, self.tokenizer.width, self.tokenizer.layer_index(),
                                int(h["d_model"]), int(h["d_latent"]), int(h["depth"]), int(h["heads"]),
                                proj_dim=32)

    def _tokens(self, params: Mapping[str, Tensor]) -> Tensor:
        """Normalized tokens of raw parameters. Shapes: ``{name: [B, *shape]}`` -> ``[B, T, D]``."""
        if self.norm is None:
            raise self.not_trained()
        return self.tokenizer.tokenize(normalize(self.norm, params, self.tokenizer.names))

    def encode(self, params: Mapping[str, Tensor]) -> Tensor:
        """Per-token latents of networks (after :meth:`fit`).

        Shapes:
            ``{name: [B, *shape]}`` -> ``[B, T, d_latent]``.
        """
        model = self._require_model()
        with torch.no_grad():
            return model.encode(self._tokens(params))

    def decode(self, latents: Tensor) -> dict[str, Tensor]:
        """Networks of per-token latents; parameters the tokens do not hold (batch-norm running
        statistics) are each tensor's training mean.

        Shapes:
            ``[B, T, d_latent]`` -> ``{name: [B, *shape]}``.
        """
        model = self._require_model()
        if self.norm is None:
            raise self.not_trained()
        with torch.no_grad():
            tokens = model.decode(latents)  # [B, T, D]
        dtype, batch = self.spec.torch_dtype, latents.shape[0]
        out = denormalize(self.norm, self.tokenizer.detokenize(tokens), self.tokenizer.names, dtype)
        for p in self.spec.params:
            if p.name not in out:  # a buffer: a placeholder, recomputed from data by generate_zoo
                out[p.name] = torch.full((batch, *p.shape), self.norm.mean[p.name], dtype=dtype)
        return {n: out[n] for n in self.names}

    def _augment(self, batch: Mapping[str, Tensor], gen: torch.Generator) -> dict[str, Tensor]:
        """A random neuron permutation of each network: per hidden layer for a chain, per neuron
        group and attention's heads for a graph.

        Shapes:
            ``{name: [b, *shape]}`` -> the same.
        """
        b = next(iter(batch.values())).shape[0]
        if self.spec.is_chain:
            return permute_neurons(self.spec, batch, random_permutations(self.spec, b, gen))
        sym = graph_symmetries(self.spec)
        return permute_graph(sym, batch, random_graph_permutation(sym, b, gen))

    def _require_model(self) -> TokenAutoencoder:
        if self.model is None or self.norm is None:
            raise self.not_trained()
        return self.model

    # ----------------------------------------------------------------------------- Generator
    def fit(self, params: Mapping[str, Tensor], table: pa.Table, *, seed: int = 0,
            progress: bool = False) -> None:
        from tqdm.auto import tqdm

        n = check_training_set(params, self.spec, f"generator {self.name!r}")
        h = self.hparams
        scores = require_float_column(table, h["select_column"], n, f"generator {self.name!r}")
        gen = torch.Generator().manual_seed(seed)  # batches, permutations, noise
        raw = {k: params[k].detach().cpu() for k in self.names}
        self.norm = ParamNormalizer.from_weights(raw)
        data = normalize(self.norm, raw, self.names)  # {name: [N, *shape]} float32
        mask = self.tokenizer.mask().float()  # [T, D]
        with torch.random.fork_rng():  # a seeded initialisation that leaves the caller's RNG alone
            torch.manual_seed(seed)
            self.model = model = self._build_model()
        self.history = []
        opt = torch.optim.AdamW(model.parameters(), lr=h["lr"], weight_decay=h["weight_decay"])
        bs = min(int(h["batch_size"]), n)
        steps = max(1, n // bs) * int(h["epochs"])
        sched = one_cycle(opt, h["lr"], steps, pct_start=0.1)
        bar = tqdm(range(int(h["epochs"])), desc="train hyperrep", disable=not progress, unit="epoch")
        model.train()
        for _ in bar:
            order = torch.randperm(n, generator=gen)
            total, total_rec = 0.0, 0.0
            # Drop the last incomplete batch: NT-Xent needs at least two networks per batch.
            for start in range(0, n - bs + 1, bs):
                idx = order[start:start + bs]
                batch = {k: v[idx] for k, v in data.items()}
                views = [self.tokenizer.tokenize(self._augment(batch, gen)) for _ in range(2)]  # 2 x [b, T, D]
                z = []
                rec = torch.zeros(())
                for v in views:
                    noisy = v + h["input_noise"] * torch.randn(v.shape, generator=gen) if h["input_noise"] else v
                    zi = model.encode(noisy)  # [b, T, d_latent]
                    out = model.decode(zi)  # [b, T, D]
                    rec = rec + (((out - v) ** 2) * mask).sum() / (mask.sum() * v.shape[0])
                    z.append(zi)
                con = nt_xent(model.project(z[0]), model.project(z[1]), h["temperature"])
                loss = rec / 2 + h["contrastive_weight"] * con
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                total += float(loss.detach())
                total_rec += float(rec.detach()) / 2
            self.history.append({"loss": total / max(1, n // bs), "reconstruction": total_rec / max(1, n // bs)})
            bar.set_postfix(loss=f"{total / max(1, n // bs):.4f}")
        model.eval()
        best = top_fraction(scores, h["q"], bool(h["higher_is_better"]))
        self.latents = self.encode({k: v[best] for k, v in raw.items()}).flatten(1).contiguous()  # [k, T*d]

    def sample(self, n: int, *, seed: int = 0,
               condition: Mapping[str, float] | None = None) -> dict[str, Tensor]:
        if condition:
            raise WeightzooError("generator 'hyperrep' is not conditional; drop the condition values")
        self._require_model()
        if n < 1:
            raise WeightzooError(f"n must be >= 1, got {n}")
        if self.latents is None:
            raise self.not_trained()
        z = self.latents.double()  # [k, L]
        k, dim = z.shape
        gen = torch.Generator().manual_seed(seed)
        pick = torch.randint(0, k, (n,), generator=gen)
        factor = kde_factor(self.hparams["bandwidth"], k, min(dim, k - 1))
        g = torch.randn(n, k, generator=gen, dtype=torch.float64)  # [n, k]
        noise = g @ (z - z.mean(0)) / math.sqrt(max(k - 1, 1))  # [n, L] ~ N(0, Cov)
        new = (z[pick] + factor * noise).float()  # [n, L]
        return self.decode(new.view(n, self.tokenizer.n_tokens, int(self.hparams["d_latent"])))

    def state_tensors(self) -> dict[str, Tensor]:
        model = self._require_model()
        if self.norm is None or self.latents is None:
            raise self.not_trained()
        out = {f"model.{k}": v for k, v in model.state_dict().items()}
        out.update(normalizer_tensors(self.norm, self.names))
        out["kde.latents"] = self.latents
        return out

    def load_state(self, tensors: Mapping[str, Tensor], config: Mapping[str, Any]) -> None:
        self.model = self._build_model()
        self.model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
        self.model.eval()
        self.norm = normalizer_from_tensors(tensors, self.names)
        self.latents = tensors["kde.latents"].float()
