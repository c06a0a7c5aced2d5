"""The speed cost of pinning the CPU kernels to AVX2 (cpu_isa='avx2', the default) against this CPU's own kernels
(cpu_isa='native'), measured in the same run.

Each round trains the same short run twice, once per setting, each in a fresh Python process (the kernels can only be
chosen before a process first computes): Fashion-MNIST, the small CNN, one epoch of a class-stratified subset, one
thread, as the CPU profile's points run. The table gives each setting's median training seconds over the rounds and
the ratio pinned / native; rounds alternate which setting goes first, so drifts of a shared machine hit both. On a CPU
without AVX-512 the two are the same kernels and the ratio is about 1.

    python benchmarks/numerics.py [--rounds 3] [--subset 10000] [--quick]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

from ratio_losses.core import numeric_env, numerics_info

CODE = """
import json, sys, tempfile
from ratio_losses.training import run_training
cfg = json.loads(sys.argv[1])
with tempfile.TemporaryDirectory() as d:
    rec = run_training({**cfg, 'out_dir': d})
print(json.dumps({'seconds': rec['train_seconds'], 'capability': rec['numerics']['aten_cpu_capability'],
                  'test_error': rec['final']['test_error']}))
"""


def one_run(cpu_isa: str, subset: int) -> dict:
    cfg = {'dataset': 'fashion_mnist', 'subset': subset, 'test_subset': 2000, 'epochs': 1, 'batch_size': 128,
           'threads': 1, 'cpu_isa': cpu_isa, 'save_model': False, 'softmax_images': 0, 'feature_images': 0,
           'progress': False}
    env = {k: v for k, v in os.environ.items() if k not in numeric_env('avx2')}   # each process pins itself
    out = subprocess.run([sys.executable, '-c', CODE, json.dumps(cfg)], capture_output=True, text=True, env=env,
                         timeout=1800)
    if out.returncode: raise SystemExit(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--subset', type=int, default=10000, help='training images of the run (one epoch)')
    p.add_argument('--quick', action='store_true', help='one round of a tiny run: a smoke run, not a measurement')
    a = p.parse_args()
    rounds, subset = (1, 500) if a.quick else (a.rounds, a.subset)
    info = numerics_info()
    print(f"{info['cpu_model']} ({', '.join(info['cpu_flags'])}) | Fashion-MNIST, small CNN, 1 epoch of {subset} images, "
          f"1 thread | {rounds} round(s)")
    secs = {'avx2': [], 'native': []}
    caps = {}
    for r in range(rounds):
        for isa in (('avx2', 'native') if r % 2 == 0 else ('native', 'avx2')):
            res = one_run(isa, subset)
            secs[isa].append(res['seconds']); caps[isa] = res['capability']
    med = {k: statistics.median(v) for k, v in secs.items()}
    print(f"{'setting':34}{'kernels':>10}{'train s (median)':>20}")
    print(f"{'native (this CPU)':34}{caps['native']:>10}{med['native']:20.2f}")
    print(f"{'pinned (cpu_isa avx2, the default)':34}{caps['avx2']:>10}{med['avx2']:20.2f}")
    print(f"pinned / native: {med['avx2'] / med['native']:.2f}x")
    if a.quick: print('[--quick: a smoke run, not a measurement]')


if __name__ == '__main__':
    main()
