"""Every loss against a plain, loop-written float64 evaluation of its printed equation; identities; gradients against
the papers' closed forms; numerics at the extremes; bad input; objectives."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import ratio_losses.losses.checks as LC
import ratio_losses.losses as L
from ratio_losses.core import ModelOutput

SHAPES = [(1, 2), (5, 3), (16, 10), (33, 100)]
DTYPES = [torch.float32, torch.float64]


# --- references: the equations, written as loops over samples and classes ----------------------------------
def _softmax_row(row):
    m = max(row)
    e = [math.exp(v - m) for v in row]
    s = sum(e)
    return [v / s for v in e]


def ref_ce(x, y):
    return [-math.log(_softmax_row(r)[c]) for r, c in zip(x.tolist(), y.tolist())]


def ref_crl(x, y, alpha=1.5, beta=1.0):            # CRL eq. 11
    out = []
    for r, c in zip(x.tolist(), y.tolist()):
        p = _softmax_row(r)
        competing = sum(p[k] for k in range(len(p)) if k != c)
        out.append(beta * math.log(alpha + competing) - math.log(p[c]))
    return out


def ref_nllr(x, y):                                 # CRL eq. 9
    out = []
    for r, c in zip(x.tolist(), y.tolist()):
        p = _softmax_row(r)
        out.append(-math.log(p[c] / sum(p[k] for k in range(len(p)) if k != c)))
    return out


def ref_cce(x, y):                                  # CRL eq. 5
    out = []
    for r, c in zip(x.tolist(), y.tolist()):
        p = _softmax_row(r)
        out.append(-math.log(p[c]) - sum(math.log(1 - p[k]) for k in range(len(p)) if k != c))
    return out


def ref_gce(x, y, k):                               # fine-grained eq. 10-12
    out = []
    for s, l in zip(x.tolist(), y.tolist()):
        negatives = [s[i] for i in range(len(s)) if i != l]
        t_k = sorted(negatives, reverse=True)[min(k, len(negatives)) - 1]
        confusing = [s[i] for i in range(len(s)) if i != l and s[i] >= t_k]
        m = max([s[l]] + confusing)
        out.append(-(s[l] - m) + math.log(math.exp(s[l] - m) + sum(math.exp(v - m) for v in confusing)))
    return out


def ref_cc_ratio(att, y, eps=1e-8):                 # CC eq. 3, 6-8
    a, y = att.tolist(), y.tolist()
    intra = inter = 0.0
    any_inter = False
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            d = sum((a[i][k] - a[j][k]) ** 2 for k in range(len(a[i])))
            if y[i] == y[j]: intra += d
            else: inter += d; any_inter = True
    return intra / (inter + eps) if any_inter else 0.0


def ref_within(q, y, xi):                           # MSL eq. 3-5
    q, y = q.tolist(), y.tolist()
    total = 0.0
    for j in set(y):
        members = [q[i] for i in range(len(q)) if y[i] == j]
        pairs = list(itertools.combinations(members, 2))
        if not pairs: continue
        d = sum(math.sqrt(sum((u - v) ** 2 for u, v in zip(a, b))) for a, b in pairs) / len(pairs)
        total += max(0.0, d - xi) ** 2
    return total


def ref_focal(x, y, gamma=2.0, alpha=None):        # Lin et al. 2017, eq. 5
    out = []
    for r, c in zip(x.tolist(), y.tolist()):
        p = _softmax_row(r)
        out.append(-(alpha[c] if alpha else 1.0) * (1 - p[c]) ** gamma * math.log(p[c]))
    return out


def ref_maxent(x, y, gamma):                          # Dubey et al. 2018: CE - gamma H(p)
    out = []
    for r, c in zip(x.tolist(), y.tolist()):
        p = _softmax_row(r)
        out.append(-math.log(p[c]) + gamma * sum(v * math.log(v) for v in p if v > 0))
    return out


def ref_released(x, y, alpha=0.0, beta=1.0):
    "The authors' ratio.py per sample (PRIS-CV/CRL-code @276466a): clamp the softmax, log((a - p_c)^beta / p_c + 1e-7), a = alpha + 1."
    out = []
    for r, c in zip(x.tolist(), y.tolist()):
        pc = min(max(_softmax_row(r)[c], 1e-7), 1 - 1e-7)
        out.append(math.log((alpha + 1 - pc) ** beta / pc + 1e-7))
    return out


def _data(B, C, dtype, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, C, generator=g, dtype=torch.float64) * scale).to(dtype), torch.randint(0, C, (B,), generator=g)


def _tol(dtype):
    return dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)


FUNCTIONAL = {
    'ce': (lambda x, y, r: L.cross_entropy(x, y, r), ref_ce),
    'nllr': (lambda x, y, r: L.nllr_loss(x, y, r), ref_nllr),
    'crl': (lambda x, y, r: L.competing_ratio_loss(x, y, 1.5, 1.0, r), ref_crl),
    'crl a=1 b=.5': (lambda x, y, r: L.competing_ratio_loss(x, y, 1.0, 0.5, r), lambda x, y: ref_crl(x, y, 1.0, 0.5)),
    'crl a=2 b=1.25': (lambda x, y, r: L.competing_ratio_loss(x, y, 2.0, 1.25, r), lambda x, y: ref_crl(x, y, 2.0, 1.25)),
    'crl a=.05 b=.5 (exact path)': (lambda x, y, r: L.competing_ratio_loss(x, y, 0.05, 0.5, r), lambda x, y: ref_crl(x, y, 0.05, 0.5)),
    'crl a=0 b=2 (exact path)': (lambda x, y, r: L.competing_ratio_loss(x, y, 0.0, 2.0, r), lambda x, y: ref_crl(x, y, 0.0, 2.0)),
    'nllr released': (lambda x, y, r: L.nllr_loss(x, y, r, form='released'), ref_released),
    'crl a=0 b=.5 released': (lambda x, y, r: L.competing_ratio_loss(x, y, 0.0, 0.5, r, form='released'),
                              lambda x, y: ref_released(x, y, 0.0, 0.5)),
    'crl a=1.5 b=1 released': (lambda x, y, r: L.competing_ratio_loss(x, y, 1.5, 1.0, r, form='released'),
                               lambda x, y: ref_released(x, y, 1.5, 1.0)),
    'cce': (lambda x, y, r: L.categorical_cross_entropy(x, y, r), ref_cce),
    'gce k=1': (lambda x, y, r: L.gradient_boosting_cross_entropy(x, y, 1, r), lambda x, y: ref_gce(x, y, 1)),
    'gce k=15': (lambda x, y, r: L.gradient_boosting_cross_entropy(x, y, 15, r), lambda x, y: ref_gce(x, y, 15)),
    'focal': (lambda x, y, r: L.focal_loss(x, y, 2.0, None, r), ref_focal),
    'focal g=0.5': (lambda x, y, r: L.focal_loss(x, y, 0.5, None, r), lambda x, y: ref_focal(x, y, 0.5)),
    'focal g=1 alpha': (lambda x, y, r: L.focal_loss(x, y, 1.0, [0.1 * (i % 7 + 1) for i in range(x.shape[1])], r),
                        lambda x, y: ref_focal(x, y, 1.0, [0.1 * (i % 7 + 1) for i in range(x.shape[1])])),
    'maxent g=0.1': (lambda x, y, r: L.max_entropy_loss(x, y, 0.1, r), lambda x, y: ref_maxent(x, y, 0.1)),
    'maxent g=1': (lambda x, y, r: L.max_entropy_loss(x, y, 1.0, r), lambda x, y: ref_maxent(x, y, 1.0)),
}


@pytest.mark.parametrize('name', FUNCTIONAL)
@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('dtype', DTYPES)
def test_against_the_equation(name, shape, dtype):
    fn, ref = FUNCTIONAL[name]
    for seed in range(3):
        x, y = _data(*shape, dtype, seed)
        expected = torch.tensor(ref(x.double(), y), dtype=torch.float64)
        got = fn(x, y, 'none')
        assert got.dtype == dtype and got.shape == (shape[0],)
        torch.testing.assert_close(got.double(), expected, **_tol(dtype))
        torch.testing.assert_close(fn(x, y, 'mean').double(), expected.mean(), **_tol(dtype))
        torch.testing.assert_close(fn(x, y, 'sum').double(), expected.sum(), **_tol(dtype))


@pytest.mark.parametrize('name', FUNCTIONAL)
@pytest.mark.parametrize('reduction', ['mean', 'sum', 'none'])
def test_gradcheck(name, reduction):
    fn, _ = FUNCTIONAL[name]
    x, y = _data(4, 20, torch.float64, seed=1)
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda z: fn(z, y, reduction), (x,))


def test_cc_loss_against_the_equation():
    for B, D, C, seed in [(2, 3, 2, 0), (8, 16, 3, 1), (24, 8, 5, 2)]:
        g = torch.Generator().manual_seed(seed)
        att = torch.rand(B, D, generator=g, dtype=torch.float64)
        x, y = _data(B, C, torch.float64, seed)
        ratio = ref_cc_ratio(att, y)
        torch.testing.assert_close(L.channel_correlation_ratio(att, y).item(), ratio, rtol=1e-9, atol=1e-12)
        for lam in (0.0, 0.5, 1.0, 2.0):
            expected = torch.tensor(ref_ce(x, y), dtype=torch.float64) + lam * ratio
            for r in ('none', 'mean', 'sum'):
                got = L.channel_correlation_loss(x, y, att, lam=lam, reduction=r)
                torch.testing.assert_close(got, LC._reduce(expected, r), rtol=1e-9, atol=1e-12)
        att.requires_grad_(); x.requires_grad_()
        assert torch.autograd.gradcheck(lambda a, z: L.channel_correlation_loss(z, y, a), (att, x))


def test_msl_against_the_equation():
    for B, C, seed in [(6, 3, 0), (20, 4, 1), (40, 10, 2)]:
        x, y = _data(B, C, torch.float64, seed)
        for xi in (0.0, 0.5, 3.0):
            expected = sum(ref_ce(x, y)) / B + ref_within(x, y, xi)
            torch.testing.assert_close(L.mixture_separability_loss(x, y, xi).item(), expected, rtol=1e-9, atol=1e-12)
        x2, _ = _data(B, C, torch.float64, seed + 10)   # two exits: the average of the two exits' losses
        two = ((sum(ref_ce(x, y)) / B + ref_within(x, y, 0.5)) + (sum(ref_ce(x2, y)) / B + ref_within(x2, y, 0.5))) / 2
        torch.testing.assert_close(L.mixture_separability_loss([x, x2], y).item(), two, rtol=1e-9, atol=1e-12)
        x.requires_grad_()
        assert torch.autograd.gradcheck(lambda z: L.mixture_separability_loss(z, y, 0.1), (x,))


# --- identities ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize('shape', SHAPES)
def test_identities(shape):
    x, y = _data(*shape, torch.float64)
    B, C = shape
    torch.testing.assert_close(L.competing_ratio_loss(x, y, alpha=1.5, beta=0.0), F.cross_entropy(x, y))
    torch.testing.assert_close(L.competing_ratio_loss(x, y, alpha=0.0, beta=1.0), L.nllr_loss(x, y))
    torch.testing.assert_close(L.gradient_boosting_cross_entropy(x, y, k=max(C - 1, 1)), F.cross_entropy(x, y))
    for k in range(1, C):
        gce = L.gradient_boosting_cross_entropy(x, y, k, 'none')
        assert (gce >= 0).all() and (gce <= F.cross_entropy(x, y, reduction='none') + 1e-12).all()


def test_cce_careful_rows_match_the_equation():
    "Rows where a wrong class holds p > 0.99 take the log-space path; a batch mixes both kinds."
    x = torch.randn(6, 5, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    x[1, 3] += 9.0; x[4, 0] += 12.0; x[5, 2] += 14.0                   # three rows with a dominant wrong class
    # (not larger: the float64 reference's own 1 - p_m must stay exact; the extremes are checked below)
    p = x.softmax(1)
    assert (p[[1, 4, 5], [3, 0, 2]] > 0.99).all()
    torch.testing.assert_close(L.categorical_cross_entropy(x, y, 'none'), torch.tensor(ref_cce(x, y), dtype=torch.float64))
    xg = x.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda z: L.categorical_cross_entropy(z, y, 'sum'), (xg,))
    x32 = x.float().requires_grad_()                                   # float32 agrees with the float64 gradient
    L.categorical_cross_entropy(x32, y, 'sum').backward()
    x64 = x.clone().requires_grad_()
    naive = -torch.log(x64.softmax(1)[range(6), y]) - (torch.log1p(-x64.softmax(1)).sum(1) - torch.log1p(-x64.softmax(1)[range(6), y]))
    naive.sum().backward()
    torch.testing.assert_close(x32.grad.double(), x64.grad, rtol=1e-3, atol=1e-4)
    # a wrong class ahead by 1e4 in float32: loss -log p_0 - log(1 - p_1) - log(1 - p_2) = 2e4 - log 2 exactly
    far = torch.tensor([[0.0, 1e4, 0.0]], requires_grad=True)
    loss = L.categorical_cross_entropy(far, torch.tensor([0]))
    assert loss.item() == pytest.approx(2e4 - math.log(2), rel=1e-6)
    loss.backward()
    # d/dx of -log p_0: [-1, 1, 0]; of -log(1 - p_1) = r_1 (e_1 - p) with r_1 p_0 = r_1 p_2 = 1/2: [-1/2, 1, -1/2]
    torch.testing.assert_close(far.grad, torch.tensor([[-1.5, 2.0, -0.5]]), rtol=1e-3, atol=1e-3)


def test_gce_ties_at_the_threshold_all_count():
    x = torch.tensor([[5.0, 1.0, 1.0, 1.0, 0.0]], dtype=torch.float64)   # three negatives tie at t_2 = 1
    got = L.gradient_boosting_cross_entropy(x, torch.tensor([0]), k=2)
    assert got.item() == pytest.approx(ref_gce(x, torch.tensor([0]), 2)[0])
    assert got.item() == pytest.approx(-5 + math.log(math.exp(5) + 3 * math.e))


def test_gce_leaves_the_logits_alone():
    x, y = _data(8, 30, torch.float32)
    before = x.clone()
    L.gradient_boosting_cross_entropy(x, y, k=3)
    assert torch.equal(x, before)


def test_msl_is_ce_with_one_sample_per_class():
    x = torch.randn(6, 6, dtype=torch.float64)
    y = torch.randperm(6)
    torch.testing.assert_close(L.mixture_separability_loss(x, y), F.cross_entropy(x, y))
    torch.testing.assert_close(L.MixtureSeparabilityLoss()(x, y), F.cross_entropy(x, y))


def test_cc_matrix_form_and_permutation_invariance():
    att = torch.rand(12, 7, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 3, 3, 0])
    loop = torch.tensor([[sum((att[i, k] - att[j, k]) ** 2 for k in range(7)) for j in range(12)] for i in range(12)])
    torch.testing.assert_close(L.pairwise_sq_distances(att), loop.double())
    perm = torch.randperm(12)
    torch.testing.assert_close(L.channel_correlation_ratio(att[perm], y[perm]), L.channel_correlation_ratio(att, y))


def test_cc_without_a_different_class_pair_is_defined():
    att = torch.rand(5, 4, requires_grad=True)
    y = torch.zeros(5, dtype=torch.long)
    assert L.channel_correlation_ratio(att, y).item() == 0.0
    x = torch.randn(5, 3, requires_grad=True)
    loss = L.channel_correlation_loss(x, y, att)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(att.grad).all() and torch.isfinite(x.grad).all()
    torch.testing.assert_close(loss, F.cross_entropy(x, y))


# --- gradients: autograd against every closed form the papers print ------------------------------------------
def _logits_with(p_c, p_j, C=10):
    rest = (1 - p_c - p_j) / (C - 2)
    return torch.log(torch.tensor([[p_c, p_j] + [rest] * (C - 2)], dtype=torch.float64)).requires_grad_()


@pytest.mark.parametrize('p_c', [0.05, 0.3, 0.6, 0.9])
def test_crl_eq8_ce_gradient_matches(p_c):
    x = _logits_with(p_c, (1 - p_c) / 2)
    L.cross_entropy(x, torch.tensor([0])).backward()
    p = x.detach().softmax(1)[0]
    torch.testing.assert_close(x.grad[0, 1:], p[1:])                    # eq. 8: dL/dx_j = p_j
    torch.testing.assert_close(x.grad[0, 0], p[0] - 1)


def test_crl_eq7_prints_the_softmax_derivative_with_its_cases_swapped():
    x = _logits_with(0.4, 0.35).detach().requires_grad_()
    p = x.softmax(1)[0]
    grad, = torch.autograd.grad(p[0], x)                                   # d p_c / d x_j, c = 0
    pc, pj = p[0].item(), p[1].item()
    assert grad[0, 0].item() == pytest.approx(pc * (1 - pc))               # j = c: p_c (1 - p_c)
    assert grad[0, 1].item() == pytest.approx(-pc * pj)                    # j != c: -p_c p_j
    printed_j_ne_c, printed_j_eq_c = pc * (1 - pj), -pc * pc               # eq. 7 as printed
    assert grad[0, 1].item() != pytest.approx(printed_j_ne_c) and grad[0, 0].item() != pytest.approx(printed_j_eq_c)


@pytest.mark.parametrize('alpha,beta', [(1.5, 1.0), (1.5, 0.5), (1.0, 2.0), (0.0, 1.0)])
@pytest.mark.parametrize('p_c', [0.1, 0.4, 0.7])
def test_crl_eq14_15_printed_sign_disagrees_with_autograd(alpha, beta, p_c):
    p_j = (1 - p_c) / 2
    x = _logits_with(p_c, p_j)
    L.competing_ratio_loss(x, torch.tensor([0]), alpha, beta).backward()
    autograd = x.grad[0, 1].item()
    assert autograd == pytest.approx(L.crl_gradient(p_c, p_j, alpha, beta), rel=1e-9)
    printed = L.crl_printed_gradient(p_c, p_j, alpha, beta)                # eq. 14 (eq. 15 for alpha=0, beta=1)
    # the printed formula has the opposite sign on the CRL term: they differ by exactly 2 beta p_c p_j / (alpha+1-p_c)
    assert autograd - printed == pytest.approx(2 * beta * p_c * p_j / (alpha + 1 - p_c), rel=1e-9)
    assert autograd > 0                                                     # never negative, unlike eq. 15 for p_c > 0.5
    if alpha == 0 and beta == 1:
        assert autograd == pytest.approx(p_j / (1 - p_c), rel=1e-9)
        if p_c > 0.5: assert printed < 0


def test_crl_gradient_is_a_per_sample_rescaling_of_ce():
    x, y = _data(16, 10, torch.float64)
    x.requires_grad_()
    g_crl, = torch.autograd.grad(L.competing_ratio_loss(x, y, 1.5, 1.0, 'sum'), x)
    g_ce, = torch.autograd.grad(F.cross_entropy(x, y, reduction='sum'), x)
    p_c = x.detach().softmax(1)[range(16), y]
    w = 1 + p_c / (1.5 + 1 - p_c)
    torch.testing.assert_close(g_crl, w[:, None] * g_ce)


def test_gce_eq13_14_and_the_true_class_claim_of_eq16():
    x, y = _data(8, 40, torch.float64, seed=3)
    x.requires_grad_()
    k = 6
    g_gce, = torch.autograd.grad(L.gradient_boosting_cross_entropy(x, y, k, 'sum'), x)
    g_ce, = torch.autograd.grad(F.cross_entropy(x, y, reduction='sum'), x)
    xd = x.detach()
    for i in range(8):
        l = y[i].item()
        negatives = sorted((xd[i, j].item() for j in range(40) if j != l), reverse=True)
        J = [j for j in range(40) if j != l and xd[i, j] >= negatives[k - 1]]
        denom = math.exp(xd[i, l]) + sum(math.exp(xd[i, j]) for j in J)
        for j in range(40):                                                    # eq. 14, and 0 outside J'_> and l
            expected = math.exp(xd[i, j]) / denom if j in J else (math.exp(xd[i, l]) / denom - 1 if j == l else 0.0)
            assert g_gce[i, j].item() == pytest.approx(expected, rel=1e-9, abs=1e-12)
        p = xd[i].softmax(0)                                                   # eq. 13
        assert g_ce[i, l].item() == pytest.approx(p[l].item() - 1) and g_ce[i, J[0]].item() == pytest.approx(p[J[0]].item())
        assert all(g_gce[i, j] > g_ce[i, j] for j in J)                        # eq. 16 holds on J'_>
        assert abs(g_gce[i, l]) < abs(g_ce[i, l])                              # but the true class's push is weaker


# --- numerics ------------------------------------------------------------------------------------------------
ALL_LOSSES = {
    'ce': L.cross_entropy, 'nllr': L.nllr_loss, 'crl': L.competing_ratio_loss, 'crl a=0.5': lambda x, y: L.competing_ratio_loss(x, y, 0.5),
    'cce': L.categorical_cross_entropy, 'gce': lambda x, y: L.gradient_boosting_cross_entropy(x, y, 3),
    'msl': L.mixture_separability_loss, 'cc': lambda x, y: L.channel_correlation_loss(x, y, torch.sigmoid(x)),
    'focal': L.focal_loss, 'focal g=0.5': lambda x, y: L.focal_loss(x, y, 0.5),
    'maxent': lambda x, y: L.max_entropy_loss(x, y, 0.5),
}


def _extreme_logits():
    "Logits up to ±1e4 in float32: random signs, one-hot-like with the target hot, with a wrong class hot."
    g = torch.Generator().manual_seed(0)
    rand = (torch.randint(0, 2, (8, 12), generator=g) * 2 - 1).float() * 1e4
    y = torch.arange(8) % 12
    hot_right = torch.zeros(8, 12); hot_right[range(8), y] = 1e4
    hot_wrong = torch.full((8, 12), -1e4); hot_wrong[range(8), (y + 1) % 12] = 1e4
    return [(rand, y), (hot_right, y), (hot_wrong, y), (hot_right - 1e4, y)]


@pytest.mark.parametrize('name', ALL_LOSSES)
def test_finite_at_extreme_logits(name):
    for x, y in _extreme_logits():
        x = x.clone().requires_grad_()
        loss = ALL_LOSSES[name](x, y)
        loss.backward()
        assert torch.isfinite(loss), (name, loss)
        assert torch.isfinite(x.grad).all(), (name, x.grad)


def test_nllr_exact_where_one_minus_pc_underflows():
    for margin in (20.0, 60.0, 100.0, 1e4):
        x = torch.zeros(1, 5); x[0, 2] = margin
        got = L.nllr_loss(x, torch.tensor([2])).item()
        assert got == pytest.approx(math.log(4) - margin, rel=1e-6)        # log sum_{k!=c} e^{x_k} - x_c
        x.requires_grad_()
        L.nllr_loss(x, torch.tensor([2])).backward()
        # never saturates: 1/4 on each wrong class, -1 on the true one. float32 resolves numbers near the margin only to
        # its spacing there (about 1e-3 at 1e4), so the log-space gradient is exact to that relative precision
        rtol = max(1e-5, 2 * torch.finfo(torch.float32).eps * margin)
        torch.testing.assert_close(x.grad, torch.tensor([[0.25, 0.25, -1.0, 0.25, 0.25]]), rtol=rtol, atol=0)
        crl = L.competing_ratio_loss(x.detach(), torch.tensor([2]), alpha=0.0, beta=2.0).item()
        assert crl == pytest.approx(2 * (math.log(4) - margin) + 4 * math.exp(-margin), rel=1e-6)


@pytest.mark.parametrize('name', ALL_LOSSES)
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_autocast(name, dtype):
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 10)
    inp, y = torch.randn(32, 16), torch.randint(0, 10, (32,))
    with torch.autocast('cpu', dtype=dtype):
        logits = layer(inp)
        assert logits.dtype == dtype
        loss = ALL_LOSSES[name](logits, y)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())
    reference = ALL_LOSSES[name](layer(inp).float(), y)
    assert loss.item() == pytest.approx(reference.item(), rel=3e-2, abs=3e-2)


def test_half_inputs_keep_their_dtype_in_the_gradient():
    x = torch.randn(4, 6).to(torch.bfloat16).requires_grad_()
    L.competing_ratio_loss(x, torch.tensor([0, 1, 2, 3])).backward()
    assert x.grad.dtype == torch.bfloat16 and torch.isfinite(x.grad.float()).all()


# --- bad input -----------------------------------------------------------------------------------------------
X, Y = torch.randn(4, 5), torch.tensor([0, 1, 2, 3])


@pytest.mark.parametrize('call,match', [
    (lambda: L.cross_entropy(X, torch.tensor([0, 1, 2, 5])), r'class index 5, outside \[0, 4\]'),
    (lambda: L.competing_ratio_loss(X, torch.tensor([0, -1, 2, 3])), r'class index -1'),
    (lambda: L.nllr_loss(X, Y.float()), r'target must be an integer tensor .* got torch.float32'),
    (lambda: L.categorical_cross_entropy(X, Y[:, None]), r'target must have shape \(4,\)'),
    (lambda: L.gradient_boosting_cross_entropy(X, Y[:3]), r'target must have shape \(4,\)'),
    (lambda: L.cross_entropy(X[:, :, None], Y), r'target must have shape \(4, 1\) to match logits \(4, 5, 1\)'),
    (lambda: L.CenterLoss()(X[:, :, None], Y, torch.randn(4, 3)), r'logits must have shape \(B, C\) for this batch-level loss'),
    (lambda: L.cross_entropy(torch.zeros(0, 5), torch.zeros(0, dtype=torch.long)), 'empty batch'),
    (lambda: L.cross_entropy(torch.zeros(4, 1), Y * 0), 'C >= 2'),
    (lambda: L.cross_entropy(Y, Y), 'logits must be a floating-point tensor'),
    (lambda: L.gradient_boosting_cross_entropy(X, Y, k=0), r'k=0 must be an integer >= 1'),
    (lambda: L.GradientBoostingCrossEntropyLoss(k=2.5), r'k=2.5 must be an integer >= 1'),
    (lambda: L.competing_ratio_loss(X, Y, alpha=-0.1), r'alpha=-0.1 must be a finite number >= 0'),
    (lambda: L.CompetingRatioLoss(beta=-1), r'beta=-1 must be a finite number >= 0'),
    (lambda: L.channel_correlation_loss(X, Y, torch.rand(4, 3), lam=-1), r'lam=-1 must be a finite number >= 0'),
    (lambda: L.ChannelCorrelationLoss(lam=float('nan')), r'lam=nan'),
    (lambda: L.MixtureSeparabilityLoss(xi=-1), r'xi=-1'),
    (lambda: L.cross_entropy(X, Y, reduction='avg'), r"reduction='avg' must be one of"),
    (lambda: L.channel_correlation_loss(X, Y, torch.rand(3, 3)), r'attention must be a tensor \(B, D\)'),
    (lambda: L.mixture_separability_loss([], Y), 'exit_logits is empty'),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize('name', ALL_LOSSES)
@pytest.mark.parametrize('bad', [float('nan'), float('inf')])
def test_non_finite_logits_are_named(name, bad):
    x = X.clone(); x[2, 1] = bad
    with pytest.raises(ValueError, match=r'logits contain NaN or infinite values \(rows \[2\]\)'):
        ALL_LOSSES[name](x, Y)


def test_value_checks_can_be_switched_off():
    x = X.clone(); x[0, 0] = float('nan')
    with L.validation(False):
        assert torch.isnan(L.competing_ratio_loss(x, Y))
    with pytest.raises(ValueError):
        L.competing_ratio_loss(x, Y)


# --- modules and objectives ------------------------------------------------------------------------------------
@pytest.mark.parametrize('module,fn', [
    (L.CrossEntropyLoss(), lambda x, y, r: F.cross_entropy(x, y, reduction=r)),
    (L.NLLRLoss(), L.nllr_loss),
    (L.CompetingRatioLoss(1.0, 0.75), lambda x, y, r: L.competing_ratio_loss(x, y, 1.0, 0.75, r)),
    (L.CategoricalCrossEntropyLoss(), L.categorical_cross_entropy),
    (L.GradientBoostingCrossEntropyLoss(4), lambda x, y, r: L.gradient_boosting_cross_entropy(x, y, 4, r)),
])
def test_modules_are_drop_in(module, fn):
    x, y = _data(9, 12, torch.float32)
    for r in ('mean', 'sum', 'none'):
        module.reduction = r
        torch.testing.assert_close(module(x, y), fn(x, y, r))
    assert 'reduction' in repr(module)


def test_objectives_from_configs():
    torch.manual_seed(0)
    out = ModelOutput(logits=torch.randn(10, 4), attention=torch.rand(10, 8), exit_logits=None)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    ce = F.cross_entropy(out.logits, y)
    torch.testing.assert_close(L.build_objective()(out, y), ce)
    torch.testing.assert_close(L.build_objective('crl')(out, y), L.competing_ratio_loss(out.logits, y))
    torch.testing.assert_close(L.build_objective({'crl': {'alpha': 1.5, 'beta': 1}})(out, y), L.competing_ratio_loss(out.logits, y))
    obj = L.build_objective({'gce': {'k': 2}, 'cc': {'lam': 0.5}})
    expected = L.gradient_boosting_cross_entropy(out.logits, y, 2) + 0.5 * L.channel_correlation_ratio(out.attention, y)
    torch.testing.assert_close(obj(out, y), expected)
    assert set(obj.last_terms) == {'gce', 'cc'}
    exits = ModelOutput(logits=out.logits, exit_logits=[torch.randn(10, 4), out.logits])
    obj = L.build_objective({'gce': {'k': 2}, 'msl': {}}).eval()
    expected = sum(L.gradient_boosting_cross_entropy(q, y, 2) + L.within_class_loss(q, y, 0.5) for q in exits.exit_logits) / 2
    torch.testing.assert_close(obj(exits, y), expected.float())


@pytest.mark.parametrize('config,match', [
    ({'crl': {}, 'nllr': {}}, 'choose one of ce, nllr, crl, cce, gce'),
    ({'arcface': {}}, "unknown loss 'arcface'.*valid choices: ce, nllr, crl"),
    ({'crl': {'a': 1}}, 'unknown hyperparameter.*valid: alpha, beta'),
    ({'gce': {'k': 0}}, 'k=0'),
    ({'crl': 1.5}, 'must be a dict'),
    ({}, 'non-empty'),
])
def test_bad_objective_configs(config, match):
    with pytest.raises(ValueError, match=match):
        L.build_objective(config)


def test_cc_objective_needs_attention():
    with pytest.raises(ValueError, match='SE channel-attention head'):
        L.build_objective('cc')(ModelOutput(logits=X), Y)


def test_msl_margin_schedule_and_checkpoint(tmp_path):
    obj = L.build_objective({'msl': {'patience': 3}})
    msl = obj.regularizers['msl']
    out = ModelOutput(logits=torch.zeros(6, 3))                      # identical outputs: the within-class loss is 0
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    for _ in range(3): obj(out, y)
    assert msl.xi.item() == 0.5                                     # first window: nothing to compare with yet
    for _ in range(3): obj(out, y)
    assert msl.xi.item() == pytest.approx(0.45)                    # unchanged over a window: shrink by 10 %
    obj.eval()
    for _ in range(6): obj(out, y)
    assert msl.xi.item() == pytest.approx(0.45) and msl.steps == 6  # evaluation never moves the margin
    obj.train()
    spread = ModelOutput(logits=torch.randn(6, 3) * 5)
    for _ in range(3): obj(spread, y)                               # the loss changed: no shrink
    assert msl.xi.item() == pytest.approx(0.45)
    obj(spread, y)                                                  # one step into the next window
    torch.save(obj.state_dict(), tmp_path/'objective.pt')
    restored = L.build_objective({'msl': {'patience': 3}})
    restored.load_state_dict(torch.load(tmp_path/'objective.pt'))
    r = restored.regularizers['msl']
    assert (r.xi.item(), r.steps, r.window_count) == (msl.xi.item(), 10, 1)
    assert r.previous_mean.item() == pytest.approx(msl.previous_mean.item())
    for o in (obj, restored):                                       # both continue identically
        for _ in range(2): o(spread, y)
    assert r.xi.item() == msl.xi.item() and r.previous_mean.item() == pytest.approx(msl.previous_mean.item())


# --- comparison losses -----------------------------------------------------------------------------------------
def test_focal_reduces_to_ce_and_its_modulating_factor_is_differentiated():
    x, y = _data(32, 10, torch.float64, seed=3)
    torch.testing.assert_close(L.focal_loss(x, y, gamma=0.0), F.cross_entropy(x, y))
    torch.testing.assert_close(L.FocalLoss(gamma=0.0)(x, y), F.cross_entropy(x, y))
    x.requires_grad_()
    L.focal_loss(x, y, 2.0).backward()
    z = x.detach().clone().requires_grad_()
    p_c = z.softmax(1)[torch.arange(32), y]
    (-((1 - p_c) ** 2) * p_c.log()).mean().backward()                # the factor inside the graph
    torch.testing.assert_close(x.grad, z.grad)
    w = z.detach().clone().requires_grad_()
    p_c = w.softmax(1)[torch.arange(32), y]
    (-((1 - p_c) ** 2).detach() * p_c.log()).mean().backward()        # the factor treated as a constant: not the same
    assert not torch.allclose(z.grad, w.grad)


def test_focal_module_keeps_alpha_in_its_state_and_checks_it():
    m = L.FocalLoss(gamma=1.5, alpha=[1.0, 0.5, 2.0])
    fresh = L.FocalLoss(gamma=1.5, alpha=[1.0, 1.0, 1.0])
    fresh.load_state_dict(m.state_dict())
    x, y = _data(9, 3, torch.float32, seed=2)
    torch.testing.assert_close(fresh(x, y), m(x, y))
    assert m.hparams() == {'gamma': 1.5, 'alpha': [1.0, 0.5, 2.0]}
    obj = L.build_objective({'focal': {'gamma': 2}})
    torch.testing.assert_close(obj(ModelOutput(logits=x), y), L.focal_loss(x, y, 2.0))
    with pytest.raises(ValueError, match='alpha has 3 class weights but the logits have C = 4 classes'):
        L.focal_loss(torch.randn(2, 4), torch.tensor([0, 1]), alpha=[1, 1, 1])
    with pytest.raises(ValueError, match=r'alpha=\[1, -1\] must be None or one finite weight >= 0 per class'):
        L.FocalLoss(alpha=[1, -1])
    with pytest.raises(ValueError, match='gamma=-0.5 must be a finite number >= 0'):
        L.FocalLoss(gamma=-0.5)
