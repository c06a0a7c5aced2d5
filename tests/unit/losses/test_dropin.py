"""`torch.nn.CrossEntropyLoss`'s keywords on the per-sample losses: `weight` and `ignore_index` wherever a loss is a
mean of per-sample terms (checked against a float64 loop); `label_smoothing` is a clear error on GCE (the other losses'
smoothed form is tested in test_contract.py)."""
import pytest
import torch
import torch.nn.functional as F

import ratio_losses.losses as L
from test_losses import ref_cce, ref_crl, ref_focal, ref_gce, ref_maxent, ref_nllr, ref_ce

PER_SAMPLE = {   # name: (function taking the drop-in keywords, module class with its hyperparameters, float64 loop reference)
    'ce': (L.cross_entropy, lambda **k: L.CrossEntropyLoss(**k), ref_ce),
    'nllr': (L.nllr_loss, lambda **k: L.NLLRLoss(**k), ref_nllr),
    'crl': (L.competing_ratio_loss, lambda **k: L.CompetingRatioLoss(**k), ref_crl),
    'cce': (L.categorical_cross_entropy, lambda **k: L.CategoricalCrossEntropyLoss(**k), ref_cce),
    'gce k=3': (lambda x, y, reduction='mean', **k: L.gradient_boosting_cross_entropy(x, y, 3, reduction, **k),
                lambda **k: L.GradientBoostingCrossEntropyLoss(3, **k), lambda x, y: ref_gce(x, y, 3)),
    'focal': (L.focal_loss, lambda **k: L.FocalLoss(**k), ref_focal),
    'maxent': (lambda x, y, reduction='mean', **k: L.max_entropy_loss(x, y, 0.2, reduction, **k),
               lambda **k: L.MaxEntropyLoss(0.2, **k), lambda x, y: ref_maxent(x, y, 0.2)),
}


def _data(B=12, C=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, C, generator=g, dtype=torch.float64) * 3, torch.randint(0, C, (B,), generator=g)


@pytest.mark.parametrize('name', PER_SAMPLE)
@pytest.mark.parametrize('ignore_index', [-100, 2])
def test_weight_and_ignore_index_against_the_loop(name, ignore_index):
    fn, module, ref = PER_SAMPLE[name]
    x, y = _data()
    y = y.clone(); y[[1, 4, 7]] = ignore_index
    w = torch.linspace(0.5, 2.0, 6, dtype=torch.float64)
    keep = [i for i in range(len(y)) if y[i] != ignore_index]
    per = ref(x[keep], y[keep])
    wk = [w[int(y[i])].item() for i in keep]
    expected_mean = sum(a * b for a, b in zip(per, wk)) / sum(wk)
    got = fn(x, y, weight=w, ignore_index=ignore_index)
    assert got.item() == pytest.approx(expected_mean, rel=1e-10)
    none = fn(x, y, reduction='none', weight=w, ignore_index=ignore_index)
    assert none[[1, 4, 7]].tolist() == [0.0, 0.0, 0.0]
    torch.testing.assert_close(none[keep], torch.tensor(per, dtype=torch.float64) * torch.tensor(wk, dtype=torch.float64))
    torch.testing.assert_close(module(weight=w, ignore_index=ignore_index)(x, y), got)
    unweighted = fn(x, y, ignore_index=ignore_index)
    assert unweighted.item() == pytest.approx(sum(per) / len(per), rel=1e-10)
    xg = x.clone().requires_grad_()
    fn(xg, y, weight=w, ignore_index=ignore_index).backward()
    assert (xg.grad[[1, 4, 7]] == 0).all() and torch.isfinite(xg.grad).all()          # ignored rows get no gradient


def test_cross_entropy_matches_torch_with_every_keyword():
    x, y = _data()
    y = y.clone(); y[3] = -100
    w = torch.rand(6, dtype=torch.float64) + 0.1
    for kw in ({'weight': w}, {'label_smoothing': 0.1}, {'weight': w, 'label_smoothing': 0.2}, {}):
        for r in ('mean', 'sum', 'none'):
            torch.testing.assert_close(L.cross_entropy(x, y, r, **kw), F.cross_entropy(x, y, reduction=r, **kw))
    torch.testing.assert_close(L.CrossEntropyLoss(weight=w, label_smoothing=0.1)(x, y),
                               torch.nn.CrossEntropyLoss(weight=w, label_smoothing=0.1)(x, y))


@pytest.mark.parametrize('name', PER_SAMPLE)
def test_a_batch_whose_every_target_is_ignored_has_loss_0(name):
    fn = PER_SAMPLE[name][0]
    x = torch.randn(4, 6, requires_grad=True)
    loss = fn(x, torch.full((4,), -100))
    loss.backward()
    assert loss.item() == 0.0 and (x.grad == 0).all()


@pytest.mark.parametrize('name', ['gce k=3'])
def test_label_smoothing_is_a_clear_error_where_the_loss_has_no_form_for_it(name):
    "GCE alone: its negatives are ranked against one true class (the others' smoothed form is in test_contract.py)." 
    fn, module, _ = PER_SAMPLE[name]
    x, y = _data()
    with pytest.raises(ValueError, match=r'label_smoothing=0.1: .* has no label-smoothed form; use cross_entropy'):
        fn(x, y, label_smoothing=0.1)
    with pytest.raises(ValueError, match='label_smoothing=0.1'):
        module(label_smoothing=0.1)
    assert fn(x, y, label_smoothing=0.0).item() == pytest.approx(fn(x, y).item())


def test_bad_keywords_and_targets():
    x, y = _data()
    with pytest.raises(ValueError, match='weight must be None or a 1-D float tensor'): L.competing_ratio_loss(x, y, weight=[1.0] * 6)
    with pytest.raises(ValueError, match=r'ignore_index=0.5 must be an integer'): L.nllr_loss(x, y, ignore_index=0.5)
    with pytest.raises(ValueError, match=r'class index 7, outside \[0, 5\].*ignore_index=-100'):
        L.categorical_cross_entropy(x, torch.tensor([7] + [0] * 11))


def test_objective_config_takes_the_keywords():
    obj = L.build_objective({'crl': {'weight': [1.0, 2.0, 1.0], 'ignore_index': 1}})
    assert obj.classification.weight.tolist() == [1.0, 2.0, 1.0]
    from ratio_losses.core import ModelOutput
    x = torch.randn(5, 3); y = torch.tensor([0, 1, 2, 1, 0])
    expected = (L.competing_ratio_loss(x, y, reduction='none', ignore_index=1) * torch.tensor([1., 0, 1, 0, 1])).sum() / 3
    torch.testing.assert_close(obj(ModelOutput(logits=x), y), expected)
    assert 'weight=[1.0, 2.0, 1.0], ignore_index=1' in repr(obj.classification)
