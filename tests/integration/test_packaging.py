"""The package as a user installs it. The wheel's unconditional requirements are the core (torch, torchvision, numpy);
in a fresh virtual environment that holds nothing but the core, `ratio_losses.losses` imports and computes, the data
and model modules import, and a subpackage that needs an extra is a one-line ImportError naming the pip command.

The fresh environment sees this environment's torch, torchvision and numpy (and what they require) through a .pth
file that points at a folder of links to exactly those distributions: the wheel is installed with `--no-index`, so
pip finds every requirement there or fails."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from torch_only import torch_only_python

pytestmark = pytest.mark.process
ROOT = Path(__file__).resolve().parents[2]


def _build_wheel(tmp: Path) -> Path:
    "The wheel of the working tree (its package, pyproject.toml, README, LICENSE copied aside, so the tree stays clean)."
    src = tmp/'src'
    shutil.copytree(ROOT/'ratio_losses', src/'ratio_losses', ignore=shutil.ignore_patterns('__pycache__'))
    for name in ('pyproject.toml', 'README.md', 'LICENSE'):
        shutil.copy(ROOT/name, src/name)
    r = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '--no-build-isolation', '-w', str(tmp/'dist'),
                        str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (wheel,) = (tmp/'dist').glob('ratio_losses-*.whl')
    return wheel


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    return _build_wheel(tmp_path_factory.mktemp('wheel'))


def test_the_wheel_requires_the_core_only(wheel):
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith('.dist-info/METADATA'))).decode()
    requires = [line.split(':', 1)[1].strip() for line in meta.splitlines() if line.startswith('Requires-Dist:')]
    unconditional = sorted(r for r in requires if 'extra ==' not in r)
    assert unconditional == ['numpy', 'torch>=2.2', 'torchvision>=0.17'], unconditional
    extras = {line.split(':', 1)[1].strip() for line in meta.splitlines() if line.startswith('Provides-Extra:')}
    assert extras == {'experiments', 'analysis', 'docs', 'dev'}


def test_a_fresh_environment_with_only_the_core_uses_the_losses(wheel, tmp_path):
    py = torch_only_python(tmp_path)   # without pip or setuptools of its own: this environment's pip installs into it
    r = subprocess.run([sys.executable, '-m', 'pip', '--python', str(py), 'install', '-q', '--no-index',
                        '--disable-pip-version-check', str(wheel)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]   # every requirement found among the core's
    probe = '''
import importlib.util, torch
import ratio_losses.losses as L, ratio_losses.data, ratio_losses.models
x, y = torch.randn(4, 5, requires_grad=True), torch.tensor([0, 1, 2, 3])
L.competing_ratio_loss(x, y).backward()
q = torch.softmax(torch.randn(4, 5), 1)
print('losses', round(L.cross_entropy(x, q).item(), 4) == round(torch.nn.functional.cross_entropy(x, q).item(), 4),
      bool(torch.isfinite(x.grad).all()))
model = ratio_losses.models.build_model('small_cnn', 'linear', in_channels=1, num_classes=10)
print('model', tuple(model(torch.zeros(2, 1, 28, 28)).logits.shape))
print('extras present', [m for m in ('papermill', 'scipy', 'sklearn', 'matplotlib', 'yaml', 'tqdm', 'submitit')
                         if importlib.util.find_spec(m)])
for sub in ('training', 'sweeps', 'analysis'):
    try:
        __import__('ratio_losses.' + sub)
    except ImportError as e:
        print(sub, '|', e)
'''
    r = subprocess.run([str(py), '-c', probe], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert lines[:3] == ['losses True True', 'model (2, 10)', 'extras present []'], r.stdout
    for sub, line in zip(('training', 'sweeps', 'analysis'), lines[3:]):
        name, _, message = line.partition(' | ')
        assert name == sub and message.startswith(f'ratio_losses.{sub} (') and "needs the 'experiments' extra" in message, line
        assert message.endswith("pip install 'ratio_losses[experiments]'") and '\n' not in message, message
