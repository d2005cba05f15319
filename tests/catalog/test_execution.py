"""catalog.execution: graph networks computed one member at a time, as a population (every node
kind's batched form), and as a plain module, checked against PyTorch's own modules."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from catalog import kernels
from catalog import nodes as nd
from catalog.errors import WeightzooError, ZooFormatError
from catalog.execution import GraphNetwork, graph_forward, graph_population_forward, graph_population_values
from catalog.network import NetworkSpec, build_module, population_forward
from zoo_builders.build import torch_threads


def every_kind() -> NetworkSpec:
    """One graph with every node kind but embedding (which reads ids): 1x8x8 -> 3."""
    return NetworkSpec("toy", (1, 8, 8), nodes=(
        nd.Conv2d("c1", ("input",), 1, 4, (3, 3), padding=1), nd.BatchNorm("bn1", ("c1",), 4),
        nd.Activation("r1", ("bn1",), "relu"),
        nd.Conv2d("c2", ("r1",), 4, 4, (3, 3), padding=1, groups=2, bias=False),
        nd.BatchNorm("bn2", ("c2",), 4), nd.Add("add", ("bn2", "r1")), nd.Activation("r2", ("add",), "gelu"),
        nd.AvgPool("ap", ("r2",), (2, 2), stride=1), nd.MaxPool("mp", ("ap",), (3, 3), stride=2, padding=1),
        nd.Patchify("pt", ("mp",), (2, 2)), nd.Linear("emb", ("pt",), 16, 8),
        nd.PosEmbedding("pos", ("emb",), 4, 8), nd.LayerNorm("ln", ("pos",), 8),
        nd.Attention("att", ("ln",), 8, 2), nd.Add("a2", ("att", "pos")),
        nd.GlobalPool("gp", ("a2",), over="tokens"), nd.Dropout("do", ("gp",), p=0.1),
        nd.Linear("fc", ("do",), 8, 3)))


def init(spec: NetworkSpec, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    from zoo_builders.init import init_params

    per = [init_params(spec, "default", torch.Generator().manual_seed(seed + i)) for i in range(n)]
    out = {k: torch.stack([p[k] for p in per]) for k in spec.param_names}
    g = torch.Generator().manual_seed(seed)
    for p in spec.params:  # non-trivial running statistics
        if p.role == "running_mean":
            out[p.name] = torch.randn(out[p.name].shape, generator=g) * 0.1
        elif p.role == "running_var":
            out[p.name] = torch.rand(out[p.name].shape, generator=g) + 0.5
    return out


def signal_net() -> NetworkSpec:
    """The kinds every_kind() leaves out but embedding: conv1d, 1-D batch norm and pooling,
    flatten, batch norm over features: 2x12 -> 3."""
    return NetworkSpec("sig", (2, 12), nodes=(
        nd.Conv1d("c", ("input",), 2, 4, (3,), stride=2, padding=1), nd.BatchNorm("bn1", ("c",), 4),
        nd.Activation("r", ("bn1",), "tanh"), nd.MaxPool("mp", ("r",), (2,)), nd.Flatten("fl", ("mp",)),
        nd.Linear("fc1", ("fl",), 12, 5), nd.BatchNorm("bn2", ("fc1",), 5), nd.Dropout("do", ("bn2",), p=0.2),
        nd.Linear("fc", ("do",), 5, 3)))


GRAPHS = {"every_kind": every_kind, "signal": signal_net}


@pytest.mark.parametrize("name", GRAPHS)
def test_population_equals_each_module_alone(name) -> None:
    spec = GRAPHS[name]()
    params = init(spec, 3)
    x = torch.rand(5, *spec.input_shape)
    out = population_forward(spec, params, x)
    assert out.shape == (3, 5, 3)
    per_member_x = torch.rand(3, 5, *spec.input_shape)
    out_pm = population_forward(spec, params, per_member_x)
    for i in range(3):
        module = build_module(spec, {k: v[i] for k, v in params.items()})
        assert isinstance(module, GraphNetwork) and set(module.state_dict()) == set(spec.param_names)
        with torch.no_grad():
            torch.testing.assert_close(module(x), out[i], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(module(per_member_x[i]), out_pm[i], rtol=1e-5, atol=1e-6)


def test_graph_population_forward_names_what_is_wrong() -> None:
    """A graph population got torch's words for a wrong x ("shape '[3, 5, 1, 8, 8]' is invalid
    for input of size ...") and a KeyError for a missing parameter; now what it takes."""
    spec = every_kind()
    params = init(spec, 3)
    x = torch.rand(5, 1, 8, 8)
    with pytest.raises(WeightzooError, match=r"x has shape \[5, 64\]; toy architecture toy-\w+ takes "
                                             r"\[B, 1, 8, 8\] .* or \[3, B, 1, 8, 8\]"):
        population_forward(spec, params, x.flatten(1))
    with pytest.raises(WeightzooError, match=r"x has shape \[2, 5, 1, 8, 8\]; .* P = 3"):
        population_forward(spec, params, x.unsqueeze(0).expand(2, *x.shape))
    with pytest.raises(WeightzooError, match="x has dtype float64 but the weights are float32"):
        population_forward(spec, params, x.double())
    with pytest.raises(WeightzooError, match=r"params lack 2 of the \d+ parameters .*: bn2.running_mean, "
                                             r"bn2.running_var; pass every one"):
        population_forward(spec, {k: v for k, v in params.items() if not k.startswith("bn2.running")}, x)
    with pytest.raises(WeightzooError, match=r"params\['fc.weight'\] has shape \[3, 3, 7\]; .* needs \[3, 3, 8\]"):
        population_forward(spec, {**params, "fc.weight": params["fc.weight"][..., :7]}, x)


def test_ids_of_any_dtype_feed_an_embedding() -> None:
    spec = NetworkSpec("e", (4,), nodes=(
        nd.Embedding("emb", ("input",), 5, 3), nd.GlobalPool("gp", ("emb",), over="tokens")))
    tables = torch.randn(2, 5, 3)
    ids = torch.tensor([[0, 4, 4, 1], [2, 2, 3, 0]])
    assert torch.equal(population_forward(spec, {"emb.weight": tables}, ids),
                       population_forward(spec, {"emb.weight": tables}, ids.float()))


def test_every_node_kind_has_a_population_form() -> None:
    # the test graphs run all kinds but embedding (tested below); a kind added later needs both forms
    missing = [k for k, cls in nd.NODE_KINDS.items() if cls.population_forward is nd.Node.population_forward]
    assert not missing
    assert {n.KIND for g in GRAPHS.values() for n in g().nodes} | {"embedding"} == set(nd.NODE_KINDS)


@pytest.mark.parametrize("name", GRAPHS)
def test_population_trains_as_each_member_alone(name) -> None:
    """Training mode: each member's batch statistics, running-statistic updates, dropout mask
    and gradients are what its one-member pass computes."""
    spec = GRAPHS[name]()
    start = init(spec, 3)
    trainable = {p.name for p in spec.params if p.trainable}
    params = {k: v.clone().requires_grad_(k in trainable) for k, v in start.items()}
    xs = torch.rand(3, 6, *spec.input_shape)
    masks = {"do": (torch.rand(3, 6, *spec.shapes["do"]) >= 0.1).float() / 0.9}
    out, updates = graph_population_forward(spec, params, xs, training=True, masks=masks)
    assert set(updates) == {f"bn{i}.running_{s}" for i in (1, 2) for s in ("mean", "var")}
    (out ** 2).sum().backward()
    for i in range(3):
        alone = {k: v[i].clone().requires_grad_(k in trainable) for k, v in start.items()}
        ctx = nd.Context(training=True, masks={"do": masks["do"][i]})
        out_i = graph_forward(spec, alone, xs[i], ctx)
        (out_i ** 2).sum().backward()
        torch.testing.assert_close(out[i], out_i, rtol=1e-5, atol=1e-6)
        for key, value in ctx.updates.items():
            torch.testing.assert_close(updates[key][i], value, rtol=1e-5, atol=1e-6)
            assert not torch.equal(value, start[key][i])  # the statistics moved
        # Gradients are O(1-10) here; a bias right before batch norm has gradient zero in exact
        # arithmetic, so both sides hold rounding noise of ~1e-5 for it: atol 1e-4.
        for key in trainable:
            torch.testing.assert_close(params[key].grad[i], alone[key].grad, rtol=1e-4, atol=1e-4)



@pytest.mark.parametrize("name", GRAPHS)
def test_a_members_training_pass_does_not_depend_on_its_population(name) -> None:
    """Bit for bit, at one thread (the builder's default; with more, some of torch's sums split
    among the threads by the population's size): output, running statistics and gradients of
    member i in a population of 7 equal those of the same member in a population of two copies
    of it. Batch norm sees 7 * 4 conv channels and 7 * 5 features: vectors of 8 or 16 leave a
    remainder, where torch's channels-innermost kernels took another code path (member 6's
    gradients differed)."""
    spec = GRAPHS[name]()
    start = init(spec, 7)
    trainable = {p.name for p in spec.params if p.trainable}
    xs = torch.rand(7, 6, *spec.input_shape)
    masks = {"do": (torch.rand(7, 6, *spec.shapes["do"]) >= 0.1).float() / 0.9}

    def run(idx: list[int]):
        params = {k: v[idx].clone().requires_grad_(k in trainable) for k, v in start.items()}
        out, updates = graph_population_forward(spec, params, xs[idx], training=True,
                                                masks={"do": masks["do"][idx]})
        (out ** 2).sum().backward()
        return out, updates, {k: params[k].grad for k in trainable}

    with torch_threads(1):
        out, updates, grads = run(list(range(7)))
        for i in range(7):
            out_i, updates_i, grads_i = run([i, i])
            assert torch.equal(out[i], out_i[0]), i
            assert all(torch.equal(updates[k][i], updates_i[k][0]) for k in updates), i
            assert [k for k in grads if not torch.equal(grads[k][i], grads_i[k][0])] == [], i

def test_population_values_of_named_nodes() -> None:
    spec = every_kind()
    params = init(spec, 2)
    x = torch.rand(4, 1, 8, 8)
    values = graph_population_values(spec, params, x, ["input", "gp", "fc"])
    assert values["input"].shape == (2, 4, 1, 8, 8) and values["gp"].shape == (2, 4, 8)
    torch.testing.assert_close(values["fc"], population_forward(spec, params, x))
    with pytest.raises(ZooFormatError, match=r"has no nodes \['nope'\]; its nodes are \['c1'"):
        graph_population_values(spec, params, x, ["gp", "nope"])


def test_embedding_population_reads_each_members_table() -> None:
    spec = NetworkSpec("e", (4,), nodes=(
        nd.Embedding("emb", ("input",), 5, 3), nd.GlobalPool("gp", ("emb",), over="tokens")))
    tables = torch.randn(2, 5, 3)
    ids = torch.tensor([[0, 4, 4, 1], [2, 2, 3, 0]]).float()          # [B, T], shared by both members
    out = population_forward(spec, {"emb.weight": tables}, ids)        # [P, B, 3]
    for m in range(2):
        torch.testing.assert_close(out[m], tables[m][ids.long()].mean(1))


def test_batchnorm_trains_as_torch_does() -> None:
    spec = NetworkSpec("bn", (2, 3, 3), nodes=(
        nd.BatchNorm("bn", ("input",), 2, momentum=0.2), nd.GlobalPool("gp", ("bn",))))
    ref = nn.BatchNorm2d(2, momentum=0.2)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor([1.5, -0.5]))
        ref.bias.copy_(torch.tensor([0.1, 0.2]))
    state = {f"bn.{k}": v.clone() for k, v in ref.state_dict().items() if k != "num_batches_tracked"}
    module = build_module(spec, state).train()
    x = torch.randn(6, 2, 3, 3)
    torch.testing.assert_close(module(x), ref(x).mean((2, 3)))
    torch.testing.assert_close(module.bn.running_mean, ref.running_mean)
    torch.testing.assert_close(module.bn.running_var, ref.running_var)
    # a population keeps each member's statistics its own
    params = {k: torch.stack([v, v * 2]) for k, v in state.items()}
    xs = torch.stack([x, x * 3 + 1])
    _, updates = graph_population_forward(spec, params, xs, training=True)
    torch.testing.assert_close(updates["bn.running_mean"][0], ref.running_mean)
    assert not torch.allclose(updates["bn.running_mean"][1], ref.running_mean)
    module.eval()
    ref.eval()
    torch.testing.assert_close(module(x), ref(x).mean((2, 3)))


def test_batchnorm_on_one_value_per_channel() -> None:
    # A last batch of one example over features [C]: torch refuses to train on it; here the batch
    # mean is the example itself, so the output is the bias, and the batch variance is 0, so by
    # hand running_mean = 0.9 * rm + 0.1 * x and running_var = 0.9 * rv (momentum 0.1).
    spec = NetworkSpec("bn1", (3,), nodes=(nd.BatchNorm("bn", ("input",), 3),))
    state = {"bn.weight": torch.tensor([2.0, 3.0, 4.0]), "bn.bias": torch.tensor([0.5, -1.0, 0.0]),
             "bn.running_mean": torch.tensor([1.0, 0.0, -1.0]), "bn.running_var": torch.tensor([1.0, 2.0, 0.5])}
    x = torch.tensor([[3.0, -2.0, 7.0]])
    module = build_module(spec, state).train()
    torch.testing.assert_close(module(x), state["bn.bias"][None])
    torch.testing.assert_close(module.bn.running_mean, torch.tensor([1.2, -0.2, -0.2]))
    torch.testing.assert_close(module.bn.running_var, torch.tensor([0.9, 1.8, 0.45]))
    params = {k: torch.stack([v, v]) for k, v in state.items()}
    out, updates = graph_population_forward(spec, params, x, training=True)   # both members, one batch
    torch.testing.assert_close(out, state["bn.bias"].expand(2, 1, 3))
    torch.testing.assert_close(updates["bn.running_var"], torch.tensor([[0.9, 1.8, 0.45]] * 2))


def test_attention_and_layernorm_match_torch() -> None:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    ln = nn.LayerNorm(8)
    spec = NetworkSpec("t", (5, 8), nodes=(
        nd.LayerNorm("ln", ("input",), 8), nd.Attention("attn", ("ln",), 8, 2),
        nd.GlobalPool("gp", ("attn",), over="tokens")))
    state = {**{f"ln.{k}": v for k, v in ln.state_dict().items()},
             **{f"attn.{k}": v for k, v in mha.state_dict().items()}}
    module = build_module(spec, state)
    x = torch.randn(3, 5, 8)
    h = ln(x)
    expected = mha(h, h, h, need_weights=False)[0].mean(1)
    torch.testing.assert_close(module(x), expected)
    causal = NetworkSpec("t", (5, 8), nodes=(
        nd.Attention("attn", ("input",), 8, 2, causal=True), nd.GlobalPool("gp", ("attn",), over="tokens")))
    mask = nn.Transformer.generate_square_subsequent_mask(5)
    expected = mha(x, x, x, attn_mask=mask, need_weights=False)[0].mean(1)
    out = build_module(causal, {f"attn.{k}": v for k, v in mha.state_dict().items()})(x)
    torch.testing.assert_close(out, expected)


def test_patchify_and_embedding_by_hand() -> None:
    # a 1x4x4 image 0..15 in 2x2 patches: the first patch is (0, 1, 4, 5), the second (2, 3, 6, 7)
    patch = nd.Patchify("p", ("input",), (2, 2))
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    out = patch.forward({}, [x], nd.Context())
    assert patch.out_shape([(1, 4, 4)]) == (4, 4)
    assert out[0, 0].tolist() == [0, 1, 4, 5] and out[0, 1].tolist() == [2, 3, 6, 7]
    # a signal of 6 in segments of 3
    seg = nd.Patchify("s", ("input",), (3,))
    assert seg.forward({}, [torch.arange(6.0).reshape(1, 1, 6)], nd.Context())[0].tolist() == [[0, 1, 2], [3, 4, 5]]
    # embedding: ids given as numbers
    spec = NetworkSpec("e", (3,), nodes=(nd.Embedding("emb", ("input",), 5, 2), nd.Flatten("f", ("emb",))))
    w = torch.arange(10.0).reshape(5, 2)
    out = build_module(spec, {"emb.weight": w})(torch.tensor([[4.0, 0.0, 2.0]]))
    assert out.tolist() == [[8, 9, 0, 1, 4, 5]]


# (rows m, inner k, cols n) and which operands are transposed views: both ways of _oriented_bmm
# (fewer columns than rows: computed transposed; else as given), with either operand layout.
SMALL_BMM_CASES = [((5, 3, 2), (False, False)), ((4, 3, 4), (False, False)), ((4, 3, 4), (False, True)),
                   ((4, 3, 4), (True, False)), ((2, 3, 5), (True, True))]


def _operands(shape, transposed, dtype=torch.float32, seed=0):
    m, k, n = shape
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(6, k, m, generator=g, dtype=dtype).transpose(1, 2) if transposed[0] else \
        torch.randn(6, m, k, generator=g, dtype=dtype)
    b = torch.randn(6, n, k, generator=g, dtype=dtype).transpose(1, 2) if transposed[1] else \
        torch.randn(6, k, n, generator=g, dtype=dtype)
    return a, b


@pytest.mark.parametrize("shape,transposed", SMALL_BMM_CASES)
def test_small_bmm_is_bmm_forward_and_backward(shape, transposed) -> None:
    # The same products as torch.bmm (up to rounding), the forward values of the one-network
    # form bit for bit, gradients to second order (gradgradcheck: the Hessian-vector products of
    # weightspace.analysis differentiate its backward), forward mode (torch.func.hessian), and
    # vmap over a further batch dim.
    a, b = _operands(shape, transposed)
    got = kernels.small_bmm(a, b)
    torch.testing.assert_close(got, torch.bmm(a, b))
    assert torch.equal(got, kernels.oriented_bmm(a, b))
    a64, b64 = (t.detach().double().requires_grad_() for t in _operands(shape, transposed, torch.float64, 1))
    assert torch.autograd.gradcheck(kernels.small_bmm, (a64, b64))
    assert torch.autograd.gradgradcheck(kernels.small_bmm, (a64, b64))
    assert torch.autograd.gradcheck(kernels.small_bmm, (a64, b64), check_forward_ad=True, check_backward_ad=False)
    stacked = torch.stack([a, 2 * a]), torch.stack([b, b + 1])
    torch.testing.assert_close(torch.func.vmap(kernels.small_bmm)(*stacked),
                               torch.stack([torch.bmm(a, b), torch.bmm(2 * a, b + 1)]))


def test_normalize_is_layer_norm_to_second_order_and_under_torch_func() -> None:
    # normalize (the population's layer norm) against F.layer_norm without affine: values,
    # gradients to second order (its backward is ATen's, differentiated by the Hessian-vector
    # products), the hand-written forward-mode rule, vmap, and a Hessian through it.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 8, generator=g, dtype=torch.float64, requires_grad=True)
    for eps in (1e-5, 0.5):  # a large eps makes a wrong eps in any rule visible
        def norm(z, eps=eps):
            return kernels.normalize(z, eps)

        def ref(z, eps=eps):
            return F.layer_norm(z, z.shape[-1:], eps=eps)

        torch.testing.assert_close(norm(x), ref(x))
        assert torch.autograd.gradcheck(norm, (x,))
        assert torch.autograd.gradgradcheck(norm, (x,))
        assert torch.autograd.gradcheck(norm, (x,), check_forward_ad=True, check_backward_ad=False)
        torch.testing.assert_close(torch.func.vmap(norm)(x.detach()), ref(x.detach()))
        row = x.detach()[0, 0]
        torch.testing.assert_close(torch.func.hessian(lambda z: norm(z).pow(3).sum())(row),
                                   torch.func.hessian(lambda z: ref(z).pow(3).sum())(row))
    x32 = torch.randn(64, 16, generator=g)
    torch.testing.assert_close(kernels.normalize(x32, 1e-5), F.layer_norm(x32, (16,)))


def test_population_attention_equals_each_module_alone_and_trains_alike() -> None:
    # A ViT-like block with 3 heads of 4 dims over 6 tokens, and a causal one: the population
    # pass (small_bmm, its own backward) gives each member the module's output and gradients.
    for causal in (False, True):
        spec = NetworkSpec("t", (6, 12), nodes=(
            nd.LayerNorm("ln", ("input",), 12), nd.Attention("attn", ("ln",), 12, 3, causal=causal),
            nd.Add("res", ("attn", "input")), nd.GlobalPool("gp", ("res",), over="tokens"),
            nd.Linear("fc", ("gp",), 12, 4)))
        params = {k: v.requires_grad_() for k, v in init(spec, 3, seed=4).items()}
        x = torch.randn(3, 5, 6, 12, generator=torch.Generator().manual_seed(5))
        out, _ = graph_population_forward(spec, params, x)
        out.square().sum().backward()
        for i in range(3):
            module = build_module(spec, {k: v[i].detach() for k, v in params.items()})
            alone = module(x[i])
            torch.testing.assert_close(out[i], alone)
            alone.square().sum().backward()
            for name, p in module.named_parameters():
                torch.testing.assert_close(params[name].grad[i], p.grad, rtol=1e-4, atol=1e-5)


def folding_net() -> NetworkSpec:
    """Layer norms read in every way the population pass treats their affine map: folded into an
    attention and a bias-free linear map, materialized for an add, carried past a mean over tokens
    into a linear map and into an add, materialized for a max over tokens: [6, 8] -> 3."""
    return NetworkSpec("fold", (6, 8), nodes=(
        nd.LayerNorm("ln1", ("input",), 8), nd.Attention("att", ("ln1",), 8, 2),
        nd.Linear("tok", ("ln1",), 8, 8, bias=False), nd.Add("s1", ("att", "ln1", "tok")),
        nd.LayerNorm("ln2", ("s1",), 8), nd.GlobalPool("gp", ("ln2",), over="tokens"),
        nd.Linear("fc1", ("gp",), 8, 8),
        nd.LayerNorm("ln3", ("s1",), 8), nd.GlobalPool("mx", ("ln3",), op="max", over="tokens"),
        nd.Add("both", ("fc1", "mx", "gp")), nd.Linear("fc", ("both",), 8, 3)))


def test_layer_norm_affine_folds_into_readers_with_the_modules_values_and_gradients() -> None:
    spec = folding_net()
    g = torch.Generator().manual_seed(7)
    start = init(spec, 3, seed=2)
    for name in ("ln1", "ln2", "ln3"):  # init leaves weight 1 and bias 0, which any fold keeps
        start[f"{name}.weight"] = torch.randn(3, 8, generator=g)  # negative scales too: max must not fold
        start[f"{name}.bias"] = torch.randn(3, 8, generator=g)
    params = {k: v.clone().requires_grad_() for k, v in start.items()}
    x = torch.randn(3, 5, 6, 8, generator=g)
    out, _ = graph_population_forward(spec, params, x)
    out.square().sum().backward()
    values = graph_population_values(spec, start, x, ["ln1", "s1", "gp", "ln3"])
    for i in range(3):
        module = build_module(spec, {k: v[i] for k, v in start.items()})
        alone = module(x[i])
        torch.testing.assert_close(out[i], alone)
        alone.square().sum().backward()
        for name, p in module.named_parameters():
            torch.testing.assert_close(params[name].grad[i], p.grad, rtol=1e-4, atol=1e-5)
        # values asked for have their affine maps applied, also one carried past the mean
        def ln(name: str, h: torch.Tensor, i: int = i) -> torch.Tensor:
            return F.layer_norm(h, (8,), start[f"{name}.weight"][i], start[f"{name}.bias"][i])

        torch.testing.assert_close(values["ln1"][i], ln("ln1", x[i]))
        torch.testing.assert_close(values["gp"][i], ln("ln2", values["s1"][i]).mean(1))
        torch.testing.assert_close(values["ln3"][i], ln("ln3", values["s1"][i]))


def test_a_pass_drops_each_value_after_its_last_reader(monkeypatch) -> None:
    # Without autograd nothing else holds the activations: when the head runs, every earlier
    # value but its own input is gone, unless it was asked for.
    import gc
    import weakref

    spec = folding_net()
    params = init(spec, 2)
    refs: dict[str, weakref.ref] = {}
    alive_at_head: list[set[str]] = []
    for cls in (nd.Node, nd.LayerNorm):
        parts = cls.population_parts

        def recording(self, p, xs, ctx, _parts=parts):
            if self.name == "fc":
                gc.collect()
                alive_at_head.append({name for name, ref in refs.items() if ref() is not None})
            out, affine = _parts(self, p, xs, ctx)
            refs[self.name] = weakref.ref(out)
            return out, affine

        monkeypatch.setattr(cls, "population_parts", recording)
    for cls in {type(node) for node in spec.nodes}:  # one network's pass (graph_forward) too
        forward = cls.forward

        def recording_forward(self, p, xs, ctx, _forward=forward):
            if self.name == "fc":
                gc.collect()
                alive_at_head.append({name for name, ref in refs.items() if ref() is not None})
            out = _forward(self, p, xs, ctx)
            refs[self.name] = weakref.ref(out)
            return out

        monkeypatch.setattr(cls, "forward", recording_forward)
    x = torch.randn(2, 3, 6, 8)
    with torch.no_grad():
        graph_population_forward(spec, params, x)
        assert alive_at_head.pop() == {"both"}
        graph_population_values(spec, params, x, ["tok", "fc"])
        assert alive_at_head.pop() == {"both", "tok"}
        refs.clear()
        graph_forward(spec, {k: v[0] for k, v in params.items()}, x[0])
        assert alive_at_head.pop() == {"both"}


def test_feature_affine_folds_into_a_linear_map_by_hand() -> None:
    # scale (2, -1), shift (1, 3) before W = [[1, 2]], b = 0.5: W' = W diag(scale) = [[2, -2]],
    # b' = W shift + b = 1 + 6 + 0.5 = 7.5. At x = (2, 5): x * scale + shift = (5, -2), so
    # W (5, -2) + 0.5 = 1.5; folded: (2, -2) . (2, 5) + 7.5 = -6 + 7.5 = 1.5.
    affine = nd.FeatureAffine(torch.tensor([[2.0, -1.0]]), torch.tensor([[1.0, 3.0]]))
    weight, bias = affine.fold_into_linear(torch.tensor([[[1.0, 2.0]]]), torch.tensor([[0.5]]))
    assert torch.equal(weight, torch.tensor([[[2.0, -2.0]]])) and torch.equal(bias, torch.tensor([[7.5]]))
    x = torch.tensor([[[2.0, 5.0]]])                                              # [P=1, B=1, F=2]
    assert torch.equal(nd._member_linear(x, weight, bias), torch.tensor([[[1.5]]]))
    assert torch.equal(nd._member_linear(affine.apply(x), torch.tensor([[[1.0, 2.0]]]), torch.tensor([[0.5]])),
                       torch.tensor([[[1.5]]]))
    # without a bias the fold makes one: W shift = 7
    assert torch.equal(affine.fold_into_linear(torch.tensor([[[1.0, 2.0]]]), None)[1], torch.tensor([[7.0]]))


def test_a_vit_population_pass_maps_no_activation_by_a_layer_norm_affine(monkeypatch) -> None:
    # Every layer norm of the ViT is read by an attention, an MLP's first linear map or (the last)
    # a mean over tokens before the head: each folds its weight and bias, none maps a [P, B, T, D] value.
    from zoo_builders.graph_architectures import TransformerConfig

    spec = TransformerConfig(patch_size=2, dim=8, depth=2).network_spec((1, 8, 8), 10)
    params = {k: v.requires_grad_() for k, v in init(spec, 2).items()}
    shapes = []
    apply = nd.FeatureAffine.apply
    monkeypatch.setattr(nd.FeatureAffine, "apply", lambda self, x: shapes.append(x.shape) or apply(self, x))
    graph_population_forward(spec, params, torch.rand(3, 1, 8, 8))[0].sum().backward()
    assert shapes == []
    graph_population_values(spec, params, torch.rand(3, 1, 8, 8), ["blocks.0.norm1"])
    assert shapes == [(2, 3, 16, 8)]  # asked for, the value gets its map


_FAULTS = """
import resource, sys, torch
from catalog.execution import reuse_freed_memory
reused = reuse_freed_memory() if sys.argv[1] == "reuse" else False
def cycle():  # a pass: megabyte activations allocated and written, then all freed
    kept = [torch.ones(mb << 18) for mb in (1, 2, 4, 3, 2, 4, 1, 3)]
    del kept
cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    cycle()
print(reused, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_reused_memory_spares_the_page_faults_of_each_pass() -> None:
    # 10 passes of 20 MiB: 5,120 fresh pages if every pass gets new memory (glibc's default
    # trims the freed heap each time); with reuse_freed_memory the passes reuse the same pages.
    import subprocess
    import sys

    def faults(mode: str) -> tuple[bool, int]:
        out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
        reused, n = out.stdout.split()
        return reused == "True", int(n)

    reused, with_reuse = faults("reuse")
    if not reused:
        pytest.skip("not glibc: the allocator setting does not apply")
    _, default = faults("default")
    assert default > 4000
    assert with_reuse < default / 4
