"""Sweeps: preset validation, expansion, papermill runs in worker processes, skip/resume, failures, the CLI, the presets."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ratio_losses.sweeps.presets import expand_sweep, load_preset
from ratio_losses.sweeps.sweep import run_sweep, summary_table
from ratio_losses.training import read_results

pytestmark = pytest.mark.kernel

EXE = Path(sys.executable).parent/'ratio-losses'
CONFIGS = Path(__file__).resolve().parents[2]/'configs'
TINY = {'dataset': 'digits', 'batch_size': 64, 'iterations': 8, 'epochs': None, 'feature_images': 50}


def test_preset_errors_name_the_key(tmp_path):
    bad = tmp_path/'bad.yaml'
    bad.write_text('name: x\nfixed: {dataset: digits\n')
    with pytest.raises(ValueError, match=r'bad.yaml does not parse'):
        load_preset(bad)
    with pytest.raises(ValueError, match=r"unknown key\(s\) grids; valid keys: name, title"):
        load_preset({'name': 'x', 'grids': {}})
    with pytest.raises(ValueError, match=r"scales.tpu is unknown; valid scales: cpu, full, gpu, paper"):
        load_preset({'name': 'x', 'scales': {'tpu': {}}})
    with pytest.raises(ValueError, match=r"unknown run-config key\(s\) learning_rate; valid keys: dataset"):
        expand_sweep({'name': 'x', 'fixed': {**TINY, 'learning_rate': 0.1}})
    with pytest.raises(ValueError, match=r"point objective=arcface, seed=0: objective="):
        expand_sweep({'name': 'x', 'fixed': TINY, 'grid': {'objective': ['arcface']}})
    with pytest.raises(ValueError, match=r"point epochs=0.*epochs=0 must be a positive integer"):
        expand_sweep({'name': 'x', 'fixed': {**TINY, 'iterations': None}, 'grid': {'epochs': [1, 0]}})
    with pytest.raises(ValueError, match=r"has no 'paper' scale; it has: cpu"):
        expand_sweep({'name': 'x', 'scales': {'cpu': {'fixed': TINY}}}, 'paper')


def test_expansion_union_of_products_dotted_keys_and_dirs(tmp_path):
    preset = {'name': 'demo', 'fixed': {**TINY, 'objective': {'crl': {}}},
              'grid': [{'objective': [{'ce': {}}]}, {'objective.crl.alpha': [0, 1.5], 'objective.crl.beta': [0.5, 1]}],
              'seeds': [0, 1, 2]}
    pts = expand_sweep(preset, 'cpu', tmp_path)
    assert len(pts) == (1 + 2 * 2) * 3
    assert [p.config['objective'] for p in pts[3::3]] == [{'crl': {'alpha': a, 'beta': b}} for a in (0, 1.5) for b in (0.5, 1)]
    assert len({p.run_dir for p in pts}) == len(pts) and all(p.run_dir.parent == tmp_path/'cpu'/'demo' for p in pts)
    assert pts[5].config['tags'] == {'sweep': 'demo', 'scale': 'cpu'} and pts[5].status() == 'new'
    assert pts[5].config['results_table'] == str(tmp_path/'cpu'/'results.csv')


def test_sweep_through_papermill_skips_and_reports_failures(tmp_path, capsys):
    preset = {'name': 'demo', 'fixed': TINY, 'grid': {'objective': [{'ce': {}}, {'nllr': {}}], 'subset': [None, 40]},
              'seeds': [0]}
    # subset 40 with batch 64 cannot run: by default the sweep says so before any kernel starts ...
    with pytest.raises(ValueError, match=r'point objective=ce, subset=40, seed=0: batch_size=64 is larger'):
        run_sweep(preset, runs_root=tmp_path, workers=2, progress=False)
    assert not list(tmp_path.rglob('notebook.ipynb'))
    # ... and without that check it fails inside the notebook; the others must still finish
    res = run_sweep(preset, runs_root=tmp_path, workers=2, progress=False, check=False)
    status = {r['point'].label: r['status'] for r in res}
    assert sorted(status.values()) == ['done', 'done', 'failed', 'failed'], status
    for r in res:
        assert Path(r['notebook']).is_file()                       # executed notebooks kept beside the records
        if r['status'] == 'failed': assert 'batch_size=64 is larger than the training set (40 images)' in r['error']
        else: assert (r['point'].run_dir/'record.json').is_file()
    out = capsys.readouterr().out
    assert '2 point(s) failed; their notebooks:' in out and 'notebook.ipynb' in out
    rows = read_results(tmp_path/'cpu'/'results.csv')
    assert sorted(r['loss'] for r in rows) == ['ce', 'nllr'] and {r['sweep'] for r in rows} == {'demo'}
    again = run_sweep(preset, runs_root=tmp_path, workers=1, progress=False, only='subset=None')
    assert [r['status'] for r in again] == ['complete', 'complete']   # nothing trained again


def test_runs_shared_by_presets_are_trained_once(tmp_path):
    "A run already complete in another preset is copied, with the same record and artefacts, not trained again."
    a = {'name': 'a', 'fixed': TINY, 'grid': {'objective': [{'ce': {}}, {'crl': {}}]}, 'seeds': [0]}
    b = {'name': 'b', 'fixed': {**TINY, 'progress': True}, 'grid': {'objective': [{'ce': {}}, {'nllr': {}}, {'crl': {}}]},
         'seeds': [0]}                                      # an operational key differs: still the same runs
    ra = run_sweep(a, runs_root=tmp_path, workers=2, progress=False, print_summary=False)
    rb = run_sweep(b, runs_root=tmp_path, workers=2, progress=False, print_summary=False)
    assert [r['status'] for r in rb] == ['reused', 'done', 'reused']
    for copy, source in ((rb[0], ra[0]), (rb[2], ra[1])):
        rec = json.loads((copy['point'].run_dir/'record.json').read_text())
        src = json.loads((source['point'].run_dir/'record.json').read_text())
        assert rec['reused_from'] == str(source['point'].run_dir) and rec['final'] == src['final']
        assert rec['config']['tags'] == {'sweep': 'b', 'scale': 'cpu'} and rec['config']['out_dir'] == str(copy['point'].run_dir)
        assert (copy['point'].run_dir/'artifacts.npz').read_bytes() == (source['point'].run_dir/'artifacts.npz').read_bytes()
    assert len(read_results(tmp_path/'cpu'/'results.csv')) == 3                  # three runs trained, not five
    assert [r['status'] for r in run_sweep(b, runs_root=tmp_path, dry_run=True, print_summary=False)] == ['complete'] * 3
    # committed records come without the results table (git keeps records only): a third preset still finds them
    (tmp_path/'cpu'/'results.csv').unlink()
    c = {**b, 'name': 'c', 'grid': {'objective': [{'nllr': {}}]}}
    rc = run_sweep(c, runs_root=tmp_path, workers=1, progress=False, print_summary=False)
    assert [r['status'] for r in rc] == ['reused'] and not (tmp_path/'cpu'/'results.csv').exists()
    assert json.loads((rc[0]['point'].run_dir/'record.json').read_text())['reused_from'] == str(rb[1]['point'].run_dir)


def test_interrupted_sweep_resumes_from_checkpoints(tmp_path):
    preset = tmp_path/'p.yaml'
    preset.write_text(yaml.safe_dump({'name': 'long', 'fixed': {'dataset': 'digits', 'batch_size': 64, 'epochs': 12,
                                                                'keep_checkpoint': True, 'feature_images': 20}}))
    cmd = [str(EXE), 'sweep', str(preset), '--runs-root', str(tmp_path/'runs'), '--no-progress']
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 240
    while not list((tmp_path/'runs').rglob('checkpoint.pt')) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stdout.read()
    os.killpg(proc.pid, signal.SIGKILL)                            # the sweep, papermill and the kernel
    proc.wait()
    dry = subprocess.run(cmd + ['--dry-run'], capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0 and 'resumable' in dry.stdout, dry.stdout + dry.stderr
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    rec = json.loads(next((tmp_path/'runs').rglob('record.json')).read_text())
    assert rec['resumed_after_epoch'] and len(rec['history']) == 12


def test_cli_dry_run_and_bad_yaml(tmp_path):
    (tmp_path/'bad.yaml').write_text('name: x\ngrid: [\n')
    r = subprocess.run([str(EXE), 'sweep', str(tmp_path/'bad.yaml')], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and 'does not parse' in r.stderr


def test_summary_table_pools_seeds(tmp_path):
    pts = expand_sweep({'name': 'd', 'fixed': TINY, 'grid': {'lr': [0.1]}, 'seeds': [0, 1]}, 'cpu', tmp_path)
    res = [{'point': p, 'status': 'done', 'test_error': e, 'notebook': ''} for p, e in zip(pts, [0.10, 0.20])]
    line = summary_table(res, 't').splitlines()[-1]
    assert line.split()[:5] == ['lr=0.1', '15.00', '±', '7.07', '2/2']


@pytest.mark.parametrize('preset', sorted(CONFIGS.glob('*.yaml')), ids=lambda p: p.stem)
def test_presets_expand_at_both_scales(preset, tmp_path):
    p = load_preset(preset)
    scales = p.get('scales') or {}
    # a paper-table preset carries the paper scale; a *_regimes preset (issue 27) re-tests verdicts at cpu/full scale only
    assert 'paper' in scales or (p['name'].endswith('_regimes') and scales), 'every paper-table preset carries the paper scale'
    for scale in scales:
        pts = expand_sweep(p, scale, tmp_path)
        assert pts
        if scale == 'cpu':
            assert len({pt.config['seed'] for pt in pts}) >= 3, 'the cpu profile has at least 3 seeds'
            assert all(pt.config['dataset'] in ('fashion_mnist', 'digits') for pt in pts)
        if scale == 'gpu':   # the papers' regime on a carried dataset: a CIFAR ResNet, tens of epochs, on the device
            for pt in pts:
                c = pt.config
                assert (c['dataset'], c['dataset_options'], c['amp'], c['channels_last']) == ('fashion_mnist', {'pad_to': 32}, 'bf16', True)
                assert c['backbone'].startswith('msl_resnet') and c['epochs'] >= 20 and c['crop_padding'] == 4 and c['hflip']
                assert c['device'] == 'auto' and not c['tensorboard']     # the GPU kit carries no tensorboard
            assert len({pt.config['seed'] for pt in pts}) >= 3 and scales['gpu']['cost']['seconds_per_run']


GPU_PRESETS = ('crl_table3', 'crl_table4', 'cc_table1', 'cc_table4', 'msl_table2', 'fg_table4')


def test_every_headline_preset_has_a_costed_gpu_scale_of_one_recipe():
    from ratio_losses.sweeps.presets import run_seconds
    presets = [load_preset(CONFIGS/f'{n}.yaml') for n in GPU_PRESETS]
    assert all('gpu' in p['scales'] for p in presets)
    rates = {}
    for p in presets:
        cost = p['scales']['gpu']['cost']
        for b, r in cost['images_per_s'].items():
            assert rates.setdefault(b, r) == r, f"{p['name']}: one rate per backbone across the presets"
    # CE (and every shared setting) is one run: the same run id in every preset that has it
    ce = {pt.run_id for p in presets for pt in expand_sweep(p, 'gpu', 'unused')
          if pt.config['objective'] == {'ce': {}} and pt.config['head'] == 'linear' and pt.config['backbone'] == 'msl_resnet20'}
    assert len(ce) == 3   # three seeds
    # the first table (CE, CRL, NLLR as released x 3 seeds) fits about 10 minutes by the stated cost
    first = expand_sweep(presets[1], 'gpu', 'unused')[:9]
    assert [pt.config['objective'] for pt in first[::3]] == [{'ce': {}}, {'crl': {'alpha': 1.5, 'beta': 1}}, {'nllr': {'form': 'released'}}]
    cost = presets[1]['scales']['gpu']['cost']
    first_s = sum(run_seconds(pt.config, cost['train_images'], rates['msl_resnet20'], cost['overhead_s']) for pt in first)
    assert first_s <= 11 * 60
    # the README's GPU paragraph gives these numbers, from the presets' costs
    runs = {pt.run_id: p['scales']['gpu']['cost']['seconds_per_run'][pt.config['backbone']]
            for p in presets for pt in expand_sweep(p, 'gpu', 'unused')}
    said = ' '.join((CONFIGS.parent/'README.md').read_text().split())
    per = cost['seconds_per_run']
    r56 = presets[0]['scales']['gpu']['cost']['seconds_per_run']['msl_resnet56']
    assert f"a run takes {per['msl_resnet20']} s on one H100 ({r56} s for ResNet-56)" in said
    assert f"3 seeds each: the first 9 points of `crl_table4`) about {first_s / 60:.0f} minutes" in said
    assert f"all {len(runs)} distinct runs about {sum(runs.values()) / 60:.0f} minutes" in said


# --- the smoke run ------------------------------------------------------------------------------------------------

SMOKE_PRESET = {'name': 'smoke_probe', 'scales': {'paper': {
    'fixed': {'dataset': 'cifar10', 'epochs': 10, 'batch_size': 128, 'lr': 0.01, 'feature_images': 500},
    'grid': [{'backbone': ['small_cnn'], 'lr': [0.01, 0.1]},      # one configuration: lr values fold
             {'backbone': ['msl_vgg16'], 'head': ['multi_exit'], 'head_options.exits': [[5]]}],   # 4 blocks: cannot build
    'seeds': [0, 1]}}}


def test_smoke_folds_seeds_and_values():
    from ratio_losses.sweeps.smoke import smoke_key
    pts = expand_sweep(SMOKE_PRESET, 'paper', 'unused')
    assert len(pts) == 6 and len({smoke_key(p) for p in pts}) == 2


def test_smoke_run_passes_a_point_and_names_the_one_that_cannot_step(tmp_path, capsys):
    from ratio_losses.sweeps.smoke import check_smoke, run_smoke
    res = run_smoke([SMOKE_PRESET], runs_root=tmp_path, launcher={'executor': 'debug'}, progress=False)
    by_backbone = {r['point'].config['backbone']: r for r in res}
    assert sorted(by_backbone) == ['msl_vgg16', 'small_cnn']
    good, bad = by_backbone['small_cnn'], by_backbone['msl_vgg16']
    assert good['status'] == 'passed' and good['error'] is None
    rec = json.loads((good['point'].run_dir/'record.json').read_text())
    # two steps leave a model at chance, which the collapse rule marks: finished either way, never trained again
    assert rec['config']['iterations'] == 2 and rec['config']['batch_size'] == 4 and rec['status'] in ('complete', 'collapsed')
    assert bad['status'] == 'failed' and 'exits=[5]: give block indices in 1..4' in bad['error']
    out = capsys.readouterr().out
    assert 'failed  smoke_probe: backbone=msl_vgg16' in out and 'passed  smoke_probe: backbone=small_cnn' in out
    # the round trip is a real check: a checkpoint whose weights are not the record's is caught
    import torch
    ckpt_path = good['point'].run_dir/'checkpoint.pt'
    ckpt = torch.load(ckpt_path, weights_only=False)
    name = next(iter(ckpt['model']))
    ckpt['model'][name] = ckpt['model'][name] + 1
    torch.save(ckpt, ckpt_path)
    assert "not the record's" in check_smoke(good['point'].run_dir)
    ckpt_path.unlink()
    assert 'checkpoint' in check_smoke(good['point'].run_dir)
    # running it again resumes: a point that no longer passes runs again, one that passes is only checked
    kw = dict(runs_root=tmp_path, launcher={'executor': 'debug'}, only='small_cnn', progress=False)
    (rerun,) = run_smoke([SMOKE_PRESET], **kw)
    assert rerun['status'] == 'passed' and rerun['seconds'] > 0
    (kept,) = run_smoke([SMOKE_PRESET], **kw)
    assert kept['status'] == 'passed' and kept['seconds'] == 0.0
    # a folder of real runs is never a smoke folder (stale smoke runs are removed from it)
    (tmp_path/'real').mkdir(); (tmp_path/'real'/'cpu').mkdir()
    with pytest.raises(ValueError, match="holds other runs; a smoke run needs a folder of its own"):
        run_smoke([SMOKE_PRESET], runs_root=tmp_path/'real', launcher={'executor': 'debug'}, progress=False)


@pytest.mark.slow
def test_every_paper_point_passes_the_smoke_run(tmp_path):
    "make smoke-test: every distinct paper-scale configuration of configs/ steps twice (~20 min on 2 cores)."
    cmd = [sys.executable, '-m', 'ratio_losses.cli', 'sweep', *map(str, sorted(CONFIGS.glob('*.yaml'))),
           '--scale', 'paper', '--smoke', '--runs-root', str(tmp_path), '--no-progress']
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    assert 'configurations passed' in proc.stdout
