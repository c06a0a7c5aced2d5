"""Speed of the trainer against a minimal hand-written PyTorch loop, and the cost of running through papermill.

1. Training throughput (images/s): `ratio_losses.training.train_one_epoch` as `run_training` calls it (objective from
   `build_objective`, LambdaLR schedule stepped per batch, gradient scaler, loss/error sums, progress bar object) against
   the plainest loop over the same model, data, batch size and `TensorLoader`: forward, `F.cross_entropy`, zero_grad,
   backward, step. Rounds alternate the two and start each from the same weights; the ratio is the median over rounds.
   Target (issue "training loop"): >= 0.95x.
2. Sweep overhead: the same cpu-scale points (of --preset) from this warm process, then through the experiment
   notebook (papermill) by one local worker that keeps its kernel, and by one that starts a new kernel per point.
   Per point after each worker's first, the time beyond the in-process run. Target (issue 18): <= 10 % of a point.

    python benchmarks/trainer.py [--rounds 5] [--steps 60] [--device cpu] [--preset crl_table4] [--points 6]
                                 [--skip-papermill] [--quick]
"""
import argparse
import contextlib
import copy
import io
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ratio_losses.core import get_device, pin_numerics, seed_everything
from ratio_losses.data import TensorLoader, dataset_info, load_tensors
from ratio_losses.losses import build_objective
from ratio_losses.models import build_model
from ratio_losses.training import LRFactor, run_training, train_one_epoch

ROOT = Path(__file__).resolve().parents[1]


def minimal_loop(model, optimizer, loader, steps):
    model.train()
    for i, (x, y) in enumerate(loader):
        loss = F.cross_entropy(model(x).logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i + 1 == steps: break
    return loss.item()                                   # one sync at the end, as the trainer does


def trainer_loop(model, optimizer, loader, steps, device, channels_last):
    objective = build_objective({'ce': {}}).to(device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, LRFactor({'name': 'cosine'}, 0.05, len(loader), 10 * len(loader)))
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    return train_one_epoch(model, objective, optimizer, loader, device, scheduler=scheduler, scaler=scaler,
                           channels_last=channels_last, max_steps=steps, progress=False)['loss']


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--rounds', type=int, default=5)
    p.add_argument('--steps', type=int, default=60, help='batches per timing')
    p.add_argument('--batch-size', type=int, default=128)
    p.add_argument('--dataset', default='fashion_mnist')
    p.add_argument('--device', default='auto')
    p.add_argument('--quick', action='store_true', help='smoke run: digits, 1 round, 5 steps, 3 tiny sweep points')
    p.add_argument('--skip-papermill', action='store_true', help='measure the throughput only')
    p.add_argument('--preset', default='crl_table4', help='the preset whose cpu-scale points time the sweep overhead')
    p.add_argument('--points', type=int, default=6, help='points per way of running them (the first is left out)')
    a = p.parse_args()
    if a.quick: a.rounds, a.steps, a.dataset, a.points = 1, 5, 'digits', 3
    if a.points < 2: p.error('--points must be at least 2: the first point of a worker is left out')
    pin_numerics('avx2')          # as a sweep's points run (their cpu_isa), before anything computes
    device = get_device(a.device)
    channels_last = device.type != 'mps'
    info = dataset_info(a.dataset)
    tr = load_tensors(a.dataset, 'train')
    loader = TensorLoader(tr.images, tr.labels, a.batch_size, seed=0, drop_last=True, mean=info.mean, std=info.std,
                          device=device, channels_last=channels_last)
    seed_everything(0)
    base = build_model('small_cnn', in_channels=info.image_shape[0], num_classes=info.num_classes).to(device)
    if channels_last: base.to(memory_format=torch.channels_last)
    sync = (lambda: torch.cuda.synchronize()) if device.type == 'cuda' else (lambda: None)

    def timed(which):
        model = copy.deepcopy(base)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
        loader.set_epoch(0)
        sync(); t = time.perf_counter()
        if which == 'minimal': minimal_loop(model, opt, loader, a.steps)
        else: trainer_loop(model, opt, loader, a.steps, device, channels_last)
        sync()
        return a.steps * a.batch_size / (time.perf_counter() - t)

    timed('minimal'); timed('trainer')                    # warm-up
    rows = {'minimal': [], 'trainer': []}
    for r in range(a.rounds):
        order = ('minimal', 'trainer') if r % 2 == 0 else ('trainer', 'minimal')
        for which in order: rows[which].append(timed(which))
    ratios = [t / m for t, m in zip(rows['trainer'], rows['minimal'])]
    print(f"# trainer benchmark | {platform.processor() or platform.machine()} | torch {torch.__version__} | device "
          f"{device} ({torch.get_num_threads()} threads) | {a.dataset}, small CNN, batch {a.batch_size}, {a.steps} steps, "
          f"{a.rounds} rounds")
    if a.quick: print('(smoke run, not a measurement)')
    print(f"{'loop':30} {'images/s (median)':>18} {'ratio to minimal':>17}")
    print(f"{'minimal hand-written loop':30} {statistics.median(rows['minimal']):18,.0f} {'1.00x':>17}")
    print(f"{'ratio_losses train_one_epoch':30} {statistics.median(rows['trainer']):18,.0f} "
          f"{statistics.median(ratios):16.3f}x   (target >= 0.95x; per round: {', '.join(f'{r:.3f}' for r in ratios)})")

    if a.skip_papermill: return
    sweep_overhead(a.preset, a.points, a.quick)


def sweep_overhead(preset: str, n: int, quick: bool):
    """The time around `run_training` per sweep point: the same points from this warm process (the baseline), then
    through the experiment notebook by one local worker that keeps its kernel, and by one that starts a new kernel for
    every point (points_per_job=1, the executor before kept kernels). The first point of each is left out of the means:
    it pays for the imports and the cold first step, once per worker."""
    from ratio_losses.sweeps.launcher import Launcher
    from ratio_losses.sweeps.executors import run_points
    from ratio_losses.sweeps.kernels import kernel_name
    from ratio_losses.sweeps.presets import EXPERIMENT_NOTEBOOK, expand_sweep, load_preset
    if quick:
        spec = {'name': 'quick', 'fixed': {'dataset': 'digits', 'batch_size': 64, 'iterations': 6, 'epochs': None,
                                           'feature_images': 0, 'softmax_images': 0}, 'seeds': list(range(n))}
    else: spec = load_preset(ROOT/'configs'/f'{preset}.yaml')
    with tempfile.TemporaryDirectory() as tmp:
        points = expand_sweep(spec, 'cpu', f'{tmp}/python')[:n]
        configs = [{**p.config, 'progress': False} for p in points]
        quiet = lambda: contextlib.redirect_stdout(io.StringIO())               # the runs' epoch lines
        with quiet(): run_training({**configs[0], 'out_dir': f'{tmp}/warmup'})   # this process warm, as the kernel will be
        in_python = []
        for c in configs:
            with quiet():
                t = time.perf_counter(); run_training(c); in_python.append(time.perf_counter() - t)
        through = {}
        for label, per_job in (('kept kernel (one per worker)', None), ('new kernel per point', 1)):
            items = [(i, {**c, 'out_dir': c['out_dir'].replace(f'{tmp}/python', f'{tmp}/{per_job}'),
                          'results_table': f'{tmp}/{per_job}/results.csv'}) for i, c in enumerate(configs)]
            t = time.perf_counter()
            res = run_points(items, Launcher(executor='local', workers=1, points_per_job=per_job), f'{tmp}/jobs{per_job}',
                             notebook=str(EXPERIMENT_NOTEBOOK), kernel=kernel_name())
            wall = time.perf_counter() - t
            bad = [r for r in res.values() if r['status'] not in ('done', 'collapsed')]   # six steps: often at chance
            if bad: sys.exit(f"a point failed through papermill:\n{bad[0].get('error', '')[-3000:]}")
            runs = [json.loads((Path(items[i][1]['out_dir'])/'record.json').read_text())['wall_seconds'] for i in range(n)]
            through[label] = ([res[i]['seconds'] for i in range(n)], runs, wall)
    base = statistics.mean(in_python[1:])
    print(f"\nsweep overhead: {n} cpu-scale points of {spec['name']} (1 worker; means over points 2-{n}; "
          f"{'smoke run, not a measurement' if quick else 'seconds per point'})")
    print(f"  {'run_training from this warm process (baseline)':48} {base:7.2f} s")
    for label, (seconds, runs, wall) in through.items():
        point, around = statistics.mean(seconds[1:]), statistics.mean(s - r for s, r in zip(seconds[1:], runs[1:]))
        print(f"  {'through papermill, ' + label:48} {point:7.2f} s   overhead vs baseline {100 * (point / base - 1):+6.1f} %"
              f"   around its own run_training {around:5.2f} s   (first point {seconds[0]:.1f} s; all {n}: {wall:.1f} s wall)")
    print("  target: the kept kernel's overhead vs baseline <= 10 % of a point")


if __name__ == '__main__':
    main()
