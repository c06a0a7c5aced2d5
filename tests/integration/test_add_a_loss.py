"""Adding a loss the documented way (docs/pages/add_a_loss.md): one per-sample formula and one `register_loss` call in
a module of your own, named in RATIO_LOSSES_PLUGINS; then it trains through an objective, a two-point papermill sweep
and a results table with no other change to the package."""
import subprocess
import sys
import textwrap

import pytest
import torch

pytestmark = pytest.mark.kernel

TOY = textwrap.dedent('''
    import torch
    from ratio_losses.losses import register_loss

    def squared_ratio(x, target, gamma: float = 1.0):
        "Toy loss: gamma * (1 - p_c)^2 + CE, per sample."
        logp = x.log_softmax(1).gather(1, target[:, None])[:, 0]
        return gamma * (1 - logp.exp()) ** 2 - logp

    register_loss('sqr', squared_ratio, label='SqR', color='#000000')
''')


@pytest.fixture
def toy_plugin(tmp_path, monkeypatch):
    (tmp_path/'toy_losses.py').write_text(TOY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv('PYTHONPATH', f"{tmp_path}:{__import__('os').environ.get('PYTHONPATH', '')}")
    monkeypatch.setenv('RATIO_LOSSES_PLUGINS', 'toy_losses')
    from ratio_losses.losses import load_plugins
    load_plugins()
    yield
    from ratio_losses.losses import FUNCTIONS, LOSSES, REGISTRY
    for d in (REGISTRY, LOSSES, FUNCTIONS): d.pop('sqr', None)
    sys.modules.pop('toy_losses', None)


def test_a_registered_formula_is_a_loss_an_objective_and_a_figure_label(toy_plugin):
    from ratio_losses.analysis import loss_color, loss_label
    from ratio_losses.core import ModelOutput
    from ratio_losses.losses import FUNCTIONS, LOSSES, build_objective
    x, y = torch.randn(6, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0, 1])
    p_c = x.softmax(1)[torch.arange(6), y]
    want = (2 * (1 - p_c) ** 2 - p_c.log()).mean()
    torch.testing.assert_close(FUNCTIONS['sqr'](x, y, gamma=2.0), want)
    torch.testing.assert_close(LOSSES['sqr'](gamma=2.0)(x, y), want)
    obj = build_objective({'sqr': {'gamma': 2.0}})
    torch.testing.assert_close(obj(ModelOutput(logits=x), y), want)
    assert loss_label({'objective': {'sqr': {'gamma': 2.0}}}) == 'SqR (γ=2)'
    assert loss_color({'objective': {'sqr': {}}}) == '#000000'
    weight = torch.tensor([1.0, 2.0, 0.5, 1.0], dtype=torch.float64)   # the drop-in keywords come with the formula
    per = (1 - p_c) ** 2 - p_c.log()
    torch.testing.assert_close(FUNCTIONS['sqr'](x, y, weight=weight), (per * weight[y]).sum() / weight[y].sum())


def test_a_registered_loss_trains_through_a_sweep_and_a_results_table(toy_plugin, tmp_path):
    from ratio_losses.analysis import load_sweep, markdown_table, results_table
    from ratio_losses.sweeps import run_sweep
    from ratio_losses.training import read_results
    preset = {'name': 'toy', 'fixed': {'dataset': 'digits', 'batch_size': 64, 'iterations': 40, 'epochs': None,
                                       'feature_images': 50},
              'grid': {'objective': [{'ce': {}}, {'sqr': {'gamma': 2.0}}]}, 'seeds': [0]}
    res = run_sweep(preset, runs_root=tmp_path/'runs', workers=1, progress=False, print_summary=False)
    assert [r['status'] for r in res] == ['done', 'done'], res
    rows = read_results(tmp_path/'runs'/'cpu'/'results.csv')
    assert sorted(r['loss'] for r in rows) == ['ce', 'sqr']
    runs = load_sweep(preset, 'cpu', tmp_path/'runs', commit='any')
    table = markdown_table(results_table(runs))
    assert 'SqR (γ=2)' in table and 'CE' in table


def test_a_bad_plugin_is_a_one_line_error(tmp_path):
    r = subprocess.run([sys.executable, '-c', 'import ratio_losses.losses'], capture_output=True, text=True,
                       env={**__import__('os').environ, 'RATIO_LOSSES_PLUGINS': 'no_such_losses'})
    assert r.returncode == 1 and "RATIO_LOSSES_PLUGINS names 'no_such_losses'" in r.stderr.strip().splitlines()[-1]
