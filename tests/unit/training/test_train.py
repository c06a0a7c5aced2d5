"""The trainer: config errors, schedules, metrics, bitwise resume after a real kill, torchrun, records and the table."""
import csv
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ratio_losses.training import LRFactor, Metrics, RESULT_COLUMNS, collect_results, config_from_dict, fixed_test_indices
from ratio_losses.training import load_artifacts, read_results, run_id, run_training

TINY = {'dataset': 'digits', 'epochs': 2, 'batch_size': 64, 'progress': False, 'threads': 1}
# A run whose every kind of state matters on resume: MSL's margin (patience of 5 steps, so it moves), the multi-exit
# head, GCE, momentum, the cosine schedule, random crops and flips.
STATEFUL = {**TINY, 'epochs': 5, 'head': 'multi_exit', 'head_options': {'exits': [2, 3]}, 'crop_padding': 1,
            'hflip': True, 'objective': {'gce': {'k': 3}, 'msl': {'patience': 5}}, 'keep_checkpoint': True}
RUNNER = "import json, sys; from ratio_losses.training import run_training; run_training(json.loads(sys.argv[1]))"


def _same_numbers(a: dict, b: dict):
    "Every metric of every epoch identical (timings aside)."
    strip = lambda hist: [{k: v for k, v in h.items() if k != 'seconds'} for h in hist]
    assert strip(a['history']) == strip(b['history'])
    assert a['final'] == b['final']


# --- config errors, before any training ----------------------------------------------------------------------------

@pytest.mark.parametrize('bad, message', [
    ({'dataset': 'imagenette'}, "dataset='imagenette' is unknown; valid choices: adience, cifar10"),
    ({'backbone': 'resnet9'}, "backbone='resnet9' is unknown; valid choices: .*small_cnn"),
    ({'head': 'mlp'}, "head='mlp' is unknown; valid choices: cam, gaussian_mixture, linear"),
    ({'objective': {'hinge': {}}}, "objective=.*hinge"),
    ({'objective': {'crl': {'alpha': -1}}}, "alpha"),
    ({'epochs': 0}, 'epochs=0 must be a positive integer'),
    ({'epochs': -3}, 'epochs=-3 must be a positive integer'),
    ({'epochs': 2, 'iterations': 10}, 'exactly one of epochs and iterations'),
    ({'batch_size': 0}, 'batch_size=0 must be a positive integer'),
    ({'lr': 0}, 'lr=0 must be a number > 0'),
    ({'amp': 'fp8'}, "amp='fp8' is unknown; valid choices: none, bf16, fp16"),
    ({'schedule': {'name': 'step'}}, "schedule 'step' needs epochs"),
    ({'schedule': {'name': 'cosine', 'milestones': [0.5]}}, "schedule 'cosine' takes eta_min; unknown: milestones"),
    ({'device': 'cuda:7'}, "device='cuda:7'"),
    ({'learning_rate': 0.1}, "unknown config key.*'learning_rate'.*valid keys: dataset, root"),
])
def test_config_errors_name_the_key(bad, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict({**TINY, **bad})


def test_batch_larger_than_the_dataset_fails_before_training(tmp_path):
    with pytest.raises(ValueError, match=r'batch_size=2000 is larger than the training set \(1437 images\)'):
        run_training({**TINY, 'batch_size': 2000, 'out_dir': str(tmp_path/'run')})
    with pytest.raises(ValueError, match=r'batch_size=128 is larger than the training set \(100 images\)'):
        run_training({**TINY, 'batch_size': 128, 'subset': 100, 'out_dir': str(tmp_path/'run2')})
    assert not (tmp_path/'run'/'checkpoint.pt').exists()


def test_unwritable_out_dir(tmp_path):
    blocker = tmp_path/'a_file'
    blocker.write_text('not a folder')
    with pytest.raises(ValueError, match=r"out_dir='.*a_file/run' is not writable .*choose another out_dir"):
        run_training({**TINY, 'out_dir': str(blocker/'run')})


def test_resuming_with_other_settings_is_refused(tmp_path):
    out = tmp_path/'run'
    run_training({**TINY, 'epochs': 1, 'out_dir': str(out), 'keep_checkpoint': True})
    (out/'record.json').unlink()                                   # as if killed after the first checkpoint
    with pytest.raises(ValueError, match=r"checkpoint of a run with other settings: lr: 0.05 in the checkpoint, 0.1 now"):
        run_training({**TINY, 'epochs': 1, 'lr': 0.1, 'out_dir': str(out)})
    with pytest.raises(ValueError, match=r"record of a run with other settings: seed: 0 .*, 3 now"):
        run_training({**TINY, 'epochs': 1, 'out_dir': str(tmp_path/'done')})
        run_training({**TINY, 'epochs': 1, 'seed': 3, 'out_dir': str(tmp_path/'done')})
    # resume=False starts over instead
    rec = run_training({**TINY, 'epochs': 1, 'lr': 0.1, 'out_dir': str(out), 'resume': False})
    assert rec['config']['lr'] == 0.1 and rec['resumed_after_epoch'] == []


# --- schedules ---------------------------------------------------------------------------------------------------

def _loop_schedule(spec, step, lr, spe, total):
    "The schedules written out plainly, step by step."
    f = 1.0
    if spec['name'] == 'multistep':
        for m in spec.get('milestones', [0.5, 0.75]):
            if step >= round(m * total): f *= spec.get('gamma', 0.1)
    elif spec['name'] == 'step':
        for e in spec['epochs']:
            if step >= e * spe: f *= spec.get('gamma', 0.1)
    elif spec['name'] == 'every':
        period = spec['epochs'] * spe if 'epochs' in spec else spec['iterations']
        for s in range(period, step + 1, period): f *= spec.get('gamma', 0.1)
    elif spec['name'] == 'cosine':
        lo = spec.get('eta_min', 0.0)
        return (lo + (lr - lo) * (1 + math.cos(math.pi * step / total)) / 2) / lr
    return f


@pytest.mark.parametrize('spec', [{'name': 'constant'}, {'name': 'multistep'}, {'name': 'multistep', 'milestones': [0.3]},
                                  {'name': 'step', 'epochs': [3, 6], 'gamma': 0.2}, {'name': 'every', 'epochs': 5},
                                  {'name': 'every', 'iterations': 7, 'gamma': 0.9}, {'name': 'cosine', 'eta_min': 1e-5},
                                  {'name': 'cosine'}])
def test_schedules_match_the_plain_definitions(spec):
    f = LRFactor(spec, 0.1, 4, 40)
    for s in range(41):
        assert f(s) == pytest.approx(_loop_schedule(spec, s, 0.1, 4, 40), rel=1e-12, abs=1e-15)


def test_schedule_drives_the_optimizer_per_step(tmp_path):
    rec = run_training({**TINY, 'epochs': 4, 'lr': 0.1, 'schedule': {'name': 'multistep'}, 'out_dir': str(tmp_path/'r')})
    steps = rec['steps_per_epoch']                         # 22 batches of 64 from 1437 images
    assert steps == 22 and [h['iteration'] for h in rec['history']] == [22, 44, 66, 88]
    # the rate after epoch e is the factor at step 22·e: ÷10 from step 44 (50 %), ÷100 from step 66 (75 %)
    assert [h['lr'] for h in rec['history']] == pytest.approx([0.1, 0.01, 0.001, 0.001])


def test_iterations_budget(tmp_path):
    rec = run_training({**TINY, 'epochs': None, 'iterations': 30, 'schedule': {'name': 'every', 'iterations': 10, 'gamma': 0.9},
                        'out_dir': str(tmp_path/'r')})
    assert rec['epochs'] == 2 and [h['iteration'] for h in rec['history']] == [22, 30]
    assert rec['history'][-1]['lr'] == pytest.approx(0.05 * 0.9 ** 3)


# --- metrics -----------------------------------------------------------------------------------------------------

def test_ordinal_exact_and_one_off_on_synthetic_labels():
    "Exact and 1-off accuracy (CRL Table VII) against a loop over synthetic ordinal predictions."
    rng = np.random.default_rng(0)
    y = rng.integers(0, 8, 1000)
    pred = np.clip(y + rng.choice([-2, -1, 0, 0, 0, 1, 3], 1000), 0, 7)
    logits = torch.full((1000, 8), -5.0)
    logits[torch.arange(1000), torch.from_numpy(pred)] = 5.0
    m = Metrics(8, ordinal=True)
    for i in range(0, 1000, 128): m.update(logits[i:i + 128], torch.from_numpy(y[i:i + 128]))
    r = m.compute()
    assert r['exact_accuracy'] == pytest.approx(sum(p == t for p, t in zip(pred, y)) / 1000)
    assert r['one_off_accuracy'] == pytest.approx(sum(abs(p - t) <= 1 for p, t in zip(pred, y)) / 1000)


def test_ordinal_run_records_one_off(tmp_path):
    rec = run_training({**TINY, 'ordinal': True, 'out_dir': str(tmp_path/'r')})
    cm = load_artifacts(tmp_path/'r')['confusion']
    i, j = np.indices(cm.shape)
    assert rec['final']['test_one_off_accuracy'] == pytest.approx(cm[abs(i - j) <= 1].sum() / cm.sum())
    assert rec['final']['test_exact_accuracy'] == pytest.approx(1 - rec['final']['test_error'])
    row = read_results(tmp_path/'results.csv')[0]
    assert float(row['test_one_off_accuracy']) == pytest.approx(rec['final']['test_one_off_accuracy'])


@pytest.mark.parametrize('ordinal', [False, True])
def test_metrics_accumulate_like_one_batch(ordinal):
    torch.manual_seed(1)
    logits, y = torch.randn(300, 10), torch.randint(0, 10, (300,))
    whole, parts = Metrics(10, ordinal=ordinal), Metrics(10, ordinal=ordinal)
    whole.update(logits, y, 2.0)
    for i in range(0, 300, 7): parts.update(logits[i:i + 7], y[i:i + 7], 2.0)
    a, b = whole.compute(), parts.compute()
    assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], rel=1e-12) for k in a)
    assert torch.equal(whole.confusion, parts.confusion)


def test_fixed_test_indices_one_per_class_in_order():
    y = torch.tensor([2, 0, 0, 1, 2, 1, 0])
    assert fixed_test_indices(y, 3).tolist() == [1, 3, 0]
    assert fixed_test_indices(y, 5).tolist() == [1, 3, 0, 2, 5]


# --- records, artefacts, the table ---------------------------------------------------------------------------------

def test_record_and_table(tmp_path):
    rec = run_training({**TINY, 'objective': {'crl': {'alpha': 1.5, 'beta': 1}}, 'out_dir': str(tmp_path/'a'),
                        'tags': {'sweep': 'demo', 'scale': 'cpu'}})
    saved = json.loads((tmp_path/'a'/'record.json').read_text())
    assert saved == json.loads(json.dumps(rec))
    for key in ('config', 'history', 'final', 'wall_seconds', 'device', 'versions', 'git_commit', 'seed', 'run_id'):
        assert key in saved
    assert set(saved['versions']) >= {'python', 'torch', 'torchvision', 'ratio_losses'}
    assert saved['run_id'] == run_id(saved['config']) and len(saved['history']) == 2
    assert not (tmp_path/'a'/'checkpoint.pt').exists() and (tmp_path/'a'/'model.pt').exists()
    art = load_artifacts(tmp_path/'a')
    assert art['softmax'].shape == (10, 10) and art['softmax_images'].shape == (10, 1, 8, 8)
    assert art['softmax_images'].dtype == np.uint8 and art['features'].shape == (360, 128)   # digits test: 360 < 500
    assert art['confusion'].sum() == 360 and np.trace(art['confusion']) == round(360 * (1 - rec['final']['test_error']))
    run_training({**TINY, 'seed': 1, 'out_dir': str(tmp_path/'b'), 'tags': {'sweep': 'demo'}})
    rows = read_results(tmp_path/'results.csv')
    assert [r['seed'] for r in rows] == ['0', '1'] and rows[0]['loss'] == 'crl' and rows[0]['sweep'] == 'demo'
    assert float(rows[0]['test_error']) == rec['final']['test_error']
    # the table can be rebuilt from the records alone
    (tmp_path/'results.csv').unlink()
    collect_results(tmp_path)
    assert sorted(r['run_id'] for r in read_results(tmp_path/'results.csv')) == sorted(r['run_id'] for r in rows)
    with open(tmp_path/'results.csv') as f: assert tuple(f.readline().strip().split(',')) == RESULT_COLUMNS


def test_same_seed_same_numbers(tmp_path):
    a = run_training({**TINY, 'out_dir': str(tmp_path/'a')})
    b = run_training({**TINY, 'out_dir': str(tmp_path/'b')})
    _same_numbers(a, b)
    c = run_training({**TINY, 'seed': 1, 'out_dir': str(tmp_path/'c')})
    assert c['history'] != a['history']


@pytest.mark.parametrize('amp', ['bf16', 'fp16'])
def test_autocast_runs_on_cpu(tmp_path, amp):
    rec = run_training({**TINY, 'amp': amp, 'objective': {'crl': {}}, 'out_dir': str(tmp_path/amp)})
    assert math.isfinite(rec['final']['test_loss']) and rec['final']['test_error'] < 0.5


def test_kaiming_init_and_heads(tmp_path):
    rec = run_training({**TINY, 'init': 'kaiming', 'head': 'se_attention', 'objective': {'ce': {}, 'cc': {'lam': 1.0}},
                        'out_dir': str(tmp_path/'cc')})
    assert 'train_cc' in rec['history'][-1] and rec['final']['test_error'] < 0.5
    rec = run_training({**TINY, 'head': 'cam', 'head_options': {'diversify': True}, 'objective': {'gce': {'k': 3}},
                        'softmax_images': 4, 'out_dir': str(tmp_path/'cam')})
    assert load_artifacts(tmp_path/'cam')['class_maps'].shape[:2] == (4, 10)


# --- resume after a real kill ----------------------------------------------------------------------------------------

def _spawn(config: dict):
    return subprocess.Popen([sys.executable, '-c', RUNNER, json.dumps(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _epoch_of(ckpt: Path) -> int:
    try: return torch.load(ckpt, map_location='cpu', weights_only=False)['epoch']
    except Exception: return 0                                  # not there yet


@pytest.mark.process
@pytest.mark.parametrize('after_epoch, extra_delay', [(1, 0.0), (3, 0.15)])
def test_resume_after_sigkill_is_bitwise_identical(tmp_path, after_epoch, extra_delay):
    "Kill a training process with SIGKILL mid-run, start it again: the final numbers and weights equal an uninterrupted run."
    straight = _spawn({**STATEFUL, 'out_dir': str(tmp_path/'straight')})
    assert straight.wait(timeout=300) == 0, straight.stdout.read()
    config = {**STATEFUL, 'out_dir': str(tmp_path/'killed')}
    proc = _spawn(config)
    ckpt = tmp_path/'killed'/'checkpoint.pt'
    deadline = time.time() + 300
    while _epoch_of(ckpt) < after_epoch and proc.poll() is None and time.time() < deadline: time.sleep(0.005)
    time.sleep(extra_delay)
    assert proc.poll() is None, 'the run ended before it could be killed; make STATEFUL longer'
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _epoch_of(ckpt)
    assert after_epoch <= killed_at < STATEFUL['epochs'] and not (tmp_path/'killed'/'record.json').exists()
    resumed = _spawn(config)
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, out
    assert f'resuming after epoch {killed_at}/5' in out
    a = json.loads((tmp_path/'straight'/'record.json').read_text())
    b = json.loads((tmp_path/'killed'/'record.json').read_text())
    assert b['resumed_after_epoch'] == [killed_at]
    _same_numbers(a, b)
    wa, wb = (torch.load(tmp_path/d/'model.pt') for d in ('straight', 'killed'))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # the objective's state (MSL's margin) moved during the run and was restored: same final checkpoint state
    ca, cb = (torch.load(tmp_path/d/'checkpoint.pt', weights_only=False)['objective'] for d in ('straight', 'killed'))
    assert all(torch.equal(ca[k], cb[k]) for k in ca if torch.is_tensor(ca[k]))
    xi = [v for k, v in ca.items() if k.endswith('xi')]
    assert xi and float(xi[0]) < 0.5, ca                           # ξ was reduced from 0.5 at least once


# --- data parallel under torchrun ----------------------------------------------------------------------------------

@pytest.mark.process
def test_torchrun_two_processes_match_one(tmp_path):
    "DistributedDataParallel with gloo, 2 processes on this machine, against the same run in one process."
    config = {**TINY, 'epochs': 2, 'lr': 0.02, 'objective': {'crl': {}}}
    single = run_training({**config, 'out_dir': str(tmp_path/'single')})
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MASTER_ADDR': '127.0.0.1'}
    (tmp_path/'ddp.json').write_text(json.dumps({**config, 'out_dir': str(tmp_path/'ddp')}))
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc-per-node', '2', '--master-port',
                        str(random.randint(20000, 40000)), '-m', 'ratio_losses.cli', 'train', '--config',
                        str(tmp_path/'ddp.json')],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    ddp = json.loads((tmp_path/'ddp'/'record.json').read_text())
    assert ddp['world_size'] == 2 and ddp['steps_per_epoch'] == single['steps_per_epoch']
    # each process sees 32 of every 64 images, so batch norm statistics differ a little; the rest is the same steps
    for h1, h2 in zip(single['history'], ddp['history']):
        assert h2['train_loss'] == pytest.approx(h1['train_loss'], rel=0.05)
        assert abs(h2['test_error'] - h1['test_error']) < 0.02
    with open(tmp_path/'results.csv', newline='') as f: rows = list(csv.DictReader(f))
    assert [r['world_size'] for r in rows] == ['1', '2']            # one row per run: rank 1 wrote none


def test_divergence_is_an_error_or_a_record(tmp_path):
    "A loss that turns NaN/inf raises by default; with on_divergence='record' (what sweeps use) the run is recorded."
    from ratio_losses.losses import NonFiniteLossError
    cfg = {**TINY, 'objective': {'nllr': {}}, 'lr': 1e4, 'epochs': 3}
    with pytest.raises(FloatingPointError, match='not finite'):
        run_training({**cfg, 'out_dir': str(tmp_path/'a')})
    rec = run_training({**cfg, 'out_dir': str(tmp_path/'b'), 'on_divergence': 'record'})
    assert rec['status'] == 'diverged' and rec['final'] == {} and rec['diverged']['epoch'] >= 1
    assert 'not finite' in rec['diverged']['error'] and len(rec['history']) == rec['diverged']['epoch'] - 1
    assert not (tmp_path/'b'/'artifacts.npz').exists() and not (tmp_path/'b'/'checkpoint.pt').exists()
    row = read_results(tmp_path/'results.csv')[-1]
    assert row['test_error'] == '' and row['run_id'] == rec['run_id']
    assert run_training({**cfg, 'out_dir': str(tmp_path/'b'), 'on_divergence': 'record'})['finished_at'] == rec['finished_at']
    assert issubclass(NonFiniteLossError, ValueError) and issubclass(NonFiniteLossError, FloatingPointError)
    with pytest.raises(ValueError, match="on_divergence='ignore' is unknown; valid choices: error, record"):
        run_training({**cfg, 'out_dir': str(tmp_path/'c'), 'on_divergence': 'ignore'})


def test_tensorboard_events_hold_the_history(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from ratio_losses.training import run_training
    rec = run_training({'dataset': 'digits', 'epochs': 3, 'batch_size': 64, 'objective': {'cc': {}}, 'head': 'se_attention',
                        'out_dir': str(tmp_path/'run'), 'progress': False, 'feature_images': 0, 'softmax_images': 0,
                        'cpu_isa': 'avx2'})
    acc = EventAccumulator(str(tmp_path/'run'/'tensorboard')); acc.Reload()
    tags = set(acc.Tags()['scalars'])
    assert {'train/loss', 'train/error', 'test/loss', 'test/error', 'test/ece', 'lr', 'train/ce', 'train/cc'} <= tags, tags
    for key, tag in (('train_loss', 'train/loss'), ('test_error', 'test/error'), ('lr', 'lr'), ('train_cc', 'train/cc')):
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [1, 2, 3]
        assert [e.value for e in events] == pytest.approx([h[key] for h in rec['history']], rel=1e-6)
    off = run_training({'dataset': 'digits', 'epochs': 1, 'batch_size': 64, 'out_dir': str(tmp_path/'off'), 'progress': False,
                        'tensorboard': False, 'feature_images': 0, 'softmax_images': 0, 'cpu_isa': 'avx2'})
    assert off['status'] == 'complete' and not (tmp_path/'off'/'tensorboard').exists()
