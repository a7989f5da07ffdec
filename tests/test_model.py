"""The NCRF model: ResNet grid network and CRF layer (contract §5), on small crops."""

import math

import numpy as np
import pytest
import torch

from tests.helpers import randomise
from wsi.errors import InputError
from wsi.model import MODELS
from wsi.model.build import build_model, grid_size
from wsi.model.checkpoint import load_model_state
from wsi.model.layers import CRF
from wsi.model.resnet import ResNetGrid

CROP = 32  # small crops keep the tests fast; the pooling is adaptive, so any size ≥ 32 works


def _crf(num_nodes, W=None, iteration=10):
    crf = CRF(num_nodes, iteration=iteration)
    if W is not None:
        with torch.no_grad():
            crf.W.copy_(torch.as_tensor(W, dtype=torch.float32).reshape(1, num_nodes, num_nodes))
    return crf


# ---------------------------------------------------------------------------------------------------------- CRF


def test_crf_repr_and_initial_weights():
    crf = CRF(9)
    assert repr(crf) == "CRF(num_nodes=9, iteration=10)"
    assert repr(CRF(4, iteration=3)) == "CRF(num_nodes=4, iteration=3)"
    assert crf.W.shape == (1, 9, 9) and crf.W.requires_grad
    assert torch.count_nonzero(crf.W) == 0
    assert [name for name, _ in crf.named_parameters()] == ["W"]


def test_crf_with_zero_weights_is_the_identity():
    gen = torch.Generator().manual_seed(0)
    feats, logits = torch.rand(4, 9, 16, generator=gen), torch.randn(4, 9, generator=gen)
    assert torch.equal(CRF(9)(feats, logits), logits)
    # The original's [B, N, 1] logits keep their shape.
    assert torch.equal(CRF(9)(feats, logits[..., None]), logits[..., None])


def test_crf_one_iteration_by_hand():
    # Three nodes with 2-D embeddings; W is deliberately not symmetric.
    feats = [[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]]
    logits = [0.5, -1.0, 2.0]
    W = [[0.2, 0.6, -0.4], [0.0, -0.3, 0.8], [1.0, 0.2, 0.5]]

    def cos(u, v):
        return (u[0] * v[0] + u[1] * v[1]) / (math.hypot(*u) * math.hypot(*v))

    expected = []
    for i in range(3):
        energy = 0.0
        for j in range(3):  # j = i included: W_ii · cos(f_i, f_i) = W_ii is a self term
            w_sym = (W[i][j] + W[j][i]) / 2
            p_j = 1 / (1 + math.exp(-logits[j]))
            energy += cos(feats[i], feats[j]) * w_sym * (p_j - (1 - p_j))
        expected.append(logits[i] + energy)
    # e.g. node 0: cos = (1, 0.6, 0.8), W_sym row = (0.2, 0.3, 0.3)
    assert expected[0] == pytest.approx(0.5 + 0.2 * 0.2449187 + 0.18 * -0.4621172 + 0.24 * 0.7615942, abs=1e-6)

    out = _crf(3, W, iteration=1)(torch.tensor([feats]), torch.tensor([logits]))
    np.testing.assert_allclose(out[0].detach().numpy(), expected, rtol=1e-6)


def _mean_field_numpy(feats, logits, W, iteration):
    """The contract's update in float64 NumPy: z ← u + Σ_j cos(f_i, f_j) W_sym_ij (2σ(z_j) − 1), synchronous."""
    unit = feats / np.linalg.norm(feats, axis=2, keepdims=True)
    pairwise = unit @ unit.transpose(0, 2, 1) * (W + W.T) / 2
    z = logits.copy()
    for _ in range(iteration):
        z = logits + (pairwise * (2 / (1 + np.exp(-z)) - 1)[:, None, :]).sum(axis=2)
    return z


def test_crf_ten_synchronous_iterations_match_the_equations():
    rng = np.random.default_rng(3)
    feats, logits, W = rng.random((5, 9, 32)), rng.normal(size=(5, 9)), rng.uniform(-1, 1, (9, 9))
    out = _crf(9, W)(torch.tensor(feats, dtype=torch.float32), torch.tensor(logits, dtype=torch.float32))
    np.testing.assert_allclose(out.detach().numpy(), _mean_field_numpy(feats, logits, W, 10), atol=1e-5)
    # Ten iterations are not one: the loop really iterates.
    assert not np.allclose(_mean_field_numpy(feats, logits, W, 1), _mean_field_numpy(feats, logits, W, 10))


def test_crf_uses_the_symmetrised_weights():
    gen = torch.Generator().manual_seed(4)
    feats, logits = torch.rand(3, 9, 8, generator=gen), torch.randn(3, 9, generator=gen)
    W = torch.rand(9, 9, generator=gen) * 2 - 1
    assert not torch.allclose(W, W.T)
    out = _crf(9, W)(feats, logits)
    torch.testing.assert_close(_crf(9, W.T)(feats, logits), out)
    torch.testing.assert_close(_crf(9, (W + W.T) / 2)(feats, logits), out)
    # The gradient of a symmetric function of W is symmetric too.
    crf = _crf(9, W)
    crf(feats, logits).sum().backward()
    torch.testing.assert_close(crf.W.grad[0], crf.W.grad[0].T)


def test_crf_all_zero_embedding_gives_no_nan():
    feats = torch.rand(2, 9, 8)
    feats[0, 3] = 0  # a patch whose pooled post-ReLU features are all zero
    feats.requires_grad_(True)
    logits = torch.randn(2, 9, requires_grad=True)
    crf = _crf(9, torch.rand(9, 9) - 0.5)
    out = crf(feats, logits)
    out.sum().backward()
    assert torch.isfinite(out).all()
    for grad in (feats.grad, logits.grad, crf.W.grad):
        assert torch.isfinite(grad).all()


def test_crf_bfloat16_and_autocast():
    gen = torch.Generator().manual_seed(5)
    feats, logits = torch.rand(4, 9, 64, generator=gen), torch.randn(4, 9, generator=gen)
    crf = _crf(9, torch.rand(9, 9, generator=gen) - 0.5)
    reference = crf(feats, logits)
    out = crf(feats.bfloat16(), logits.bfloat16())
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), reference, atol=0.05, rtol=0.02)
    # Under autocast the CRF still computes in float32: the same result as without it.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(crf(feats, logits), reference, atol=0, rtol=0)
    crf_bf16 = _crf(9, crf.W.detach()[0]).to(torch.bfloat16)
    assert torch.isfinite(crf_bf16(feats.bfloat16(), logits.bfloat16())).all()


# ------------------------------------------------------------------------------------------------------- ResNet


def _expected_resnet18_keys(use_crf):
    """Contract §5.4: the original resnet18's state_dict, in registration order (PyTorch 0.3: no BN counters)."""
    keys = [("conv1.weight", [64, 3, 7, 7])]

    def bn(prefix, width):
        return [(f"{prefix}.{name}", [width]) for name in ("weight", "bias", "running_mean", "running_var")]

    keys += bn("bn1", 64)
    inplanes = 64
    for layer, width in enumerate((64, 128, 256, 512), start=1):
        for block in (0, 1):
            prefix = f"layer{layer}.{block}"
            keys.append((f"{prefix}.conv1.weight", [width, inplanes, 3, 3]))
            keys += bn(f"{prefix}.bn1", width)
            keys.append((f"{prefix}.conv2.weight", [width, width, 3, 3]))
            keys += bn(f"{prefix}.bn2", width)
            if block == 0 and inplanes != width:
                keys.append((f"{prefix}.downsample.0.weight", [width, inplanes, 1, 1]))
                keys += bn(f"{prefix}.downsample.1", width)
            inplanes = width
    keys += [("fc.weight", [1, 512]), ("fc.bias", [1])]
    if use_crf:
        keys.append(("crf.W", [1, 9, 9]))
    return keys


@pytest.mark.parametrize("use_crf, count", [(True, 103), (False, 102)])
def test_state_dict_keys_and_shapes_match_the_original(use_crf, count):
    expected = _expected_resnet18_keys(use_crf)
    assert len(expected) == count
    state = MODELS["resnet18"](num_nodes=9, use_crf=use_crf).state_dict()
    counters = [k for k in state if k.endswith("num_batches_tracked")]
    assert len(counters) == 20
    assert [(k, list(v.shape)) for k, v in state.items() if not k.endswith("num_batches_tracked")] == expected


def test_parameter_count_and_initialisation():
    torch.manual_seed(0)
    model = MODELS["resnet18"](num_nodes=9)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 11_177_106
    state = model.state_dict()
    assert sum(v.numel() for k, v in state.items() if not k.endswith("num_batches_tracked")) == 11_186_706
    # He fan-out: N(0, sqrt(2 / (k·k·out_channels))); layer4.0.conv2 has 2.4 M weights, so the estimate is tight.
    for name in ("conv1.weight", "layer4.0.conv2.weight", "layer2.0.downsample.0.weight"):
        weight = state[name]
        expected = math.sqrt(2 / (weight.shape[2] * weight.shape[3] * weight.shape[0]))
        assert weight.std().item() == pytest.approx(expected, rel=0.05)
        assert abs(weight.mean().item()) < 0.1 * expected
    for name, value in state.items():
        if ".bn" in name or name.startswith("bn1") or "downsample.1" in name:
            if name.endswith("weight"):
                assert torch.all(value == 1), name
            elif name.endswith("bias"):
                assert torch.all(value == 0), name
    assert torch.count_nonzero(state["crf.W"]) == 0
    assert model.fc.out_features == 1


def test_models_registry_and_embedding_sizes():
    assert list(MODELS) == ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
    patches = torch.rand(2, 3, CROP, CROP)
    for name, dim in (("resnet50", 2048),):  # Bottleneck blocks; resnet18 (BasicBlock, 512) is tested throughout
        model = MODELS[name](num_nodes=1).eval()
        assert isinstance(model, ResNetGrid)
        with torch.no_grad():
            feats, logits = model.embed(patches)
        assert feats.shape == (2, dim) and logits.shape == (2,)


@pytest.mark.parametrize("batch, crop", [(1, CROP), (2, CROP), (1, 56), (2, 64)])
def test_forward_shape_including_batch_of_one(batch, crop):
    model = MODELS["resnet18"](num_nodes=9).eval()
    with torch.no_grad():
        out = model(torch.rand(batch, 9, 3, crop, crop))
    assert out.shape == (batch, 9)
    one = MODELS["resnet18"](num_nodes=1).eval()
    with torch.no_grad():
        assert one(torch.rand(1, 1, 3, CROP, CROP)).shape == (1, 1)


def test_shared_halves_equal_the_grid_forward(grids):
    for use_crf in (True, False):
        model = randomise(MODELS["resnet18"](num_nodes=9, use_crf=use_crf)).eval()
        with torch.no_grad():
            out = model(grids)
            feats, logits = model.embed(grids.flatten(0, 1))
            halves = model.grid_logits(feats.reshape(2, 9, -1), logits.reshape(2, 9))
        assert model.use_crf is use_crf
        torch.testing.assert_close(halves, out, atol=1e-6, rtol=1e-6)
        if use_crf:  # the CRF really changes the logits once W ≠ 0
            assert not torch.allclose(halves, logits.reshape(2, 9))
        else:
            torch.testing.assert_close(out, logits.reshape(2, 9))


def test_gradients_reach_W_and_the_backbone(grids):
    model = MODELS["resnet18"](num_nodes=9).train()
    target = torch.zeros(2, 9)
    target[0] = 1
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(grids), target)
    loss.backward()
    for name in ("crf.W", "conv1.weight", "layer1.0.conv1.weight", "layer4.1.bn2.weight", "fc.weight"):
        grad = model.get_parameter(name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_bfloat16_forward(grids):
    model = randomise(MODELS["resnet18"](num_nodes=9)).eval()
    grids = grids[:1]  # bfloat16 convolutions are emulated (slow) on CPUs without native support
    with torch.no_grad():
        reference = model(grids)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = model(grids)
        bf16 = model.to(torch.bfloat16)(grids.bfloat16())
    for out in (autocast, bf16):
        assert out.shape == (1, 9) and torch.isfinite(out).all()
        # bfloat16 has 8 significant bits; 18 layers of it move logits by a few percent of their spread.
        assert (out.float() - reference).abs().max() < 0.1 * reference.abs().max() + 0.05


def test_channels_last_gives_the_same_logits(grids):
    model = randomise(MODELS["resnet18"](num_nodes=9)).eval()
    with torch.no_grad():
        reference = model(grids)
        feats, logits = model.to(memory_format=torch.channels_last).embed(
            grids.flatten(0, 1).contiguous(memory_format=torch.channels_last)
        )
        out = model.grid_logits(feats.reshape(2, 9, -1), logits.reshape(2, 9))
    torch.testing.assert_close(out, reference, atol=1e-4, rtol=1e-4)


# -------------------------------------------------------------------------------------------------- build_model


def test_build_model_from_the_original_configs():
    cfg = {"model": "resnet18", "use_crf": True, "image_size": 768, "patch_size": 256, "crop_size": 224}
    assert grid_size(cfg) == 9
    model = build_model(cfg)
    assert model.use_crf and model.crf.num_nodes == 9 and model.num_nodes == 9
    base = build_model({**cfg, "use_crf": False})
    assert not base.use_crf and base.crf is None
    assert build_model(cfg, num_nodes=4).crf.W.shape == (1, 4, 4)
    assert build_model({**cfg, "image_size": 512}).crf.num_nodes == 4
    # The same weights fit both: a base checkpoint is a CRF checkpoint without crf.W.
    load_model_state(base, {k: v for k, v in model.state_dict().items() if k != "crf.W"})


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model": "resnet19"}, "model 'resnet19' is not one of resnet18, resnet34"),
        ({"use_crf": "yes"}, "use_crf must be true or false"),
        ({"image_size": 700}, "image_size 700 is not a multiple of patch_size 256"),
        ({"patch_size": 0}, "patch_size must be a positive integer, got 0"),
    ],
)
def test_build_model_errors(change, message):
    cfg = {"model": "resnet18", "use_crf": True, "image_size": 768, "patch_size": 256, **change}
    with pytest.raises(InputError, match=message) as err:
        build_model(cfg, source="cfg.json")
    assert str(err.value).startswith("cfg.json: ") and "\n" not in str(err.value)
    with pytest.raises(InputError, match="missing key 'patch_size'"):
        build_model({"model": "resnet18", "use_crf": False, "image_size": 768})
