"""Data-parallel training on CPU with gloo: N processes that share every global batch take the steps of one process.

`tests/ddp_train.py` trains the small CNN with its batch norms removed (BatchNorm's statistics are per process unless
sync_batchnorm, which needs CUDA) under each objective, in float64 so that the reordered float sums of N processes
differ by ~1e-16 rather than ~1e-7; CC-Loss's intra/inter ratio amplifies that difference (to ~1e-12 here, and to
~1e-2 in float32 after 12 steps), so its tolerance is wider."""
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.process

SCRIPT = Path(__file__).parents[1]/'ddp_train.py'
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'MASTER_ADDR': '127.0.0.1'}


def _torchrun(n: int, *args) -> list[str]:
    return [sys.executable, '-m', 'torch.distributed.run', '--nproc-per-node', str(n), '--master-port',
            str(random.randint(20000, 40000)), *args]


@pytest.fixture(scope='module')
def one_and_two(tmp_path_factory):
    d = tmp_path_factory.mktemp('ddp')
    for cmd in ([sys.executable, str(SCRIPT), str(d/'one.pt')], _torchrun(2, str(SCRIPT), str(d/'two.pt'))):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return torch.load(d/'one.pt', weights_only=False), torch.load(d/'two.pt', weights_only=False)


@pytest.mark.parametrize('case', ['ce', 'crl', 'cc', 'msl', 'center'])
def test_two_processes_take_the_steps_of_one(one_and_two, case):
    one, two = one_and_two
    assert (one['world'], two['world']) == (1, 2)
    a, b = one[case], two[case]
    tol = 1e-9 if case == 'cc' else 1e-13
    for name in a['state']:
        torch.testing.assert_close(b['state'][name], a['state'][name], rtol=0, atol=tol, msg=f'{case}: {name}')
    for ea, eb in zip(a['epochs'], b['epochs']):           # the training metrics are those of the global batches
        assert eb['seen'] == ea['seen'] and eb['top1_error'] == ea['top1_error']
        assert eb['loss'] == pytest.approx(ea['loss'], rel=0, abs=tol)
        for k in ea['terms']: assert eb['terms'][k] == pytest.approx(ea['terms'][k], rel=0, abs=tol)
    assert b['value'] == pytest.approx(a['value'], rel=0, abs=tol)   # the objective of one global batch
    for k, v in a['objective_state'].items():                        # MSL's ξ and windows, the class centres
        if isinstance(v, torch.Tensor): torch.testing.assert_close(b['objective_state'][k], v, rtol=0, atol=tol, equal_nan=True)


def test_mixup_and_cutmix_train_under_data_parallelism(one_and_two):
    """Each process mixes its own share of the batch (as torchvision's references do), so N processes do not take the
    steps of one here; the class probabilities are gathered with the outputs, and the run trains."""
    for res in one_and_two:
        mixed, plain = res['crl mixed'], res['crl']
        assert all(torch.isfinite(torch.tensor(e['loss'])) for e in mixed['epochs'])
        assert mixed['epochs'][0]['loss'] != plain['epochs'][0]['loss']           # the targets were mixed ...
        assert any(not torch.equal(mixed['state'][k], plain['state'][k]) for k in plain['state'])   # ... and trained on


def test_the_batch_level_terms_are_active(one_and_two):
    "The comparison above is only a check of CC, MSL and center loss if their terms are not zero."
    one, _ = one_and_two
    for case, term in (('cc', 'cc'), ('msl', 'msl'), ('center', 'center')):
        assert all(e['terms'][term] > 1e-6 for e in one[case]['epochs']), (case, one[case]['epochs'])


def test_sync_batchnorm_on_cpu_is_a_one_line_error(tmp_path):
    r = subprocess.run(_torchrun(2, '-m', 'ratio_losses.cli', 'train', '--dataset', 'digits', '--epochs', '1',
                                 '--device', 'cpu', '--set', 'sync_batchnorm=true', '--out-dir', str(tmp_path/'run'),
                                 '--no-progress'),
                       capture_output=True, text=True, timeout=300, env=ENV)
    assert r.returncode != 0
    assert "sync_batchnorm=True needs CUDA devices" in r.stderr
    assert not (tmp_path/'run'/'record.json').exists()
