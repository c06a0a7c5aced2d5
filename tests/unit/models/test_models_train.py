"""The small CNN, build_model, and the training loop on real data (digits)."""
import pytest
import torch
import torch.nn as nn

from ratio_losses.core import ModelOutput, seed_everything
from ratio_losses.data import TensorLoader, load_tensors
from ratio_losses.models import build_model, count_parameters
from ratio_losses.losses import build_objective
from ratio_losses.training import evaluate, fit


@pytest.mark.parametrize('shape', [(1, 28, 28), (3, 32, 32), (1, 8, 8)])
def test_small_cnn_shapes(shape):
    model = build_model('small_cnn', in_channels=shape[0], num_classes=7)
    out = model(torch.randn(3, *shape))
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (3, 7) and out.features.shape == (3, 128)
    assert out.feature_maps.shape[:2] == (3, 128)
    stages = model.backbone(torch.randn(3, *shape))
    assert [s.shape[1] for s in stages] == model.backbone.stage_channels == [32, 64, 128]


def test_small_cnn_size():
    # "a few hundred thousand parameters": 3x3 convs 1-32-64-128-128 with BN, and a 128x10 classifier
    expected = (9 * 1 * 32) + (9 * 32 * 64) + (9 * 64 * 128) + (9 * 128 * 128) + 2 * (32 + 64 + 128 + 128) + 128 * 10 + 10
    assert count_parameters(build_model('small_cnn', in_channels=1, num_classes=10)) == expected == 241_898


def test_build_model_errors():
    with pytest.raises(ValueError, match="backbone=.vgg99. is unknown; valid choices: .*small_cnn"):
        build_model('vgg99')
    with pytest.raises(ValueError, match="head=.svm. is unknown; valid choices: cam, gaussian_mixture, linear, margin"):
        build_model(head='svm')
    with pytest.raises(ValueError, match='num_classes=0'):
        build_model(num_classes=0)


class _Fixed(nn.Module):
    "Returns given logits, to check the metrics against a hand count."
    def __init__(self, logits): super().__init__(); self.logits = logits; self.i = 0
    def forward(self, x):
        out = self.logits[self.i:self.i + len(x)]; self.i += len(x)
        return ModelOutput(out)


def test_evaluate_counts_top1_and_top5():
    logits = torch.tensor([[9., 1, 2, 3, 4, 5, 0],     # target 0: top-1 right
                           [1., 9, 8, 7, 6, 5, 0],     # target 6: outside the top 5
                           [0., 9, 8, 7, 6, 5, 1]])    # target 5: top-5 but not top-1
    y = torch.tensor([0, 6, 5])
    loader = [(torch.zeros(2, 1), y[:2]), (torch.zeros(1, 1), y[2:])]
    res = evaluate(_Fixed(logits), build_objective(), loader, 'cpu')
    assert res['top1_error'] == pytest.approx(2 / 3) and res['top5_error'] == pytest.approx(1 / 3)
    assert res['loss'] == pytest.approx(nn.functional.cross_entropy(logits, y).item())


def _digits_fit(seed, epochs=3, objective=None):
    seed_everything(seed)
    tr, te = load_tensors('digits', 'train'), load_tensors('digits', 'test')
    kw = dict(mean=tr.info.mean, std=tr.info.std)
    model = build_model('small_cnn', in_channels=1, num_classes=10)
    return fit(model, TensorLoader(tr.images, tr.labels, 64, seed=seed, **kw),
               TensorLoader(te.images, te.labels, 360, shuffle=False, **kw), epochs=epochs, progress=False, log=None,
               objective=objective)


def test_fit_learns_digits_and_is_deterministic():
    a, b = _digits_fit(0), _digits_fit(0)
    assert [r['test_error'] for r in a] == [r['test_error'] for r in b]
    assert [r['train_loss'] for r in a] == [r['train_loss'] for r in b]
    assert a[-1]['train_loss'] < a[0]['train_loss']
    assert a[-1]['test_error'] < 0.1          # chance is 0.9


def test_fit_trains_any_objective_and_moves_msl_margin_only_in_training():
    objective = build_objective({'crl': {}, 'msl': {'patience': 5}})
    history = _digits_fit(0, epochs=2, objective=objective)
    msl = objective.regularizers['msl']
    assert msl.steps == 2 * 23                      # 1437 training images in batches of 64: 23 per epoch; eval adds none
    assert history[-1]['test_error'] < 0.2 and not objective.training


def test_fit_rejects_bad_arguments():
    model = build_model('small_cnn', in_channels=1)
    with pytest.raises(ValueError, match='epochs=0'):
        fit(model, [], [], epochs=0)
    with pytest.raises(ValueError, match='lr=-1'):
        fit(model, [], [], epochs=1, lr=-1)
