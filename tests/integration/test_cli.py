"""The `ratio-losses` command, run as a user runs it."""
import pytest
import json
import re
import subprocess
import sys
from pathlib import Path


from ratio_losses.data import list_datasets
from clirun import run_cli

pytestmark = pytest.mark.process

EXE = Path(sys.executable).parent/'ratio-losses'


def run(*args, cwd=None):
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_train_on_digits_prints_accuracy(tmp_path):
    r = run('train', '--dataset', 'digits', '--epochs', '2', '--no-progress', '--seed', '1', '--out-dir', str(tmp_path/'r'))
    assert r.returncode == 0, r.stderr
    m = re.search(r'Test accuracy \(scikit-learn digits \(8x8\) test split, 360 images\): ([\d.]+) %', r.stdout)
    assert m and 80 < float(m.group(1)) <= 100, r.stdout
    assert 'epoch 2/2' in r.stdout + r.stderr and 'torch 2.' in r.stdout
    rec = json.loads((tmp_path/'r'/'record.json').read_text())
    assert f"{100 * (1 - rec['final']['test_error']):.2f}" == m.group(1)


def test_train_shows_progress(tmp_path):
    r = run('train', '--dataset', 'digits', '--epochs', '1', '--subset', '300', cwd=tmp_path)
    assert r.returncode == 0 and ('it/s' in r.stderr or 's/it' in r.stderr)      # tqdm's bars go to stderr
    assert 'on 300 training images' in r.stdout
    assert len(list((tmp_path/'runs'/'train').glob('digits-*/record.json'))) == 1  # the default out_dir


def test_config_file_set_and_flags(tmp_path):
    (tmp_path/'run.yaml').write_text('dataset: digits\nepochs: 1\nbatch_size: 32\nobjective: {crl: {alpha: 1.0}}\n')
    r = run('train', '--config', str(tmp_path/'run.yaml'), '--set', 'lr=0.02', '--set', 'objective={crl: {alpha: 2}}',
            '--seed', '4', '--no-progress', '--out-dir', str(tmp_path/'r'))
    assert r.returncode == 0, r.stderr
    c = json.loads((tmp_path/'r'/'record.json').read_text())['config']
    assert (c['batch_size'], c['lr'], c['objective'], c['seed']) == (32, 0.02, {'crl': {'alpha': 2}}, 4)


def test_bad_arguments_exit_2_with_the_choices(tmp_path):
    "Usage errors, in this process (tests/clirun.py); the first also in a real one, for its exit status."
    r = run('train', '--dataset', 'cifar11')
    assert r.returncode == 2 and "invalid choice: 'cifar11'" in r.stderr
    r = run_cli('train', '--dataset', 'cifar11')
    assert r.returncode == 2 and "invalid choice: 'cifar11'" in r.stderr and 'fashion_mnist' in r.stderr
    r = run_cli('train', '--epochs', '0')
    assert r.returncode == 2 and 'not a positive integer' in r.stderr
    r = run_cli('train', '--dataset', 'digits', '--device', 'tpu')
    assert r.returncode == 2 and "device='tpu'" in r.stderr
    r = run_cli('train', '--dataset', 'digits', '--set', 'learning_rate=0.1')
    assert r.returncode == 2 and "unknown config key(s) 'learning_rate'; valid keys: dataset" in r.stderr
    r = run_cli('train', '--dataset', 'digits', '--objective', '{arcface: {}}')
    assert r.returncode == 2 and "arcface" in r.stderr and 'crl' in r.stderr
    (tmp_path/'bad.yaml').write_text('dataset: [digits\n')
    r = run_cli('train', '--config', str(tmp_path/'bad.yaml'))
    assert r.returncode == 2 and 'does not parse' in r.stderr


def test_missing_data_is_reported(tmp_path):
    r = run('train', '--dataset', 'mnist', '--root', str(tmp_path), '--out-dir', str(tmp_path/'r'))
    assert r.returncode == 1 and "Dataset 'mnist' (MNIST) was not found" in r.stderr and str(tmp_path) in r.stderr


def test_datasets_lists_every_dataset():
    r = run('datasets')
    assert r.returncode == 0
    assert [line.split()[0] for line in r.stdout.splitlines()] == list_datasets()
    assert re.search(r'^digits .* found: 1437 train images$', r.stdout, re.M)
