"""Per-job overhead of the sweep executors: the same tiny points through `debug` (in this process), `local`
(submitit processes on this machine) and, where a Slurm is reachable, `slurm` (a job array), all in one run.

Each executor runs the same N points (digits, small CNN, a few steps) into its own runs root, one point at a time
(workers 1), so that the wall time of the sweep divided by N is the cost of a point, and the difference to `debug`
is what the executor adds per job (process start, pickling, submitit's polling; for Slurm, scheduling too). The
papermill cost of a point (a new kernel, imports) is in these rows alike: the `debug` row is the baseline. The last
local row is the local executor's default, a worker that keeps its kernel across points (`points_per_job` unset):
there the kernel's start and the imports are paid once, not per point.

    python benchmarks/executors.py [--points 4] [--steps 5] [--slurm auto|no|test-cluster] [--quick]

`--slurm auto` uses the Slurm of SLURM_CONF / sbatch on PATH where there is one; `test-cluster` starts the tests'
one-node cluster (tests/slurm_cluster.py: root, Debian's slurm packages) for the run and stops it by PID.
"""
import argparse
import contextlib
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def preset(points: int, steps: int) -> dict:
    return {'name': 'executor_bench', 'scales': {'cpu': {
        'fixed': {'dataset': 'digits', 'backbone': 'small_cnn', 'epochs': None, 'iterations': steps, 'batch_size': 32,
                  'subset': 200, 'test_subset': 200, 'save_model': False, 'feature_images': 0, 'softmax_images': 0,
                  'progress': False, 'tensorboard': False},
        'grid': {'lr': [0.01 * (i + 1) for i in range(points)]}, 'seeds': [0]}}}


def timed_sweep(executor: str, points: int, steps: int, root: Path, extra: dict | None = None) -> float:
    from ratio_losses.sweeps.sweep import run_sweep
    t = time.perf_counter()
    res = run_sweep(preset(points, steps), 'cpu', runs_root=root/executor, progress=False, print_summary=False,
                    launcher={'executor': executor, 'workers': 1, **(extra or {})})
    seconds = time.perf_counter() - t
    bad = [r for r in res if r['status'] in ('failed', 'claimed', 'submitted')]
    if bad: sys.exit(f"{executor}: {len(bad)} point(s) did not run: {bad[0].get('error', bad[0]['status'])}")
    return seconds


@contextlib.contextmanager
def slurm_env(mode: str):
    "Yields the environment changes that reach a Slurm, or None where there is none (mode auto) / it is not wanted."
    import os
    if mode == 'no': yield None; return
    if mode == 'test-cluster':
        sys.path.insert(0, str(ROOT/'tests'))
        from slurm_cluster import slurm_cluster
        with slurm_cluster() as env:
            saved = {k: os.environ.get(k) for k in ('SLURM_CONF', 'PATH')}
            os.environ.update(SLURM_CONF=env['SLURM_CONF'], PATH=env['PATH'])
            try: yield env
            finally:
                for k, v in saved.items():
                    if v is None: os.environ.pop(k, None)
                    else: os.environ[k] = v
        return
    yield {} if shutil.which('sbatch') else None


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--points', type=int, default=4)
    p.add_argument('--steps', type=int, default=5, help='optimiser steps per point')
    p.add_argument('--slurm', choices=['auto', 'no', 'test-cluster'], default='auto')
    p.add_argument('--quick', action='store_true', help='smoke run: 1 point of 2 steps, no Slurm')
    a = p.parse_args()
    if a.quick: a.points, a.steps, a.slurm = 1, 2, 'no'
    if a.points < 1 or a.steps < 1: sys.exit('--points and --steps must be at least 1')
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        timed_sweep('debug', 1, a.steps, root/'warmup')             # first imports and the first kernel start
        rows['debug (in this process)'] = timed_sweep('debug', a.points, a.steps, root)
        rows['local (submitit processes)'] = timed_sweep('local', a.points, a.steps, root, {'points_per_job': 1})
        rows['local, one kept kernel'] = timed_sweep('local', a.points, a.steps, root/'kept')
        with slurm_env(a.slurm) as env:
            if env is None: slurm_note = 'slurm: not measured (no sbatch here; --slurm test-cluster starts one as root)'
            else:
                rows['slurm (job array, %1)'] = timed_sweep('slurm', a.points, a.steps, root, {'time_min': 10, 'cpus': 1})
                slurm_note = ''
    base = rows['debug (in this process)'] / a.points
    print(f"# executor overhead | {platform.processor() or platform.machine()} | torch {torch.__version__} | "
          f"{a.points} points of {a.steps} steps (digits, small CNN), one at a time")
    if a.quick: print('(smoke run, not a measurement)')
    print(f"{'executor':32} {'s per point':>12} {'overhead per job':>17} {'ratio to debug':>15}")
    for name, seconds in rows.items():
        per = seconds / a.points
        print(f"{name:32} {per:12.2f} {per - base:+16.2f}s {per / base:14.2f}x")
    if slurm_note: print(slurm_note)


if __name__ == '__main__':
    main()
