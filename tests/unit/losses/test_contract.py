"""The whole `torch.nn.CrossEntropyLoss` input contract: logits (C), (N, C) and (N, C, d1, ..., dK), class indices and
class probabilities, every reduction, `weight` / `ignore_index` / `label_smoothing` in every combination.
`cross_entropy` against torch's own values and gradients; every other drop-in loss against a float64 loop that
evaluates its equation per class and takes the expectation over the (smoothed) target, $\\sum_c w_c q_c L(x, c)$.
Then what the losses do not define (a one-line error), and `torch.compile` with no graph break."""
import itertools

import pytest
import torch
import torch.nn.functional as F

import ratio_losses.losses as L
from test_losses import ref_cce, ref_crl, ref_focal, ref_maxent, ref_nllr, ref_released, ref_ce

# name: (function(x, target, reduction, **keywords), module(**keywords), float64 loop reference of one class per row)
DROPIN = {
    'ce': (L.cross_entropy, lambda **k: L.CrossEntropyLoss(**k), ref_ce),
    'nllr': (L.nllr_loss, lambda **k: L.NLLRLoss(**k), ref_nllr),
    'crl': (L.competing_ratio_loss, lambda **k: L.CompetingRatioLoss(**k), ref_crl),
    'crl released': (lambda x, y, reduction='mean', **k: L.competing_ratio_loss(x, y, reduction=reduction, form='released', **k),
                     lambda **k: L.CompetingRatioLoss(form='released', **k), lambda x, y: ref_released(x, y, 1.5, 1.0)),
    'cce': (L.categorical_cross_entropy, lambda **k: L.CategoricalCrossEntropyLoss(**k), ref_cce),
    'focal': (lambda x, y, reduction='mean', **k: L.focal_loss(x, y, 2.0, [0.5, 1.0, 1.5, 2.0], reduction, **k),
              lambda **k: L.FocalLoss(2.0, [0.5, 1.0, 1.5, 2.0], **k),
              lambda x, y: ref_focal(x, y, 2.0, [0.5, 1.0, 1.5, 2.0])),
    'maxent': (lambda x, y, reduction='mean', **k: L.max_entropy_loss(x, y, 0.2, reduction, **k),
               lambda **k: L.MaxEntropyLoss(0.2, **k), lambda x, y: ref_maxent(x, y, 0.2)),
}
C = 4
SHAPES = [(C,), (5, C), (3, C, 2), (2, C, 2, 3)]   # no batch, a batch, K = 1 (sequences), K = 2 (segmentation)
KEYWORDS = [{}, {'weight': True}, {'ignore_index': 1}, {'label_smoothing': 0.15},
            {'weight': True, 'ignore_index': 2, 'label_smoothing': 0.1}]


def _inputs(shape, soft, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 2).to(dtype)
    if soft:
        return x, torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64) * 2, 0 if len(shape) == 1 else 1)
    cdim = 0 if len(shape) == 1 else 1
    return x, torch.randint(0, C, shape[:cdim] + shape[cdim + 1:], generator=g)


def _keywords(kw):
    out = dict(kw)
    if out.get('weight'):
        out['weight'] = torch.tensor([0.5, 2.0, 1.0, 1.5], dtype=torch.float64)
    return out


def _rows(x, t, soft):
    if x.ndim == 1:
        return x[None], t[None] if soft else t.reshape(1)
    return x.movedim(1, -1).reshape(-1, x.shape[1]), t.movedim(1, -1).reshape(-1, x.shape[1]) if soft else t.reshape(-1)


def reference(ref, x, t, reduction, weight=None, ignore_index=-100, label_smoothing=0.0):
    """The loss by its definition, as a loop in float64: for every row, the equation evaluated with every class as the
    true one, weighted by w_c q_c with q the (smoothed) target; torch's reductions (index targets: ignored rows count 0,
    the mean divides by the summed true-class weights; probabilities: the mean is over rows)."""
    soft = t.is_floating_point()
    rows, trows = _rows(x.double(), t, soft)
    w = [1.0] * C if weight is None else weight.tolist()
    vals, denominator = [], 0.0
    for r, tr in zip(rows, trows):
        per_class = [ref(r[None], torch.tensor([c]))[0] for c in range(C)]
        if soft:
            q, denominator = tr.tolist(), denominator + 1
        elif int(tr) == ignore_index:
            vals.append(0.0)
            continue
        else:
            q, denominator = [float(c == int(tr)) for c in range(C)], denominator + w[int(tr)]
        q = [(1 - label_smoothing) * v + label_smoothing / C for v in q]
        vals.append(sum(w[c] * q[c] * per_class[c] for c in range(C)))
    if reduction == 'none':
        cdim = 0 if x.ndim == 1 else 1
        return torch.tensor(vals, dtype=torch.float64).reshape(x.shape[:cdim] + x.shape[cdim + 1:])
    return torch.tensor(sum(vals) if reduction == 'sum' else sum(vals) / denominator, dtype=torch.float64)


@pytest.mark.parametrize('shape', SHAPES, ids=str)
@pytest.mark.parametrize('soft', [False, True], ids=['indices', 'probabilities'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64], ids=str)
def test_cross_entropy_is_torchs_for_every_input_kind(shape, soft, dtype):
    x, t = _inputs(shape, soft, dtype)
    t = t.to(dtype) if soft else t
    for kw, reduction in itertools.product(KEYWORDS, ('mean', 'sum', 'none')):
        kw = _keywords(kw)
        if 'weight' in kw:
            kw['weight'] = kw['weight'].to(dtype)
        if 'ignore_index' in kw and (soft or len(shape) == 1 and int(t) == kw['ignore_index']):
            continue  # probabilities take no ignore_index (below); a batch of one ignored target: mean 0, torch's NaN
        a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
        ours, torchs = L.cross_entropy(a, t, reduction, **kw), F.cross_entropy(b, t, reduction=reduction, **kw)
        torch.testing.assert_close(ours, torchs)
        ours.sum().backward(); torchs.sum().backward()
        torch.testing.assert_close(a.grad, b.grad)
        torch.testing.assert_close(L.CrossEntropyLoss(reduction=reduction, **kw)(x, t),
                                   torch.nn.CrossEntropyLoss(reduction=reduction, **kw)(x, t))


@pytest.mark.parametrize('name', [n for n in DROPIN if n != 'ce'])
@pytest.mark.parametrize('shape', SHAPES, ids=str)
@pytest.mark.parametrize('soft', [False, True], ids=['indices', 'probabilities'])
def test_every_input_kind_against_the_loop(name, shape, soft):
    fn, module, ref = DROPIN[name]
    x, t = _inputs(shape, soft, seed=len(shape))
    for kw, reduction in itertools.product(KEYWORDS, ('mean', 'sum', 'none')):
        kw = _keywords(kw)
        if 'ignore_index' in kw and (soft or len(shape) == 1 and int(t) == kw['ignore_index']):
            continue
        expected = reference(ref, x, t, reduction, **kw)
        got = fn(x, t, reduction=reduction, **kw)
        assert got.shape == expected.shape, (kw, reduction)
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-11, msg=lambda m: f'{kw} {reduction}: {m}')
        torch.testing.assert_close(module(reduction=reduction, **kw)(x, t), got)


@pytest.mark.parametrize('name', DROPIN)
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16], ids=str)
def test_low_precision_logits_against_the_float64_loop(name, dtype):
    fn, _, ref = DROPIN[name]
    for soft in (False, True):
        x, t = _inputs((6, C, 3), soft, seed=3)
        x = x.to(dtype)
        got = fn(x, t.to(torch.float32) if soft else t, reduction='none')
        assert got.dtype == torch.float32 and got.shape == (6, 3)  # computed in float32 at least
        torch.testing.assert_close(got.double(), reference(ref, x, t, 'none'), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', [n for n in DROPIN if n != 'ce'])
def test_one_hot_probabilities_are_the_index_form(name):
    fn = DROPIN[name][0]
    x, y = _inputs((8, C, 2), False, seed=5)
    one_hot = F.one_hot(y, C).movedim(-1, 1).double()
    for reduction in ('mean', 'sum', 'none'):
        torch.testing.assert_close(fn(x, one_hot, reduction=reduction), fn(x, y, reduction=reduction), rtol=1e-12, atol=1e-12)
    xg, xh = x.clone().requires_grad_(), x.clone().requires_grad_()
    fn(xg, one_hot).backward(); fn(xh, y).backward()
    torch.testing.assert_close(xg.grad, xh.grad, rtol=1e-10, atol=1e-12)


def test_crl_with_beta_0_is_torchs_soft_cross_entropy_and_mixup_is_two_criteria():
    x, q = _inputs((6, C), True)
    for kw in ({}, {'label_smoothing': 0.2}, {'weight': torch.rand(C, dtype=torch.float64) + 0.5}):
        torch.testing.assert_close(L.competing_ratio_loss(x, q, beta=0, **kw), F.cross_entropy(x, q, **kw))
    a, b, lam = torch.tensor([0, 1, 2, 3, 0, 1]), torch.tensor([3, 3, 0, 1, 2, 2]), 0.3
    mixed = lam * F.one_hot(a, C).double() + (1 - lam) * F.one_hot(b, C).double()
    two_criteria = lam * L.competing_ratio_loss(x, a) + (1 - lam) * L.competing_ratio_loss(x, b)
    torch.testing.assert_close(L.competing_ratio_loss(x, mixed), two_criteria)   # the mixup recipe's loss


def test_what_a_loss_does_not_define_is_a_one_line_error():
    x, y = _inputs((5, C), False)
    q = torch.softmax(x, 1)
    with pytest.raises(ValueError, match=r'^GCE is defined for one true class and has no form for class probabilities'):
        L.gradient_boosting_cross_entropy(x, q, k=2)
    with pytest.raises(ValueError, match=r'label_smoothing=0.1: GCE is defined for one true class'):
        L.gradient_boosting_cross_entropy(x, y, k=2, label_smoothing=0.1)
    torch.testing.assert_close(L.gradient_boosting_cross_entropy(x[..., None], y[:, None], k=2, reduction='none')[:, 0],
                               L.gradient_boosting_cross_entropy(x, y, k=2, reduction='none'))   # K-dim indices: fine
    feats = torch.randn(5, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match='class indices only'):
        L.center_loss(x, q, feats, torch.zeros(C, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match='class indices only'):
        L.channel_correlation_loss(x, q, torch.rand(5, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"target must have shape \(5, 2\) to match logits \(5, 4, 2\)"):
        L.competing_ratio_loss(torch.randn(5, C, 2), y)
    with pytest.raises(ValueError, match=r"class probabilities have the logits' shape \(5, 4\)"):
        L.nllr_loss(x, torch.rand(5, 3, dtype=torch.float64))
    for fn in (L.cross_entropy, L.competing_ratio_loss):   # as torch: no ignore_index for probabilities
        with pytest.raises(ValueError, match=r'^ignore_index=1 has no meaning for class probabilities'):
            fn(x, q, ignore_index=1)


@pytest.mark.parametrize('name', [n for n in DROPIN] + ['gce'])
@pytest.mark.parametrize('n', [3, 5, 12])
def test_weight_needs_one_entry_per_class(name, n):
    fn = DROPIN[name][0] if name != 'gce' else (lambda x, y, **k: L.gradient_boosting_cross_entropy(x, y, 2, **k))
    x, y = _inputs((5, C), False)
    with pytest.raises(ValueError, match=rf'^weight has {n} entries but the logits have C = 4 classes; give one weight per class$'):
        fn(x, y, weight=torch.ones(n, dtype=torch.float64))


def test_numpy_scalars_are_numbers():
    np = pytest.importorskip('numpy')
    x, y = _inputs((5, C), False)
    torch.testing.assert_close(L.GradientBoostingCrossEntropyLoss(k=np.int64(2))(x, y), L.gradient_boosting_cross_entropy(x, y, 2))
    torch.testing.assert_close(L.CompetingRatioLoss(alpha=np.float32(1.5))(x, y), L.competing_ratio_loss(x, y))


# --- torch.compile: no graph break, fullgraph, and the same values -------------------------------------------------
COMPILED = {  # every drop-in loss at its default settings (max-entropy has no default γ: 0.1), function and module
    'cross_entropy': L.cross_entropy, 'CrossEntropyLoss': L.CrossEntropyLoss(),
    'competing_ratio_loss': L.competing_ratio_loss, 'CompetingRatioLoss': L.CompetingRatioLoss(),
    'nllr_loss': L.nllr_loss, 'NLLRLoss': L.NLLRLoss(),
    'categorical_cross_entropy': L.categorical_cross_entropy, 'CategoricalCrossEntropyLoss': L.CategoricalCrossEntropyLoss(),
    'gradient_boosting_cross_entropy': lambda x, t: L.gradient_boosting_cross_entropy(x, t, k=3),
    'GradientBoostingCrossEntropyLoss': L.GradientBoostingCrossEntropyLoss(k=3),
    'focal_loss': L.focal_loss, 'FocalLoss': L.FocalLoss(),
    'max_entropy_loss': lambda x, t: L.max_entropy_loss(x, t, 0.1), 'MaxEntropyLoss': L.MaxEntropyLoss(0.1),
}


@pytest.mark.parametrize('name', COMPILED)
def test_dynamo_finds_no_graph_break(name):
    import torch._dynamo as dynamo
    dynamo.reset()
    x, t = torch.randn(16, 10), torch.randint(0, 10, (16,))
    explained = dynamo.explain(COMPILED[name])(x, t)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1
    if 'gradient' not in name.lower():
        q = torch.softmax(torch.randn(16, 10), 1)      # mixup's targets compile too
        assert dynamo.explain(COMPILED[name])(x, q).graph_break_count == 0


@pytest.mark.parametrize('name', ['competing_ratio_loss', 'CategoricalCrossEntropyLoss', 'gradient_boosting_cross_entropy'])
def test_fullgraph_compiles_and_agrees_with_eager(name):
    "fullgraph=True raises on any graph break; the eager backend keeps this fast (Inductor's code is the benchmark's)."
    torch._dynamo.reset()
    fn = COMPILED[name]
    compiled = torch.compile(fn, fullgraph=True, backend='aot_eager')
    x, t = torch.randn(16, 10), torch.randint(0, 10, (16,))
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    eager, comp = fn(xa, t), compiled(xb, t)
    eager.backward(); comp.backward()
    torch.testing.assert_close(comp, eager)
    torch.testing.assert_close(xb.grad, xa.grad)


def test_a_loss_registered_from_its_formula_keeps_the_contract():
    "A formula of class indices only gets probabilities and label smoothing as the expectation, one pass per class."
    from ratio_losses.losses.objective import loss_from_formula

    def squared_ratio(x, target, gamma: float = 1.0):
        logp = x.log_softmax(1).gather(1, target[:, None])[:, 0]
        return gamma * (1 - logp.exp()) ** 2 - logp

    fn, module = loss_from_formula('sqr_contract', squared_ratio)
    x, q = _inputs((3, C, 2), True, seed=7)
    rows, qrows = _rows(x, q, True)
    per_class = torch.stack([squared_ratio(rows, torch.full((len(rows),), c), 2.0) for c in range(C)], 1)
    torch.testing.assert_close(fn(x, q, 'none', gamma=2.0).flatten(), (qrows * per_class).sum(1))
    y = q.argmax(1)
    smoothed = F.one_hot(y, C).movedim(-1, 1).double() * 0.9 + 0.1 / C
    torch.testing.assert_close(module(label_smoothing=0.1, gamma=2.0)(x, y), fn(x, smoothed, gamma=2.0))
