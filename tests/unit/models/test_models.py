"""Backbones, heads and the diversification block: sizes against the references, shapes, semantics, bad configs."""
import time

import pytest
import torch

from ratio_losses.losses import build_objective
from ratio_losses.models import BACKBONES, HEADS, DiversificationBlock, build_model, count_parameters, five_crop_logits, pretrained_file

# parameter counts of the standard references (10 classes; ImageNet ResNet-50: 1000), to within 2 %
REFERENCES = {'msl_resnet20': 0.27e6, 'msl_resnet56': 0.85e6, 'msl_resnet110': 1.7e6, 'preact_resnet164': 1.7e6,
              'wrn28_10': 36.5e6, 'cifar_resnet18': 11.2e6, 'vgg16_bn': 14.7e6, 'imagenet_resnet50': 25.6e6,
              'imagenet_resnet34': 21.8e6}


@pytest.mark.parametrize('name,expected', REFERENCES.items())
def test_parameter_counts_match_the_references(name, expected):
    classes = 1000 if name.startswith('imagenet') else 10
    n = count_parameters(build_model(name, num_classes=classes))
    assert abs(n - expected) / expected < 0.02, (name, n)


@pytest.mark.parametrize('name', sorted(BACKBONES))
def test_every_backbone_builds_with_one_or_three_channels(name):
    for c in (1, 3):
        model = build_model(name, in_channels=c, num_classes=7)
        assert len(model.backbone.stages) == len(model.backbone.stage_channels)


SMALL = ['small_cnn', 'msl_resnet20', 'nllr_shallow', 'msl_vgg16', 'vgg16_bn', 'cifar_resnet18', 'preact_resnet164',
         'imagenet_resnet50', 'imagenet_resnet34']
HEAD_OPTIONS = {'linear': {}, 'se_attention': {'hidden': 16}, 'multi_exit': {'exits': [1, 2]}, 'cam': {},
                'margin': {'normalize': True}, 'gaussian_mixture': {}}


@pytest.mark.parametrize('name', SMALL)
@pytest.mark.parametrize('shape', [(1, 28, 28), (3, 32, 32)])
def test_forward_shapes_and_stages(name, shape):
    heads = HEADS if name in ('small_cnn', 'msl_resnet20', 'nllr_shallow') else ['linear']
    x = torch.randn(2, *shape)
    for head in heads:
        model = build_model(name, head, in_channels=shape[0], num_classes=5, head_options=HEAD_OPTIONS[head]).eval()
        stages = model.backbone(x)
        assert [s.shape[1] for s in stages] == model.backbone.stage_channels
        out = model(x)
        assert out.logits.shape == (2, 5) and out.features.shape[0] == 2 and torch.isfinite(out.logits).all()


def test_se_head_returns_attention():
    out = build_model('small_cnn', 'se_attention', in_channels=1, head_options={'hidden': 2})(torch.randn(8, 1, 28, 28))
    assert out.attention.shape == (8, 2) and out.features.shape == (8, 2)
    assert (out.attention > 0).all() and (out.attention < 1).all()


@pytest.mark.parametrize('config', [[4], [3, 4], [2, 4], [1, 4], [2, 3, 4], [1, 3, 4], [1, 2, 3, 4]])
def test_msl_table2_exit_configs(config):
    model = build_model('msl_vgg16', 'multi_exit', num_classes=100, head_options={'exits': config}).eval()
    out = model(torch.randn(2, 3, 32, 32))
    assert len(out.exit_logits) == len(config) and all(q.shape == (2, 100) for q in out.exit_logits)
    assert out.logits is out.exit_logits[-1]


def test_cam_is_the_1x1_conv_output():
    model = build_model('msl_resnet20', 'cam', num_classes=6).eval()
    out = model(torch.randn(3, 3, 32, 32))
    torch.testing.assert_close(out.class_maps, model.head.conv(out.feature_maps))
    torch.testing.assert_close(out.logits, out.class_maps.mean((2, 3)))


# --- diversification block -----------------------------------------------------------------------------------
def _maps(N=4, C=3, H=7, W=7, seed=0):
    return torch.rand(N, C, H, W, generator=torch.Generator().manual_seed(seed))


def test_peaks_only_scales_exactly_the_maxima_ties_included():
    maps = _maps()
    maps[0, 0, 1, 1] = maps[0, 0, 5, 6] = 2.0                       # a tie for the maximum
    block = DiversificationBlock(p_peak=1, p_patch=0, alpha=0.1).train()
    out = block(maps)
    peaks = maps == maps.amax((2, 3), keepdim=True)
    assert peaks[0, 0].sum() == 2
    torch.testing.assert_close(out[peaks], 0.1 * maps[peaks])
    torch.testing.assert_close(out[~peaks], maps[~peaks])


@pytest.mark.parametrize('H,W,G', [(7, 7, 3), (5, 8, 3), (14, 14, 4), (6, 6, 1), (3, 3, 5)])
def test_patches_only_scale_everything_but_the_peaks_borders_included(H, W, G):
    maps = _maps(H=H, W=W)
    out = DiversificationBlock(p_peak=0, p_patch=1, patch_size=G, alpha=0.5).train()(maps)
    peaks = maps == maps.amax((2, 3), keepdim=True)
    torch.testing.assert_close(out[~peaks], 0.5 * maps[~peaks])      # every non-peak location, last row/column too
    torch.testing.assert_close(out[peaks], maps[peaks])


def test_identity_when_off_or_evaluating():
    maps = _maps()
    assert torch.equal(DiversificationBlock(0, 0).train()(maps), maps)
    assert torch.equal(DiversificationBlock(1, 1).eval()(maps), maps)


def test_patches_are_whole_grid_cells():
    maps = _maps(N=50, C=4, H=9, W=9)
    mask = DiversificationBlock(p_peak=0, p_patch=0.5, patch_size=3).masks(maps)
    peaks = maps == maps.amax((2, 3), keepdim=True)
    cells = mask.unfold(2, 3, 3).unfold(3, 3, 3)                   # (N, C, 3, 3, 3, 3)
    peak_cells = peaks.unfold(2, 3, 3).unfold(3, 3, 3)
    on = (cells | peak_cells).all(-1).all(-1)                      # a hit cell is all suppressed except its peak
    off = ~(cells.any(-1).any(-1))
    assert (on | off).all()
    from scipy.stats import binomtest
    assert binomtest(int(on.sum()), on.numel(), 0.5).pvalue > 1e-4  # cells are hit with p_patch (fixed seed)


def test_peak_probability():
    maps = _maps(N=400, C=5)
    mask = DiversificationBlock(p_peak=0.3, p_patch=0).masks(maps)
    hit = mask.flatten(2).any(2)
    from scipy.stats import binomtest
    assert binomtest(int(hit.sum()), hit.numel(), 0.3).pvalue > 1e-4


def test_same_seed_same_masks_and_state_round_trip():
    maps = _maps()
    a, b = DiversificationBlock(seed=5), DiversificationBlock(seed=5)
    assert torch.equal(a.masks(maps), b.masks(maps))
    assert not torch.equal(a.masks(maps), DiversificationBlock(seed=6).masks(maps))
    state = a.state_dict()
    c = DiversificationBlock(seed=99); c.load_state_dict(state)
    assert torch.equal(a.masks(maps), c.masks(maps))               # the generator's position was restored


# --- pretrained weights, offline ----------------------------------------------------------------------------
def test_missing_pretrained_weights_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError) as err:
        build_model('imagenet_resnet50', num_classes=200, backbone_options={'pretrained': True})
    assert time.perf_counter() - start < 5
    assert str(pretrained_file(50)) in str(err.value) and str(tmp_path) in str(err.value)


def test_pretrained_weights_load_from_the_cache_and_a_path(tmp_path, monkeypatch):
    import torchvision
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    reference = torchvision.models.resnet50(weights=None)
    path = pretrained_file(50)
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    for option in (True, str(path)):
        model = build_model('imagenet_resnet50', num_classes=200, backbone_options={'pretrained': option})
        torch.testing.assert_close(model.backbone.stages[4][0].conv1.weight, reference.layer4[0].conv1.weight)
    grey = build_model('imagenet_resnet50', in_channels=1, backbone_options={'pretrained': True})
    torch.testing.assert_close(grey.backbone.stages[0][0].weight, reference.conv1.weight.mean(1, keepdim=True))


def test_five_crop_logits_average_the_five_views():
    import torchvision.transforms.functional as TF
    model = build_model('small_cnn', in_channels=3).eval()
    x = torch.randn(2, 3, 32, 32)
    expected = sum(model(c).logits for c in TF.five_crop(x, [28, 28])) / 5
    torch.testing.assert_close(five_crop_logits(model, x, 28), expected)
    assert five_crop_logits(model, x, 24, scales=(1.0, 0.875)).shape == (2, 10)


# --- bad configuration -------------------------------------------------------------------------------------
@pytest.mark.parametrize('call,match', [
    (lambda: build_model('resnet9000'), "backbone='resnet9000' is unknown; valid choices: cifar_resnet101"),
    (lambda: build_model(head='svm'),
     "head='svm' is unknown; valid choices: cam, gaussian_mixture, linear, margin, multi_exit, se_attention"),
    (lambda: build_model('msl_vgg16', 'multi_exit', head_options={'exits': [0, 4]}), r'block indices in 1..4'),
    (lambda: build_model('msl_vgg16', 'multi_exit', head_options={'exits': [5]}), r'block indices in 1..4'),
    (lambda: build_model('small_cnn', 'cam', head_options={'alpha': 1.5}), r'alpha=1.5 must be in \[0, 1\]'),
    (lambda: build_model('small_cnn', 'cam', head_options={'p_peak': -0.1}), r'p_peak=-0.1 must be a probability'),
    (lambda: build_model('small_cnn', 'cam', head_options={'p_patch': 2}), r'p_patch=2 must be a probability'),
    (lambda: build_model('small_cnn', 'cam', head_options={'patch_size': 0}), r'patch_size=0 \(G\) must be an integer >= 1'),
    (lambda: build_model('small_cnn', 'linear', head_options={'hidden': 3}), 'bad options'),
    (lambda: build_model('small_cnn', num_classes=0), 'num_classes=0'),
])
def test_bad_configuration(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize('head,objective', [('se_attention', 'cc'), ('multi_exit', 'msl'), ('cam', {'gce': {'k': 3}})])
def test_heads_train_with_their_papers_objectives(head, objective):
    torch.manual_seed(0)
    model = build_model('small_cnn', head, in_channels=1, num_classes=10,
                        head_options={'exits': [1, 2, 3]} if head == 'multi_exit' else {})
    loss = build_objective(objective)(model(torch.randn(16, 1, 28, 28)), torch.arange(16) % 10)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
