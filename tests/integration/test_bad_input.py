"""Bad input and damaged files, as a user meets them through the `ratio-losses` command: a one-line error that names
the argument or file and the fix, before any training, never a traceback or a silent wrong result. The command runs
in this process (`cli.main`, tests/clirun.py) unless a case needs a working directory, an environment or the exit code
of a real process (`test_missing_preset_file`)."""
import gzip
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

import layouts
from clirun import run_cli
from ratio_losses.training import config_from_dict, run_training

pytestmark = [pytest.mark.process, pytest.mark.kernel]

EXE = Path(sys.executable).parent/'ratio-losses'
PAPERMILL = Path(sys.executable).parent/'papermill'
TINY = {'dataset': 'digits', 'epochs': 1, 'batch_size': 64, 'feature_images': 0, 'softmax_images': 0, 'progress': False}


def run(*args, cwd=None, env=None):
    "The command: in this process, or in a real one where a working directory or an environment is given."
    if cwd is None and env is None:
        return run_cli(*args)
    return subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def one_line_error(r, *contains):
    "Exit status 2, one `error:` line on stderr that holds every string of `contains`, and no traceback."
    assert r.returncode == 2, (r.returncode, r.stdout[-1500:], r.stderr[-1500:])
    assert 'Traceback' not in r.stderr + r.stdout, r.stderr[-2000:]
    errors = [l for l in r.stderr.splitlines() if l.startswith('error: ')]
    assert len(errors) == 1, r.stderr
    for c in contains: assert c in errors[0], (c, errors[0])
    return errors[0]


def preset(tmp_path, name='p', **keys) -> Path:
    path = tmp_path/f'{name}.yaml'
    path.write_text(yaml.safe_dump({'name': name, 'fixed': dict(TINY), **keys}))
    return path


@pytest.mark.parametrize('args,contains', [
    (['--objective', '{crl: {alpha: 1.5}'], ['--objective {crl: {alpha: 1.5} does not parse as YAML/JSON']),
    (['--set', 'objective={ce: [}'], ['--set objective={ce: [} does not parse']),
    (['--set', "schedule={name: step, epochs: [1], gamma: fast}"], ["schedule.gamma='fast' must be a number"]),
    (['--set', "schedule={name: multistep, milestones: half}"], ["schedule.milestones='half' must be a list"]),
    (['--subset', '5000'], ['subset=5000', 'larger than the set itself (1437 images)']),
    (['--head', 'margin', '--objective', '{asoftmax: {}}'], ["objective 'asoftmax' reads normalised class vectors", 'normalize: true']),
    (['--head', 'margin', '--objective', '{lgm: {}}'], ["objective 'lgm' reads class means", 'set head: gaussian_mixture']),
    (['--head', 'gaussian_mixture', '--objective', '{lsoftmax: {}}'], ["objective 'lsoftmax'", 'set head: margin']),
    (['--head', 'linear', '--objective', '{ce: {}, mc: {}}'], ["objective 'mc'", 'channels_per_class: 3']),
    (['--objective', '{cc: {}}'], ["objective 'cc' reads the channel-attention vectors", 'set head: se_attention']),
    (['--objective', '{gce: {k: 3, label_smoothing: 0.1}}'], ['label_smoothing=0.1: GCE is defined for one true class']),
    (['--head', 'se_attention', '--objective', '{cc: {}}', '--set', 'mixup_alpha=0.2'],
     ['mixup_alpha/cutmix_alpha make the targets class probabilities', "('cc': class indices only)"]),
    (['--backbone', 'imagenet_resnet18', '--set', 'backbone_options={pretrained: /nonexistent/r18.pth}'],
     ['backbone_options.pretrained=', 'weights not found: expected /nonexistent/r18.pth']),
])
def test_train_rejects(tmp_path, args, contains):
    one_line_error(run('train', '--dataset', 'digits', '--epochs', '1', '--out-dir', tmp_path/'r', *args), *contains)
    assert not (tmp_path/'r'/'record.json').exists()


def test_set_reads_exponents_as_numbers(tmp_path):
    r = run('train', '--dataset', 'digits', '--epochs', '1', '--no-progress', '--set', 'lr=1e-3', '--out-dir', tmp_path/'r')
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path/'r'/'record.json').read_text())['config']['lr'] == 0.001


def test_gce_that_keeps_every_negative_warns_at_config_time():
    with pytest.warns(UserWarning, match='GCE with k=15 and 10 classes keeps all 9 negatives: it is plain cross-entropy'):
        config_from_dict({'dataset': 'digits', 'objective': {'gce': {}}})
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        config_from_dict({'dataset': 'digits', 'objective': {'gce': {'k': 3}}})


def test_damaged_dataset_files_are_named(tmp_path):
    root = tmp_path/'fmnist'
    layouts.write_idx(root, n_train=20, n_test=10)
    whole = (root/'train-images-idx3-ubyte.gz').read_bytes()
    (root/'train-images-idx3-ubyte.gz').write_bytes(whole[:len(whole) // 2])              # a download cut short
    one_line_error(run('train', '--dataset', 'fashion_mnist', '--root', root, '--batch-size', '8', '--out-dir', tmp_path/'r'),
                   'train-images-idx3-ubyte.gz is not a complete gzip file', 'fetch it again')
    (root/'train-images-idx3-ubyte.gz').write_bytes(b'not gzip at all')
    one_line_error(run('train', '--dataset', 'fashion_mnist', '--root', root, '--batch-size', '8', '--out-dir', tmp_path/'r'),
                   'train-images-idx3-ubyte.gz is not a complete gzip file')


def test_labels_outside_the_classes_fail_before_training(tmp_path):
    root = tmp_path/'fmnist'
    layouts.write_idx(root, n_train=20, n_test=10)
    labels = root/'train-labels-idx1-ubyte.gz'
    raw = bytearray(gzip.decompress(labels.read_bytes())); raw[-1] = 12                 # class 12 of 10
    labels.write_bytes(gzip.compress(bytes(raw)))
    one_line_error(run('train', '--dataset', 'fashion_mnist', '--root', root, '--batch-size', '8', '--out-dir', tmp_path/'r'),
                   'training labels of fashion_mnist hold class 12, outside [0, 9]')
    assert not (tmp_path/'r'/'checkpoint.pt').exists()


@pytest.mark.parametrize('keys,args,contains', [
    ({'seeds': 3}, [], ['seeds=3 must be a non-empty list of integers']),
    ({'seeds': []}, [], ['seeds=[] must be a non-empty list']),
    ({'seeds': [0]}, ['--only', 'objective=('], ['is not a regular expression']),
    ({'seeds': [0]}, ['--only', 'nothing-like-this'], ["--only 'nothing-like-this' matches no point of p"]),
    ({'seeds': [0]}, ['--runs-root', '/proc/no/such'], ["runs_root='/proc/no/such' is not writable"]),
    ({'seeds': [0], 'grid': {'subset': [40]}}, [], ['point subset=40, seed=0: batch_size=64 is larger than the training set (40 images)']),
    ({'seeds': [0], 'fixed': {**TINY, 'dataset': 'cifar10'}}, [], ["Dataset 'cifar10' (CIFAR-10) was not found"]),
])
def test_sweep_rejects_before_any_kernel_starts(tmp_path, keys, args, contains):
    p = preset(tmp_path, **keys)
    line = one_line_error(run('sweep', p, '--runs-root', tmp_path/'runs', *args), *contains)
    assert not list((tmp_path/'runs').rglob('notebook.ipynb')), line                   # no kernel ever started


def test_missing_preset_file():
    "The exit-code contract in a real process: status 2, one `error:` line, no traceback."
    r = subprocess.run([str(EXE), 'sweep', 'configs/crl_tabel1.yaml'], capture_output=True, text=True, timeout=300)
    one_line_error(r, 'preset file configs/crl_tabel1.yaml does not exist')


def test_damaged_record_is_named_then_moved_aside_and_the_point_runs_again(tmp_path):
    p = preset(tmp_path, seeds=[0])
    assert run('sweep', p, '--runs-root', tmp_path/'runs').returncode == 0
    record = next((tmp_path/'runs').rglob('record.json'))
    good = json.loads(record.read_text())
    record.write_text(record.read_text()[:200])                                       # cut short
    dry = run('sweep', p, '--runs-root', tmp_path/'runs', '--dry-run')
    assert dry.returncode == 0 and f'damaged: {record} is not a valid record' in dry.stdout, dry.stdout
    assert record.exists()                                                            # a dry run moves nothing
    again = run('sweep', p, '--runs-root', tmp_path/'runs')
    assert again.returncode == 0, again.stderr
    assert f'warning: {record} is not a valid record' in again.stderr and 'moved it to record.json.corrupt' in again.stderr
    assert (record.parent/'record.json.corrupt').exists()
    rerun = json.loads(record.read_text())
    assert rerun['weights_sha256'] == good['weights_sha256'] and rerun['final'] == good['final']


def test_damaged_checkpoint_is_moved_aside_and_the_run_starts_over(tmp_path):
    full = run_training({**TINY, 'epochs': 2, 'out_dir': str(tmp_path/'a'), 'save_model': False})
    half = run_training({**TINY, 'epochs': 2, 'out_dir': str(tmp_path/'b'), 'save_model': False, 'keep_checkpoint': True})
    ckpt = tmp_path/'b'/'checkpoint.pt'
    (tmp_path/'b'/'record.json').unlink()                                             # as if killed after the last epoch
    ckpt.write_bytes(ckpt.read_bytes()[:1000])                                        # and the checkpoint cut short
    config = {**TINY, 'epochs': 2, 'out_dir': str(tmp_path/'b'), 'save_model': False}
    r = subprocess.run([sys.executable, '-c', f'from ratio_losses.training import run_training; run_training({config!r})'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f'warning: {ckpt} cannot be read as a checkpoint' in r.stderr and (tmp_path/'b'/'checkpoint.pt.corrupt').exists()
    again = json.loads((tmp_path/'b'/'record.json').read_text())
    assert again['weights_sha256'] == full['weights_sha256'] == half['weights_sha256']


def test_rerun_of_a_complete_point_keeps_its_executed_notebook(tmp_path):
    from ratio_losses.sweeps.executors import execute_point
    from ratio_losses.sweeps.kernels import kernel_name
    from ratio_losses.sweeps.presets import expand_sweep, EXPERIMENT_NOTEBOOK
    point = expand_sweep({'name': 'k', 'fixed': TINY}, runs_root=tmp_path)[0]
    first = execute_point(point.config, str(EXPERIMENT_NOTEBOOK), kernel_name(), None)
    assert first['status'] == 'done', first
    nb = point.run_dir/'notebook.ipynb'
    before = nb.read_bytes()
    assert 'not trained again' not in before.decode()
    second = execute_point(point.config, str(EXPERIMENT_NOTEBOOK), kernel_name(), None)
    assert second['status'] == 'complete' and nb.read_bytes() == before


def test_papermill_parameter_typo_fails(tmp_path):
    from ratio_losses.sweeps.kernels import kernel_name
    from ratio_losses.sweeps.presets import EXPERIMENT_NOTEBOOK
    r = subprocess.run([str(PAPERMILL), str(EXPERIMENT_NOTEBOOK), str(tmp_path/'out.ipynb'), '-k', kernel_name(),
                        '-p', 'epoch', '3', '-p', 'out_dir', str(tmp_path/'r')], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert 'unknown parameter(s) epoch (a typo?)' in r.stderr + r.stdout
    assert not (tmp_path/'r'/'record.json').exists()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which('apt-get'), reason="needs root and Debian's apt")
def test_make_data_waits_for_the_apt_lock(tmp_path):
    "Another process holds dpkg's locks for 4 s: `make data` waits for them instead of failing at once."
    holder = subprocess.Popen([sys.executable, '-c', (
        "import fcntl, sys, time\n"
        "fs = [open(p, 'a') for p in ('/var/lib/dpkg/lock-frontend', '/var/lib/dpkg/lock')]\n"
        "[fcntl.lockf(f, fcntl.LOCK_EX) for f in fs]\nprint('locked', flush=True)\ntime.sleep(4)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        repo = Path(__file__).resolve().parents[2]
        r = subprocess.run(['make', '--no-print-directory', '-C', str(repo), 'data', f'FASHION_MNIST_DIR={tmp_path}/none',
                            'APT_LOCK_WAIT=120'], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        assert holder.poll() is not None                     # make finished only after the holder let go
    finally:
        holder.kill(); holder.wait()
