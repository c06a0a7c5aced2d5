"""Second-order gradients and torch.func transforms of the per-sample losses, against float64 autograd references
written straight from the equations (softmax, then the formula): a gradient penalty, gradgradcheck, grad/vmap/hessian."""
import pytest
import torch
import torch.nn.functional as F

import ratio_losses.losses as L


def _p(x): return x.softmax(1)


def _pc(x, y): return _p(x).gather(1, y[:, None]).squeeze(1)


REFERENCES = {   # name: (our loss (logits, target) -> per-sample, float64 reference from the printed equation)
    'ce': (lambda x, y: L.cross_entropy(x, y, 'none'), lambda x, y: -torch.log(_pc(x, y))),
    'crl': (lambda x, y: L.competing_ratio_loss(x, y, 1.5, 1.0, 'none'),
            lambda x, y: torch.log(1.5 + 1 - _pc(x, y)) - torch.log(_pc(x, y))),                    # CRL eq. 11
    'crl beta=0': (lambda x, y: L.competing_ratio_loss(x, y, 1.5, 0.0, 'none'), lambda x, y: -torch.log(_pc(x, y))),
    'crl a=.05 b=.5 (exact path)': (lambda x, y: L.competing_ratio_loss(x, y, 0.05, 0.5, 'none'),
                                    lambda x, y: 0.5 * torch.log(0.05 + 1 - _pc(x, y)) - torch.log(_pc(x, y))),
    'nllr': (lambda x, y: L.nllr_loss(x, y, 'none'), lambda x, y: torch.log((1 - _pc(x, y)) / _pc(x, y))),   # eq. 9
    'cce': (lambda x, y: L.categorical_cross_entropy(x, y, 'none'),                                         # eq. 5
            lambda x, y: -torch.log(_pc(x, y)) - torch.log(1 - _p(x)).sum(1) + torch.log(1 - _pc(x, y))),
    'gce k=3': (lambda x, y: L.gradient_boosting_cross_entropy(x, y, 3, 'none'), None),                     # eq. 12 below
    'focal': (lambda x, y: L.focal_loss(x, y, 2.0, None, 'none'),
              lambda x, y: -(1 - _pc(x, y)) ** 2 * torch.log(_pc(x, y))),
    'maxent': (lambda x, y: L.max_entropy_loss(x, y, 0.3, 'none'),
               lambda x, y: -torch.log(_pc(x, y)) + 0.3 * (_p(x) * torch.log(_p(x))).sum(1)),
}


def _gce_reference(x, y, k=3):
    "Eq. 12 with the selection of eq. 10 made by a loop on the detached scores."
    rows = []
    for i in range(len(y)):
        s, l = x[i], int(y[i])
        negatives = sorted((float(s[j]) for j in range(len(s)) if j != l), reverse=True)
        keep = [l] + [j for j in range(len(s)) if j != l and float(s[j]) >= negatives[k - 1]]
        rows.append(torch.logsumexp(s[keep], 0) - s[l])
    return torch.stack(rows)


def _reference(name):
    ref = REFERENCES[name][1]
    return _gce_reference if ref is None else ref


def _data(B=8, C=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, C, generator=g, dtype=torch.float64) * 2, torch.randint(0, C, (B,), generator=g)


@pytest.mark.parametrize('name', REFERENCES)
def test_gradient_penalty_matches_the_reference(name):
    "d/dx of |dL/dx|^2 (a gradient penalty) through our loss equals the same through the reference."
    ours, ref = REFERENCES[name][0], _reference(name)
    for seed in range(3):
        x, y = _data(seed=seed)
        x.requires_grad_()
        out = []
        for fn in (ours, ref):
            g, = torch.autograd.grad(fn(x, y).sum(), x, create_graph=True)
            gp, = torch.autograd.grad((g ** 2).sum(), x)
            out.append(gp)
        torch.testing.assert_close(out[0], out[1], rtol=1e-9, atol=1e-12)


def test_crl_with_beta_0_penalises_like_f_cross_entropy():
    "The case that was 35 % off: a gradient penalty through CRL(beta=0) is the one through F.cross_entropy."
    torch.manual_seed(0)
    net = torch.nn.Linear(6, 5)
    inp, y = torch.randn(32, 6), torch.randint(0, 5, (32,))
    grads = []
    for fn in (lambda z: L.competing_ratio_loss(z, y, beta=0.0), lambda z: F.cross_entropy(z, y)):
        net.zero_grad()
        x = inp.clone().requires_grad_()
        g, = torch.autograd.grad(fn(net(x)), x, create_graph=True)
        (g.pow(2).sum()).backward()
        grads.append(net.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('name', REFERENCES)
def test_gradgradcheck(name):
    x, y = _data(4, 6, seed=5)
    x.requires_grad_()
    assert torch.autograd.gradgradcheck(lambda z: REFERENCES[name][0](z, y).sum(), (x,))


@pytest.mark.parametrize('name', REFERENCES)
def test_torch_func_grad_vmap_and_hessian(name):
    ours, ref = REFERENCES[name][0], _reference(name)
    x, y = _data(6, 7, seed=2)
    one = lambda fn: (lambda row, t: fn(row[None], t[None]).sum())         # a loss of one sample
    per_sample = torch.func.vmap(torch.func.grad(one(ours)))(x, y)
    expected = torch.stack([torch.autograd.functional.jacobian(lambda r: one(ref)(r, y[i]), x[i]) for i in range(6)])
    torch.testing.assert_close(per_sample, expected, rtol=1e-9, atol=1e-12)
    h = torch.func.hessian(one(ours))(x[0], y[0])
    torch.testing.assert_close(h, torch.autograd.functional.hessian(lambda r: one(ref)(r, y[0]), x[0]), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize('name', ['nllr', 'crl', 'cce'])
def test_second_order_stays_finite_where_probabilities_saturate(name):
    "float32 logits 60 apart (1 - p_c underflows): the gradient penalty is finite."
    x = torch.tensor([[60.0, 0.0, 0.0], [0.0, 60.0, 0.0]], requires_grad=True)
    y = torch.tensor([0, 0])
    g, = torch.autograd.grad(REFERENCES[name][0](x, y).sum(), x, create_graph=True)
    gp, = torch.autograd.grad((g ** 2).sum(), x)
    assert torch.isfinite(g).all() and torch.isfinite(gp).all()
