"""The `ratio-losses` command, run as a user runs it."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ratio_losses.data import list_datasets

EXE = Path(sys.executable).parent/'ratio-losses'


def run(*args):
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, timeout=300)


def test_train_on_digits_prints_accuracy():
    r = run('train', '--dataset', 'digits', '--epochs', '2', '--no-progress', '--seed', '1')
    assert r.returncode == 0, r.stderr
    m = re.search(r'Test accuracy \(scikit-learn digits \(8x8\) test split, 360 images\): ([\d.]+) %', r.stdout)
    assert m and 80 < float(m.group(1)) <= 100, r.stdout
    assert 'epoch 2/2' in r.stdout + r.stderr and 'torch 2.' in r.stdout


def test_train_shows_progress():
    r = run('train', '--dataset', 'digits', '--epochs', '1', '--subset', '300')
    assert r.returncode == 0 and ('it/s' in r.stderr or 's/it' in r.stderr)      # tqdm's bars go to stderr
    assert '300 training' in r.stdout


def test_bad_arguments_exit_2_with_the_choices():
    r = run('train', '--dataset', 'cifar11')
    assert r.returncode == 2 and "invalid choice: 'cifar11'" in r.stderr and 'fashion_mnist' in r.stderr
    r = run('train', '--epochs', '0')
    assert r.returncode == 2 and 'not a positive integer' in r.stderr
    r = run('train', '--dataset', 'digits', '--device', 'tpu')
    assert r.returncode == 2 and "device='tpu'" in r.stderr


def test_missing_data_is_reported(tmp_path):
    r = run('train', '--dataset', 'mnist', '--root', str(tmp_path))
    assert r.returncode == 1 and "Dataset 'mnist' (MNIST) was not found" in r.stderr and str(tmp_path) in r.stderr


def test_datasets_lists_every_dataset():
    r = run('datasets')
    assert r.returncode == 0
    assert [line.split()[0] for line in r.stdout.splitlines()] == list_datasets()
    assert re.search(r'^digits .* found: 1437 train images$', r.stdout, re.M)
