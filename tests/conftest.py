import os
import sys
from pathlib import Path

import pytest

# Pin this process's CPU kernels before torch first computes, as `ratio-losses` and sweeps do for theirs, so that runs
# with the default cpu_isa='avx2' can start here (see ratio_losses.core: numerics).
os.environ.update({'ATEN_CPU_CAPABILITY': 'avx2', 'ONEDNN_MAX_CPU_ISA': 'AVX2', 'MKL_CBWR': 'AVX2'})

sys.path.insert(0, str(Path(__file__).parent))  # tests/layouts.py


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    "Every test gets its own cache directory and no $RATIO_LOSSES_DATA, so tests cannot see each other's files."
    monkeypatch.setenv('RATIO_LOSSES_CACHE', str(tmp_path_factory.mktemp('cache')))
    monkeypatch.delenv('RATIO_LOSSES_DATA', raising=False)


@pytest.fixture
def fashion_mnist_dir():
    """Debian's Fashion-MNIST folder. Skipped where it is not installed, except in CI (`CI` set), where
    `make test` installs it and a missing copy must fail rather than skip."""
    from ratio_losses.data import DEBIAN_FASHION_MNIST
    if not (DEBIAN_FASHION_MNIST/'train-images-idx3-ubyte.gz').is_file():
        msg = f'Fashion-MNIST is not in {DEBIAN_FASHION_MNIST} (apt-get install dataset-fashion-mnist)'
        if os.environ.get('CI'): pytest.fail(msg)
        pytest.skip(msg)
    return DEBIAN_FASHION_MNIST


def pytest_addoption(parser):
    parser.addoption('--run-slow', action='store_true', help='also run the tests marked slow (make smoke-test)')


# The tiers (see the README's Tests): tests/unit/ runs in this process; tests/integration/ starts real processes
# (`process`), Jupyter kernels through papermill (`kernel`), a one-node Slurm (`slurm`), the docs site in Chromium
# (`browser`), runs the same work twice to compare the bits (`determinism`), or builds the GPU kit and runs it on a
# torch-only environment (`kit`). `make test` leaves out the last four, `make test-all` runs them all.
TIERS = {'unit': 'in-process tests (tests/unit/)',
         'process': 'starts Python processes (the CLI, torchrun, a killed run)',
         'kernel': 'runs Jupyter kernels through papermill (sweeps, the experiment and analysis notebooks)',
         'slurm': 'submits to a real one-node Slurm cluster (tests/slurm_cluster.py)',
         'browser': 'builds the docs site and opens it in Chromium',
         'determinism': 'runs the same work twice (or against a committed reference) and compares the bits',
         'kit': 'builds the GPU kit from the package registry and runs it in a torch-only environment (tests/torch_only.py)'}


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: long tests (the smoke run of every paper-scale point); need --run-slow')
    for name, what in TIERS.items(): config.addinivalue_line('markers', f'{name}: {what}')


def pytest_collection_modifyitems(config, items):
    unit = Path(__file__).parent/'unit'
    for item in items:
        if unit in Path(item.fspath).parents: item.add_marker(pytest.mark.unit)
        if 'slurm' in getattr(item, 'fixturenames', ()): item.add_marker(pytest.mark.slurm)   # the cluster fixture
    if config.getoption('--run-slow'): return
    skip = pytest.mark.skip(reason='slow: run with --run-slow (make smoke-test)')
    for item in items:
        if 'slow' in item.keywords: item.add_marker(skip)
