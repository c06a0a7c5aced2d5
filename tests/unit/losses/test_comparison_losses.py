"""The comparison losses that read more than logits (center, L-Softmax, A-Softmax, LGM, MC-Loss, ICAL): each against a plain,
loop-written float64 evaluation of its equation, its reductions to cross-entropy, gradcheck, state that survives the
state dict, clear errors, and a short training run through the objective and the matching head."""
import math

import pytest
import torch
import torch.nn.functional as F

import ratio_losses.losses as L
from ratio_losses.core import ModelOutput, seed_everything
from ratio_losses.data import TensorLoader, load_tensors
from ratio_losses.models import build_model
from ratio_losses.training import evaluate, fit

SHAPES = [(1, 2, 3), (5, 3, 4), (16, 10, 8), (33, 20, 16)]     # (B, C, D)
DTYPES = [torch.float32, torch.float64]


# --- references: the equations as loops over samples and classes ------------------------------------------------
def _ce_row(row, c):
    m = max(row)
    return -(row[c] - m - math.log(sum(math.exp(v - m) for v in row)))


def _dot(a, b): return sum(u * v for u, v in zip(a, b))
def _norm(a): return math.sqrt(_dot(a, a))


def ref_center(feats, centers, y):                                # Wen et al. 2016, eq. 2
    return [0.5 * sum((a - b) ** 2 for a, b in zip(x, centers[c])) for x, c in zip(feats.tolist(), y.tolist())]


def ref_margin(feats, W, y, m, lam=0.0, normalize=False):          # L-Softmax / A-Softmax with the softmax blend
    W = W.tolist()
    if normalize: W = [[v / _norm(w) for v in w] for w in W]
    out = []
    for x, c in zip(feats.tolist(), y.tolist()):
        row = [_dot(x, w) for w in W]
        scale = _norm(x) * _norm(W[c])
        theta = math.acos(max(-1.0, min(1.0, row[c] / scale))) if scale > 0 else 0.0
        k = min(int(m * theta / math.pi), m - 1)
        psi = (-1) ** k * math.cos(m * theta) - 2 * k
        row[c] = (lam * row[c] + scale * psi) / (1 + lam)
        out.append(_ce_row(row, c))
    return out


def ref_lgm(feats, means, y, alpha, lam):                           # Wan et al. 2018, identity covariances
    out = []
    for x, c in zip(feats.tolist(), y.tolist()):
        d = [0.5 * sum((a - b) ** 2 for a, b in zip(x, mu)) for mu in means.tolist()]
        row = [-(1 + alpha) * dk if k == c else -dk for k, dk in enumerate(d)]
        out.append(_ce_row(row, c) + lam * d[c])
    return out


def ref_mc(fmaps, y, C, xi, mu, beta, mask=None):                  # Chang et al. 2020, as in the authors' code
    out = []
    B, K, H, W = fmaps.shape
    for i in range(B):
        scores, h = [], []
        for j in range(C):
            chans = [fmaps[i, j * xi + t].flatten().tolist() for t in range(xi)]
            keep = [1.0] * xi if mask is None else mask[j].tolist()
            scores.append(sum(max(keep[t] * chans[t][l] for t in range(xi)) for l in range(H * W)) / (H * W))
            soft = []
            for ch in chans:
                mx = max(ch); e = [math.exp(v - mx) for v in ch]; s = sum(e)
                soft.append([v / s for v in e])
            h.append(sum(max(soft[t][l] for t in range(xi)) for l in range(H * W)))
        out.append(mu * _ce_row(scores, y[i].item()) + beta * (1 - sum(h) / C / xi))
    return out


def ref_ical(feats, W, y, lam):                                    # Hui et al. 2019, as in the authors' train()
    W = W.tolist()
    K = len(W)
    unit = [[v / _norm(w) for v in w] for w in W]
    penalty = lam / K + lam / K ** 2 * sum(_dot(unit[i], unit[j]) for i in range(K) for j in range(K) if i != j)
    return [_ce_row([_dot(x, w) for w in unit], c) + penalty for x, c in zip(feats.tolist(), y.tolist())]


def _ical(f, w, y, r, lam=10.0):                                   # logits of the bias-free weight-normalised layer
    return L.inter_class_angular_loss(f @ F.normalize(w, dim=1).T, y, w, lam, r)


def _tol(dtype):
    return dict(rtol=1e-3, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-9)


def _feats(B, C, D, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(B, D, generator=g, dtype=torch.float64) * 2
    w = torch.randn(C, D, generator=g, dtype=torch.float64)
    return f.to(dtype), w.to(dtype), torch.randint(0, C, (B,), generator=g)


FEATURE_LOSSES = {   # name: (fn(features, class_vectors, target, reduction), reference)
    'center': (lambda f, w, y, r: L.center_term(f, y, w, r), ref_center),
    'lsoftmax m=1': (lambda f, w, y, r: L.large_margin_softmax_loss(f, y, w, 1, 0.0, r), lambda f, w, y: ref_margin(f, w, y, 1)),
    'lsoftmax m=2': (lambda f, w, y, r: L.large_margin_softmax_loss(f, y, w, 2, 0.0, r), lambda f, w, y: ref_margin(f, w, y, 2)),
    'lsoftmax m=3 lam=2': (lambda f, w, y, r: L.large_margin_softmax_loss(f, y, w, 3, 2.0, r),
                           lambda f, w, y: ref_margin(f, w, y, 3, 2.0)),
    'lsoftmax m=4': (lambda f, w, y, r: L.large_margin_softmax_loss(f, y, w, 4, 0.0, r), lambda f, w, y: ref_margin(f, w, y, 4)),
    'asoftmax m=4': (lambda f, w, y, r: L.angular_softmax_loss(f, y, w, 4, 0.0, r),
                     lambda f, w, y: ref_margin(f, w, y, 4, normalize=True)),
    'asoftmax m=2 lam=5': (lambda f, w, y, r: L.angular_softmax_loss(f, y, w, 2, 5.0, r),
                           lambda f, w, y: ref_margin(f, w, y, 2, 5.0, normalize=True)),
    'lgm': (lambda f, w, y, r: L.lgm_loss(f, y, w, 0.1, 0.01, r), lambda f, w, y: ref_lgm(f, w, y, 0.1, 0.01)),
    'lgm a=1 l=0.5': (lambda f, w, y, r: L.lgm_loss(f, y, w, 1.0, 0.5, r), lambda f, w, y: ref_lgm(f, w, y, 1.0, 0.5)),
    'ical lam=10': (_ical, lambda f, w, y: ref_ical(f, w, y, 10.0)),
    'ical lam=0.1': (lambda f, w, y, r: _ical(f, w, y, r, 0.1), lambda f, w, y: ref_ical(f, w, y, 0.1)),
}


@pytest.mark.parametrize('name', FEATURE_LOSSES)
@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('dtype', DTYPES)
def test_against_the_equation(name, shape, dtype):
    fn, ref = FEATURE_LOSSES[name]
    for seed in range(3):
        f, w, y = _feats(*shape, dtype, seed)
        expected = torch.tensor(ref(f.double(), w.double(), y), dtype=torch.float64)
        got = fn(f, w, y, 'none')
        assert got.dtype == dtype and got.shape == (shape[0],)
        torch.testing.assert_close(got.double(), expected, **_tol(dtype))
        torch.testing.assert_close(fn(f, w, y, 'mean').double(), expected.mean(), **_tol(dtype))
        torch.testing.assert_close(fn(f, w, y, 'sum').double(), expected.sum(), **_tol(dtype))


@pytest.mark.parametrize('name', FEATURE_LOSSES)
def test_gradcheck(name):
    fn, _ = FEATURE_LOSSES[name]
    f, w, y = _feats(6, 5, 4, torch.float64, seed=3)
    f.requires_grad_(); w.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: fn(a, b, y, 'mean'), (f, w))


@pytest.mark.parametrize('xi,masked', [(1, False), (2, True), (3, False), (3, True)])
@pytest.mark.parametrize('dtype', DTYPES)
def test_mc_against_the_equation(xi, masked, dtype):
    C = 4
    for seed in range(2):
        g = torch.Generator().manual_seed(seed)
        fm = (torch.randn(5, C * xi, 3, 3, generator=g, dtype=torch.float64) * 2).to(dtype)
        y = torch.randint(0, C, (5,), generator=g)
        mask = L.mc_channel_mask(C, xi, g) if masked else None
        expected = torch.tensor(ref_mc(fm.double(), y, C, xi, 1.5, 20.0, mask), dtype=torch.float64)
        got = L.mc_term(fm, y, C, xi, 1.5, 20.0, mask, 'none')
        torch.testing.assert_close(got.double(), expected, **_tol(dtype))
        torch.testing.assert_close(L.mc_term(fm, y, C, xi, 1.5, 20.0, mask).double(), expected.mean(), **_tol(dtype))
    fm = fm.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda z: L.mc_term(z, y, C, xi, 1.5, 20.0, mask), (fm,))


def test_mc_mask_drops_half_of_each_class_channels():
    g = torch.Generator().manual_seed(0)
    for xi in (1, 2, 3, 4, 5):
        mask = L.mc_channel_mask(7, xi, g)
        assert mask.shape == (7, xi) and (mask.sum(1) == xi - xi // 2).all()
    masks = torch.stack([L.mc_channel_mask(1, 3, g)[0] for _ in range(300)])
    assert ((masks == 0).float().mean(0) - 1 / 3).abs().max() < 0.1          # every channel is dropped about 1/3 of the time


# --- reductions to cross-entropy ---------------------------------------------------------------------------------
def test_reductions_to_cross_entropy():
    f, w, y = _feats(32, 10, 8, torch.float64, seed=5)
    ce = F.cross_entropy(f @ w.T, y)
    torch.testing.assert_close(L.large_margin_softmax_loss(f, y, w, margin=1), ce)                 # m = 1, W as is
    torch.testing.assert_close(L.angular_softmax_loss(f, y, w, margin=1), F.cross_entropy(f @ F.normalize(w, dim=1).T, y))
    torch.testing.assert_close(L.large_margin_softmax_loss(f, y, w, margin=4, lam=1e12), ce)      # lambda -> inf: softmax
    torch.testing.assert_close(L.lgm_loss(f, y, w, 0.0, 0.0), F.cross_entropy(-0.5 * torch.cdist(f, w) ** 2, y))
    torch.testing.assert_close(L.max_entropy_loss(f @ w.T, y, 0.0), ce)
    assert L.large_margin_softmax_loss(f, y, w, margin=2) > ce                                   # a margin costs
    out = ModelOutput(logits=f @ w.T, features=f, feature_maps=torch.randn(32, 30, 2, 2, dtype=torch.float64))
    torch.testing.assert_close(L.build_objective({'center': {'lam': 0.0}})(out, y), ce)
    torch.testing.assert_close(L.build_objective({'mc': {'mu': 0.0, 'beta': 0.0}})(out, y), ce)
    torch.testing.assert_close(L.MutualChannelLoss(3, 0.0, 0.0)(out.logits, y, out.feature_maps), ce)
    unit = f @ F.normalize(w, dim=1).T
    torch.testing.assert_close(L.inter_class_angular_loss(unit, y, w, lam=0.0), F.cross_entropy(unit, y))   # lambda = 0: CE
    ical = L.build_objective({'ce': {}, 'ical': {'lam': 5.0}})
    torch.testing.assert_close(ical(ModelOutput(logits=unit, features=f, class_vectors=w), y), L.inter_class_angular_loss(unit, y, w, 5.0))
    torch.testing.assert_close(L.InterClassAngularLoss(5.0)(unit, y, w), L.inter_class_angular_loss(unit, y, w, 5.0))


def test_ical_penalty_bounds():
    "0 for class directions that sum to zero (a regular simplex), 1 when they all coincide; scale-free in each row."
    K = 6
    simplex = torch.eye(K, dtype=torch.float64) - 1 / K
    torch.testing.assert_close(L.inter_class_angle_penalty(simplex), torch.tensor(0.0, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(L.inter_class_angle_penalty(torch.ones(K, 3, dtype=torch.float64)), torch.tensor(1.0, dtype=torch.float64))
    w = torch.randn(K, 4, dtype=torch.float64)
    torch.testing.assert_close(L.inter_class_angle_penalty(w * (torch.rand(K, 1, dtype=torch.float64) * 9 + 0.1)),
                               L.inter_class_angle_penalty(w))


def test_center_update_follows_eq4():
    torch.manual_seed(0)
    closs = L.CenterLoss(lam=0.5, alpha=0.3)
    x, y = torch.randn(12, 3), torch.tensor([0, 1, 1, 2, 2, 2, 0, 0, 0, 1, 3, 3])
    closs(torch.zeros(12, 4), y, x)
    c0 = torch.zeros(4, 3)
    expected = c0.clone()
    for j in range(4):
        idx = (y == j).nonzero().flatten()
        expected[j] = c0[j] - 0.3 * sum(c0[j] - x[i] for i in idx) / (1 + len(idx))
    torch.testing.assert_close(closs.centers, expected)
    before = closs.centers.clone()
    closs.eval()(torch.zeros(12, 4), y, x)                                    # evaluation never moves the centres
    torch.testing.assert_close(closs.centers, before)
    value = closs(torch.zeros(12, 4), y, x)
    torch.testing.assert_close(value, math.log(4) + 0.5 * torch.tensor(ref_center(x, before, y)).mean())


# --- state ------------------------------------------------------------------------------------------------------
def test_learnable_state_survives_the_objective_state_dict():
    torch.manual_seed(0)
    f, w, y = torch.randn(8, 5), torch.randn(4, 5), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    out = ModelOutput(logits=f @ w.T, features=f, class_vectors=w, feature_maps=torch.randn(8, 12, 3, 3))
    config = {'asoftmax': {'gamma': 1.0}, 'center': {}, 'mc': {}}
    obj = L.build_objective(config).train()
    for _ in range(3): obj(out, y)
    state = obj.state_dict()
    assert state['regularizers.center.centers'].shape == (4, 5)
    fresh = L.build_objective(config)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.regularizers['center'].centers, obj.regularizers['center'].centers)
    assert fresh.classification.iteration == obj.classification.iteration == 3
    assert fresh.classification.lam == obj.classification.lam == max(5.0, 1000 / (1 + 3))
    assert torch.equal(fresh(out, y), obj(out, y))                           # same centres, same lambda, same MC mask
    with pytest.raises(ValueError, match=r'centres of shape \(4, 5\) but this batch has 3 classes'):
        fresh(ModelOutput(logits=torch.randn(8, 3), features=f, class_vectors=w[:3]), y % 3)


def test_renormalize_keeps_unit_class_vectors_in_training_only():
    "ICAL's head: the rows are rescaled to unit length in place before each training forward, never in evaluation."
    torch.manual_seed(0)
    m = build_model('small_cnn', 'margin', in_channels=1, num_classes=5, head_options={'normalize': True, 'renormalize': True})
    head, stages = m.head, [torch.randn(4, m.head.fc.in_features, 3, 3)]
    with torch.no_grad(): head.fc.weight.mul_(3.0)
    norms = head.fc.weight.norm(dim=1).clone()
    eval_logits = head.eval()(stages).logits
    torch.testing.assert_close(head.fc.weight.norm(dim=1), norms)                       # evaluation leaves W alone
    assert not torch.allclose(norms, torch.ones(5))
    head.train()(stages)
    torch.testing.assert_close(head.fc.weight.norm(dim=1), torch.ones(5))
    torch.testing.assert_close(head.eval()(stages).logits, eval_logits)                 # normalised logits do not change
    with pytest.raises(ValueError, match='set normalize: true too'):
        build_model('small_cnn', 'margin', in_channels=1, num_classes=5, head_options={'renormalize': True})


def test_model_heads_hold_the_class_vectors():
    m = build_model('small_cnn', 'gaussian_mixture', in_channels=1, num_classes=5)
    assert 'head.means' in m.state_dict()
    out = m(torch.randn(2, 1, 8, 8))
    assert out.class_vectors is m.head.means
    m = build_model('small_cnn', 'margin', in_channels=1, num_classes=5)
    out = m(torch.randn(2, 1, 8, 8))
    assert out.class_vectors is m.head.fc.weight and m.head.fc.bias is None
    m = build_model('small_cnn', 'linear', in_channels=1, num_classes=5, head_options={'channels_per_class': 3})
    assert m(torch.randn(2, 1, 8, 8)).feature_maps.shape[1] == 15


# --- numerics and errors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize('config,head,opts', [
    ({'lsoftmax': {}}, 'margin', {}), ({'asoftmax': {}}, 'margin', {'normalize': True}), ({'lgm': {}}, 'gaussian_mixture', {}),
    ({'center': {}}, 'linear', {}), ({'mc': {}}, 'linear', {'channels_per_class': 3}), ({'maxent': {'gamma': 0.1}}, 'linear', {}),
    ({'ce': {}, 'ical': {}}, 'margin', {'normalize': True, 'renormalize': True})])
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_autocast_through_the_head(config, head, opts, dtype):
    torch.manual_seed(0)
    model = build_model('small_cnn', head, in_channels=1, num_classes=4, head_options=opts)
    obj = L.build_objective(config)
    x, y = torch.randn(8, 1, 8, 8), torch.tensor([0, 1, 2, 3] * 2)
    with torch.autocast('cpu', dtype=dtype):
        loss = obj(model(x), y)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize('name', [n for n in FEATURE_LOSSES if n != 'center'])
def test_finite_at_extreme_features(name):
    fn, _ = FEATURE_LOSSES[name]
    y = torch.tensor([0, 1, 2, 3])
    w = torch.eye(4, 6) * 3
    for f in (torch.eye(4, 6) * 1e4, -torch.eye(4, 6) * 1e4, torch.zeros(4, 6), torch.roll(torch.eye(4, 6), 1, 0) * 1e3):
        f = f.clone().requires_grad_()
        loss = fn(f, w, y, 'mean')
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(f.grad).all(), (name, f)


@pytest.mark.parametrize('call,match', [
    (lambda: L.large_margin_softmax_loss(torch.randn(3, 4), torch.tensor([0, 1, 2]), torch.randn(5, 4), margin=0), 'margin=0'),
    (lambda: L.LargeMarginSoftmaxLoss(margin=2.5), r'margin=2.5 must be an integer >= 1'),
    (lambda: L.angular_softmax_loss(torch.randn(3, 4), torch.tensor([0, 1, 2]), torch.randn(5, 3)), 'weight has dimension 3'),
    (lambda: L.large_margin_softmax_loss(torch.randn(3, 4), torch.tensor([0, 1, 7]), torch.randn(5, 4)), 'class index 7'),
    (lambda: L.lgm_loss(torch.randn(3, 4), torch.tensor([0, 1, 2]), torch.randn(5, 4), alpha=-1), 'alpha=-1'),
    (lambda: L.center_term(torch.randn(3, 4, 1), torch.tensor([0, 1, 2]), torch.randn(5, 4)), r'features must be .* \(B, D\)'),
    (lambda: L.CenterLoss(alpha=2), 'alpha=2 must be in'),
    (lambda: L.MaxEntropyLoss(), 'gamma must be given'),
    (lambda: L.build_objective({'maxent': {}}), 'gamma must be given'),
    (lambda: L.MutualChannelLoss(channels_per_class=0), 'channels_per_class=0'),
    (lambda: L.build_objective('mc')(ModelOutput(logits=torch.randn(2, 4), feature_maps=torch.randn(2, 10, 2, 2)),
                                     torch.tensor([0, 1])), r'head_options \{channels_per_class: ξ\}'),
    (lambda: L.build_objective('lsoftmax')(ModelOutput(logits=torch.randn(2, 4)), torch.tensor([0, 1])), "use the 'margin' head"),
    (lambda: L.build_objective('lgm')(ModelOutput(logits=torch.randn(2, 4)), torch.tensor([0, 1])), "'gaussian_mixture' head"),
    (lambda: L.build_objective('center')(ModelOutput(logits=torch.randn(2, 4)), torch.tensor([0, 1])), 'penultimate features'),
    (lambda: L.InterClassAngularLoss(lam=-1), 'lam=-1'),
    (lambda: L.inter_class_angular_loss(torch.randn(3, 4), torch.tensor([0, 1, 2]), torch.randn(5, 4)), 'one row per class'),
    (lambda: L.build_objective({'ce': {}, 'ical': {}})(ModelOutput(logits=torch.randn(2, 4)), torch.tensor([0, 1])),
     "'margin' head with head_options"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- training through the objective and the matching head ------------------------------------------------------
@pytest.fixture(scope='module')
def digits():
    return load_tensors('digits', 'train'), load_tensors('digits', 'test')


@pytest.mark.parametrize('config,head,opts', [
    ({'ce': {}}, 'linear', {}),
    ({'lsoftmax': {'margin': 2, 'gamma': 0.01}}, 'margin', {}),
    ({'asoftmax': {'gamma': 1.0}}, 'margin', {'normalize': True}),
    ({'lgm': {}}, 'gaussian_mixture', {}),
    ({'center': {'lam': 0.01}}, 'linear', {}),
    # MC-Loss with the authors' beta = 20 does not train on 8x8 digits (2x2 maps) in 3 epochs (82 % error): beta = 2 here
    ({'mc': {'channels_per_class': 2, 'beta': 2.0}}, 'linear', {'channels_per_class': 2}),
    ({'maxent': {'gamma': 0.1}}, 'linear', {}),
    ({'ce': {}, 'ical': {'lam': 10.0}}, 'margin', {'normalize': True, 'renormalize': True}),
])
def test_each_comparison_objective_trains(digits, config, head, opts):
    tr, te = digits
    seed_everything(0)
    model = build_model('small_cnn', head, in_channels=1, num_classes=10, head_options=opts)
    obj = L.build_objective(config)
    test = TensorLoader(te.images, te.labels, 360, shuffle=False)
    before = evaluate(model, obj, test, torch.device('cpu'))['top1_error']
    history = fit(model, TensorLoader(tr.images, tr.labels, 64, seed=0), test, epochs=3, objective=obj, progress=False, log=None)
    after = history[-1]['test_error']
    assert after < 0.25 and after < before - 0.4, (config, before, after)
