"""The GPU kit (`make gpu-kit`, gpu/make_kit.py and gpu/run.sh) as a bare GPU host meets it: built from the package
registry, within 64 MiB, and run by run.sh --check in a fresh environment that has only torch, torchvision and numpy
(tests/torch_only.py), on the CPU: it installs the wheels offline, registers the kernel, reads the kit's Fashion-MNIST,
runs benchmarks/gpu.py, and runs every distinct configuration of the six presets' gpu scale for two optimiser steps
through the sweep and the experiment notebook (records and executed notebooks written). Where the host lacks torch, or
a CUDA device, run.sh stops with one line."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from torch_only import torch_only_python

pytestmark = pytest.mark.kit
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def kit(tmp_path_factory):
    out = tmp_path_factory.mktemp('kit')/'gpu-kit'
    r = subprocess.run([sys.executable, str(ROOT/'gpu'/'make_kit.py'), '--out', str(out)],
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out


@pytest.fixture(scope='module')
def host(tmp_path_factory):
    return torch_only_python(tmp_path_factory.mktemp('host'))


def run_kit(kit, python, out, *args, timeout=1200):
    env = {**os.environ, 'PYTHON': str(python), 'RATIO_LOSSES_CHECKOUT': str(ROOT)}
    env.pop('RATIO_LOSSES_DATA', None)
    env.pop('VIRTUAL_ENV', None)
    return subprocess.run(['bash', str(kit/'run.sh'), str(out), *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


def test_the_kit_fits_in_64_mib_and_carries_what_a_bare_host_lacks(kit):
    files = [f for f in kit.rglob('*') if f.is_file()]
    assert sum(f.stat().st_size for f in files) <= 64 * 2**20
    wheels = {f.name.split('-')[0].lower().replace('_', '-') for f in (kit/'wheels').glob('*.whl')}
    assert {'papermill', 'nbclient', 'ipykernel', 'jupyter-client', 'pyzmq', 'tornado', 'pyyaml', 'tqdm', 'submitit',
            'psutil', 'filelock', 'pip'} <= wheels
    assert not wheels & {'torch', 'torchvision', 'numpy', 'pillow'}          # the host's own builds
    for v in ('3.10', '3.11', '3.12', '3.13'):
        pins = (kit/'wheels'/f'constraints-{v}.txt').read_text().split()
        assert any(p.startswith('pyzmq==') for p in pins) and any(p.startswith('pyyaml==') for p in pins)
    assert sorted(f.name for f in (kit/'data'/'fashion_mnist').iterdir()) == sorted(
        ['train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz', 't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'])
    assert (kit/'COMMIT').read_text().strip()[:7] == subprocess.run(
        ['git', '-C', str(ROOT), 'rev-parse', 'HEAD'], capture_output=True, text=True).stdout[:7]


def test_run_sh_check_on_a_torch_only_host(kit, host, tmp_path):
    out = tmp_path/'out'
    r = run_kit(kit, host, out, '--check')
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    log = r.stdout              # also in OUT/run.log
    assert (out/'run.log').stat().st_size > 0
    assert 'Fashion-MNIST read from the kit, padded to 32 x 32: 60000 training and 10000 test images' in log
    assert 'gpu scale (configs/*.yaml scales.gpu)' in log and 'msl_resnet20' in (out/'benchmark.txt').read_text()
    # the environment has the kit's packages and the host's torch, and its kernel is its own
    probe = subprocess.run([str(out/'venv'/'bin'/'python'), '-c',
                            'import torch, papermill, ratio_losses, sys; print(torch.__file__); print(ratio_losses.__file__)'],
                           capture_output=True, text=True)
    torch_file, package = probe.stdout.split()
    assert not torch_file.startswith(str(out)) and package.startswith(str(ROOT))
    assert (out/'venv'/'share'/'jupyter'/'kernels'/'ratio_losses'/'kernel.json').is_file()
    # every distinct configuration of the six presets' gpu points: a record of two steps and the executed notebook
    sys.path.insert(0, str(ROOT))
    from ratio_losses.sweeps import expand_sweep, load_preset, smoke_key
    presets = [p for p in map(load_preset, sorted((ROOT/'configs').glob('*.yaml'))) if 'gpu' in p.get('scales', {})]
    want = {smoke_key(pt) for p in presets for pt in expand_sweep(p, 'gpu', tmp_path/'x')}
    records = list((out/'smoke'/'gpu').glob('*/*/record.json'))
    assert len(records) == len(want) >= 12 and len(presets) == 6
    for path in records:
        rec = json.loads(path.read_text())
        assert rec['status'] in ('complete', 'collapsed') and rec['history'][-1]['iteration'] == 2
        assert rec['config']['dataset_options'] == {'pad_to': 32}
        assert (path.parent/'notebook.ipynb').is_file()
    assert f"smoke run: {len(want)} of {len(want)} configurations passed" in log


def test_minutes_stops_the_sweep_as_ctrl_c_does_and_the_same_command_resumes(kit, host, tmp_path):
    out = tmp_path/'out'
    r = run_kit(kit, host, out, '--check', '--minutes', '0.1')    # 6 s of the sweep: its first points at most
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert 'gpu-kit: stopped after 0.1 min as asked; the same command resumes' in r.stdout
    first = {p.parent.name for p in (out/'smoke'/'gpu').glob('*/*/record.json')}
    r = run_kit(kit, host, out, '--check')
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    done = {p.parent.name for p in (out/'smoke'/'gpu').glob('*/*/record.json')}
    assert first < done and 'passed' in r.stdout and 'gpu-kit: done.' in r.stdout


def test_run_sh_says_in_one_line_what_the_host_lacks(kit, host, tmp_path):
    bare = torch_only_python(tmp_path/'bare', names=())
    r = run_kit(kit, bare, tmp_path/'a', '--check')
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        f"gpu-kit: {bare} has no torch torchvision numpy: the kit uses the host's own builds of torch, torchvision and numpy"]
    r = run_kit(kit, host, tmp_path/'b')       # no --check: this machine has no CUDA device
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        "gpu-kit: torch sees no CUDA device (torch.cuda.is_available() is False); on a machine without one, run with --check"]
    r = run_kit(kit, host, tmp_path/'c', '--presets', 'crl_table99')
    assert r.returncode == 1 and r.stderr.strip() == "gpu-kit: --presets: configs/crl_table99.yaml does not exist"
