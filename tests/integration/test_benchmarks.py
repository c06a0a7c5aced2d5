"""The benchmark scripts still run (smoke mode: tiny sizes, one round). They measure; nothing here asserts a speed."""
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.process

ROOT = Path(__file__).parents[2]


@pytest.mark.parametrize('script,expect', [
    ('data_pipeline.py', ['pipeline alone', 'DataLoader + PIL, 2 workers', 'end to end']),
    ('losses.py', ['competing_ratio_loss', 'gradient_boosting_cross_entropy', 'checks off', 'lgm_loss', 'mutual_channel_loss']),
    ('trainer.py', ['minimal hand-written loop', 'ratio_losses train_one_epoch', 'target >= 0.95x', 'sweep overhead',
                    'through papermill, kept kernel (one per worker)', 'through papermill, new kernel per point']),
    ('gpu.py', ['cifar_resnet18', 'vgg16_bn', 'bf16', 'tensor pipeline alone', 'CRL (competing_ratio_loss)',
                'GCE k=15', 'CC-Loss (channel_correlation_loss)']),
    ('executors.py', ['debug (in this process)', 'local (submitit processes)', 'overhead per job']),
    ('numerics.py', ['native (this CPU)', 'pinned (cpu_isa avx2, the default)', 'pinned / native']),
])
def test_benchmark_runs(script, expect, fashion_mnist_dir):
    r = subprocess.run([sys.executable, str(ROOT/'benchmarks'/script), '--quick'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for text in expect: assert text in r.stdout
    assert 'smoke run, not a measurement' in r.stdout
