"""Analysis: the figures and tables from tiny real runs — numbers read back from the figures and the files equal
the records', the notebooks write every file, twice the same."""
import csv
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

import ratio_losses.analysis as an
from ratio_losses.losses import competing_ratio_loss

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = {
    'crl': ['crl_fig2_gradients', 'crl_table1_alpha_beta', 'crl_fig3_test_error', 'crl_fig5_softmax', 'crl_reliability',
            'crl_table1.md', 'crl_table2.md', 'crl_table3.md', 'crl_table4.md'],
    'cc': ['cc_fig3_features', 'cc_table2_batch_size', 'cc_table5_lambda',
           'cc_table1.md', 'cc_table2.md', 'cc_table4.md', 'cc_table5.md'],
    'msl': ['msl_table3_batch_size', 'msl_fig8_saturation', 'msl_table2.md', 'msl_table3.md'],
    'fine_grained': ['fg_fig4_cam', 'fg_fig1_tsne', 'fg_fig5_training', 'fg_reliability', 'fg_fig3_k', 'fg_table5_alpha',
                     'fg_table4.md', 'fg_fig3.md', 'fg_table5.md'],
}
PRESETS = ['crl_table1', 'crl_table2', 'crl_table3', 'crl_table4', 'cc_table1', 'cc_fig3', 'cc_table2', 'cc_table4',
           'cc_table5', 'msl_table2', 'msl_table3', 'fg_table4', 'fg_table5', 'fg_fig3', 'msl_regimes', 'fg_regimes']


@pytest.fixture(scope='session')
def smoke_root(tmp_path_factory):
    "Tiny real runs of every preset the notebooks read (digits, 2 epochs of 6 steps, 2 seeds), trained once."
    root = tmp_path_factory.mktemp('smoke-runs')
    an.smoke_runs([an.smoke_preset(n) for n in PRESETS], root)
    return root


def runs_of(name, root):
    return an.load_sweep(an.smoke_preset(name), 'cpu', root)


def records_by_setting(root, name):
    "Test errors (%) per setting, read straight from the record files (not through the analysis module)."
    out = {}
    for f in sorted((root/'cpu'/name).glob('*/record.json')):
        rec = json.loads(f.read_text())
        setting = f.parent.name.rsplit('-', 1)[0]                       # slug without the run-id suffix
        setting = ','.join(p for p in setting.split(',') if not p.startswith('seed='))
        out.setdefault(setting, {})[rec['seed']] = 100 * rec['final']['test_error']
    return out


# --- functions: the plotted numbers are the source numbers --------------------------------------------------------
def test_gradient_curves_match_autograd_and_closed_forms():
    fig, d = an.gradient_curves(alpha=1.5, p_j=0.5, betas=(0.5, 1.0))
    pc = d['p_c_valid']
    for name, beta in (('CRL β=0.5', 0.5), ('CRL β=1', 1.0)):
        line = next(l for l in fig.axes[0].lines if l.get_label() == f'{name} (autograd)')
        np.testing.assert_allclose(line.get_ydata(), (1 + beta * pc / (2.5 - pc)) * 0.5, rtol=1e-9)   # d eq.11 / d x_j
    printed = [l for l in fig.axes[0].lines if l.get_linestyle() == ':' and len(l.get_xdata()) == len(d['p_c'])]
    np.testing.assert_allclose(printed[-1].get_ydata(), (1 - d['p_c'] / (2.5 - d['p_c'])) * 0.5)       # printed eq. 14
    # the true-class panel against a direct float64 evaluation
    x = torch.log(torch.tensor([[0.3, 0.35, 0.35]], dtype=torch.float64)).requires_grad_(True)
    competing_ratio_loss(x, torch.tensor([0]), 1.5, 1.0).backward()
    i = int(np.argmin(np.abs(d['p_c'] - 0.3)))
    assert d['p_c'][i] == pytest.approx(0.3, abs=1e-12)
    assert d['true_autograd']['CRL β=1'][i] == pytest.approx(float(x.grad[0, 0]), rel=1e-9)
    assert (d['gce_gce'] > d['gce_ce']).all()


def test_heatmap_and_table_equal_the_records(smoke_root):
    runs = runs_of('crl_table1', smoke_root)
    fig, d = an.alpha_beta_heatmap(runs, title='smoke')
    recs = records_by_setting(smoke_root, 'crl_table1')
    shown = fig.axes[0].images[0].get_array()
    for i, b in enumerate(d['ours']['betas']):
        for j, a in enumerate(d['ours']['alphas']):
            key = 'objective=ce' if b == 0 else f'alpha={a:g},beta={b:g}'
            assert shown[i, j] == pytest.approx(statistics.mean(recs[key].values()), abs=1e-9), key
    np.testing.assert_array_equal(fig.axes[1].images[0].get_array(), np.array(an.CRL_TABLE1['cifar10']))
    ce = recs['objective=ce']
    for r, (setting, rs) in zip(an.results_table(runs, 'test_error'), an.by_setting(runs).items()):
        assert r['setting'] == setting
        if r['baseline'] is None: continue
        crl = rs[0].config['objective']['crl']
        vals = list(recs[f"alpha={crl['alpha']:g},beta={crl['beta']:g}"].values())
        assert r['mean'] == pytest.approx(statistics.mean(vals))
        assert r['margin'] == pytest.approx(max(abs(v - statistics.mean(vals)) for v in vals))
        assert r['sd'] == pytest.approx(statistics.stdev(vals))
        want = stats.ttest_rel(vals, [ce[s] for s in sorted(ce)]).pvalue
        assert (math.isnan(r['p_paired']) and math.isnan(want)) or r['p_paired'] == pytest.approx(want)


def test_ablation_softmax_cam_tsne_scatter_read_back(smoke_root):
    t5 = runs_of('cc_table5', smoke_root)
    fig, d = an.ablation(t5, 'objective.cc.lam', 'accuracy')
    recs = records_by_setting(smoke_root, 'cc_table5')
    ys = fig.axes[0].lines[0].get_ydata()
    for x, y in zip(d['CE + CC']['x'], ys):
        (key,) = [k for k in recs if float(k.split('=')[1]) == x]              # slugs spell 1.0 as the YAML does
        assert y == pytest.approx(100 - statistics.mean(recs[key].values()))
    t4 = runs_of('crl_table4', smoke_root)
    one = {an.loss_label(r.config): r for r in t4 if r.seed == 0}
    fig, d = an.softmax_heatmaps(one)
    for ax, (label, run) in zip([a for a in fig.axes if a.get_title()], one.items()):
        np.testing.assert_array_equal(ax.images[0].get_array(), run.artifacts()['softmax'][:10])
    fg = {an.loss_key(r.config): r for r in runs_of('fg_table4', smoke_root) if r.seed == 0}
    fig, d = an.cam_grid(fg['ce'], fg['db+ce'], 4)
    maps = fg['db+ce'].artifacts()['class_maps']
    y0 = int(fg['db+ce'].artifacts()['softmax_labels'][0])
    assert fig.axes[2 * 4].images[1].get_array().shape == (8, 8)         # upsampled to the image
    assert np.corrcoef(d['with DB'][0][::2, ::2].ravel(), an.figures._upsample(maps[0, y0], (8, 8))[::2, ::2].ravel())[0, 1] > 0.99
    fig, d = an.tsne_confused(fg['ce'], fg['db+gce'], 3)
    conf = fg['ce'].artifacts()['confusion']
    assert d['classes'] == an.most_confused_classes(conf, 3) and len(set(d['classes'])) == 3
    assert set(np.unique(d['CE']['labels'])) <= set(d['classes'])
    f3 = {an.loss_key(r.config): r for r in runs_of('cc_fig3', smoke_root) if r.seed == 0}
    fig, d = an.feature_scatter(f3)
    art = f3['ce+cc'].artifacts()
    pts = np.concatenate([c.get_offsets() for c in fig.axes[3].collections])
    assert pts.shape == art['features'].shape and np.allclose(np.sort(pts, 0), np.sort(art['features'], 0))
    assert art['train_features'].shape[1] == 2


def test_most_confused_classes():
    conf = np.diag([50] * 5)
    conf[3, 1], conf[1, 3], conf[4, 1] = 9, 4, 6
    assert an.most_confused_classes(conf, 3) == [1, 3, 4]


def test_missing_runs_are_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no complete run of preset 'crl_table4' at scale 'cpu'.*ratio-losses sweep "
                                                r"configs/crl_table4.yaml --scale cpu"):
        an.load_sweep('crl_table4', 'cpu', tmp_path)
    with pytest.raises(ValueError, match="metric='error' is unknown; valid: accuracy, test_error"):
        an.metric_value(None, 'error')


# --- the notebooks ---------------------------------------------------------------------------------------------------
def run_notebook(name, root, out):
    out.mkdir(parents=True, exist_ok=True)
    args = [str(Path(sys.executable).parent/'papermill'), str(ROOT/'nbs'/'analysis'/f'{name}.ipynb'), str(out/f'{name}.ipynb'),
            '--no-progress-bar', '-p', 'runs_root', str(root), '-p', 'figures', str(out/'figures')]
    r = subprocess.run(args, capture_output=True, text=True, cwd=out)
    assert r.returncode == 0, r.stderr[-3000:]
    return out/'figures'


@pytest.fixture(scope='session')
def analysis_run(smoke_root, tmp_path_factory):
    "The figures folder of one papermill run of an analysis notebook on the smoke runs; runs once per (name, copy)."
    done = {}
    def get(name, copy='a'):
        if (name, copy) not in done: done[name, copy] = run_notebook(name, smoke_root, tmp_path_factory.mktemp(f'{name}-{copy}'))
        return done[name, copy]
    return get


@pytest.mark.parametrize('name', NOTEBOOKS)
@pytest.mark.determinism
def test_analysis_notebook_writes_the_same_bytes_twice(name, analysis_run):
    first, again = analysis_run(name, 'a'), analysis_run(name, 'b')
    for f in sorted(first.iterdir()):
        if f.suffix in ('.md', '.csv', '.png'):
            assert f.read_bytes() == (again/f.name).read_bytes(), f'{f.name} differs between two runs'


@pytest.mark.parametrize('name', NOTEBOOKS)
def test_analysis_notebook_writes_every_file(name, smoke_root, analysis_run):
    first = analysis_run(name, 'a')
    for stem in NOTEBOOKS[name]:
        files = [first/stem] if stem.endswith('.md') else [first/f'{stem}.png', first/f'{stem}.pdf']
        for f in files: assert f.is_file() and f.stat().st_size > 500 or f.suffix == '.md', f
        if stem.endswith('.md'):                                  # a header and at least two settings
            assert sum(line.startswith('| ') for line in (first/stem).read_text().splitlines()) >= 3, stem
            assert len((first/stem.replace('.md', '.csv')).read_text().splitlines()) >= 3, stem
    if name == 'crl':        # the table's numbers are the records', over the runs that are data (see collapse)
        from ratio_losses.collapse import classify_record
        by_loss, lost = {}, {}
        for f in (smoke_root/'cpu'/'crl_table4').glob('*/record.json'):
            rec = json.loads(f.read_text())
            key = next(iter(rec['config']['objective'])) + ('@released' if 'released' in json.dumps(rec['config']['objective']) else '')
            with np.load(f.parent/'artifacts.npz') as a: status, _ = classify_record(rec, a['confusion'])
            if status == 'complete': by_loss.setdefault(key, []).append(100 * rec['final']['test_error'])
            else: lost[key] = lost.get(key, 0) + 1
        with open(first/'crl_table4.csv') as fh:
            rows = list(csv.DictReader(fh))
        name_of = {'l-softmax': 'lsoftmax', 'a-softmax': 'asoftmax'}                   # labels -> objective names
        keys = [name_of.get(r['loss'].split()[0].lower(), r['loss'].split()[0].lower()) + ('@released' if 'released' in r['loss'] else '')
                for r in rows]
        assert keys == ['ce', 'nllr', 'crl', 'cce', 'focal', 'nllr@released', 'lsoftmax', 'asoftmax']
        for row, key in zip(rows, keys):
            vals = by_loss.get(key, [])
            assert int(row['n_seeds']) == len(vals) and int(row['diverged']) == lost.get(key, 0)
            if vals: assert float(row['mean']) == pytest.approx(statistics.mean(vals))


# --- the report ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope='session')
def report_run(smoke_root, tmp_path_factory):
    "The REPORT.md of one papermill run of the report notebook on the smoke runs; runs once per copy."
    done = {}
    def get(copy='a'):
        if copy not in done:
            out = tmp_path_factory.mktemp(f'report-{copy}')
            args = [str(Path(sys.executable).parent/'papermill'), str(ROOT/'nbs'/'analysis'/'report.ipynb'),
                    str(out/'report.ipynb'), '--no-progress-bar', '-p', 'runs_root', str(smoke_root),
                    '-p', 'report', str(out/'REPORT.md')]
            r = subprocess.run(args, capture_output=True, text=True, cwd=out)
            assert r.returncode == 0, r.stderr[-3000:]
            done[copy] = (out/'REPORT.md').read_text()
        return done[copy]
    return get


@pytest.mark.determinism
def test_report_notebook_writes_the_same_bytes_twice(report_run):
    assert report_run('a') == report_run('b')


def test_report_notebook_answers_every_claim(report_run):
    "The report notebook on the smoke runs: 23 rows, each with a verdict of the rule."
    from ratio_losses.analysis.verdicts import VERDICTS
    texts = [report_run('a')]
    rows = [line for line in texts[0].splitlines() if line.startswith('| **C')]
    assert [row.split('**')[1] for row in rows] == [f'C{i}' for i in range(1, 24)]
    assert all(any(f'**{v}**' in row for v in VERDICTS) for row in rows)
    assert 'None: every point of every preset has its record' in texts[0]          # every smoke record is used


def test_committed_report_is_what_the_committed_records_give(tmp_path):
    "figures/REPORT.md is exactly what ratio_losses.analysis.report writes from results/ (nobody edited one without the other)."
    from ratio_losses.analysis.report import write_report
    path, _ = write_report(ROOT/'results', tmp_path/'REPORT.md')
    assert path.read_text() == (ROOT/'figures'/'REPORT.md').read_text(), 'run `make figures` and commit figures/REPORT.md'


def test_load_sweep_leaves_out_records_that_do_not_match(smoke_root, tmp_path):
    "A record with edited settings or from another commit is listed and left out of the tables, never pooled."
    import shutil
    root = tmp_path/'runs'
    shutil.copytree(smoke_root/'cpu'/'crl_table4', root/'cpu'/'crl_table4')
    preset = an.smoke_preset('crl_table4')
    runs = an.load_sweep(preset, 'cpu', root)
    assert not runs.flagged and not runs.missing
    a, b = runs[0].run_dir/'record.json', runs[1].run_dir/'record.json'
    rec = json.loads(a.read_text()); rec['config']['lr'] = 1.0; a.write_text(json.dumps(rec))
    rec = json.loads(b.read_text()); rec['git_commit'] = 'f' * 40; b.write_text(json.dumps(rec))
    again = an.load_sweep(preset, 'cpu', root)
    assert len(again) == len(runs) - 2 and len(again.missing) == 2
    whys = ' '.join(why for _, why in again.flagged)
    assert 'its settings (run id' in whys and 'from commit ' + 'f' * 40 in whys
    assert '2 of' in an.Study({}, 'cpu', root, tmp_path, False).describe(again)


def test_readme_shows_the_reports_headline():
    "The README's full-scale table is the report's, byte for byte (`make figures` copies it; nobody types numbers)."
    from ratio_losses.analysis.report import README_END, README_START, headline_section
    readme = (ROOT/'README.md').read_text()
    block = readme[readme.index(README_START) + len(README_START):readme.index(README_END)].strip('\n')
    assert block == headline_section((ROOT/'figures'/'REPORT.md').read_text()), 'run `make figures` and commit README.md'
