"""Speed of the trainer against a minimal hand-written PyTorch loop, and the cost of running through papermill.

1. Training throughput (images/s): `ratio_losses.train.train_one_epoch` as `run_training` calls it (objective from
   `build_objective`, LambdaLR schedule stepped per batch, gradient scaler, loss/error sums, progress bar object) against
   the plainest loop over the same model, data, batch size and `TensorLoader`: forward, `F.cross_entropy`, zero_grad,
   backward, step. Rounds alternate the two and start each from the same weights; the ratio is the median over rounds.
   Target (issue "training loop"): >= 0.95x.
2. papermill overhead: wall time of one short run through `nbs/experiments/train.ipynb` (new kernel, imports, the run)
   against the same `run_training` call from this already-warm Python process.

    python benchmarks/trainer.py [--rounds 5] [--steps 60] [--device cpu] [--skip-papermill] [--quick]
"""
import argparse
import copy
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ratio_losses.core import get_device, seed_everything
from ratio_losses.data import TensorLoader, dataset_info, load_tensors
from ratio_losses.losses import build_objective
from ratio_losses.models import build_model
from ratio_losses.train import LRFactor, run_training, train_one_epoch

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
    p.add_argument('--quick', action='store_true', help='smoke run: digits, 1 round, 5 steps, papermill skipped')
    p.add_argument('--skip-papermill', action='store_true', help='measure the throughput only')
    a = p.parse_args()
    if a.quick: a.rounds, a.steps, a.dataset = 1, 5, 'digits'
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

    if a.quick or a.skip_papermill: return
    # papermill: the same short run (digits, 3 epochs) through the experiment notebook and from this process
    cfg = {'dataset': 'digits', 'epochs': 3, 'iterations': None, 'batch_size': 64, 'progress': False,
           'feature_images': 100}
    with tempfile.TemporaryDirectory() as tmp:
        run_training({**cfg, 'out_dir': f'{tmp}/warmup'})
        t = time.perf_counter(); run_training({**cfg, 'out_dir': f'{tmp}/python'}); in_python = time.perf_counter() - t
        args = [str(Path(sys.executable).parent/'papermill'), str(ROOT/'nbs'/'experiments'/'train.ipynb'),
                f'{tmp}/out.ipynb', '--no-progress-bar', '-p', 'out_dir', f'{tmp}/papermill']
        for k, v in cfg.items(): args += ['-p', k, str(v)]
        t = time.perf_counter(); r = subprocess.run(args, capture_output=True, text=True); through_pm = time.perf_counter() - t
        if r.returncode: sys.exit(f'papermill failed:\n{r.stderr[-3000:]}')
        # what a sweep worker pays per point: papermill is imported once per worker, each point starts a new kernel
        import papermill as pm
        from ratio_losses.executors import kernel_name
        t = time.perf_counter()
        pm.execute_notebook(str(ROOT/'nbs'/'experiments'/'train.ipynb'), f'{tmp}/out2.ipynb', kernel_name=kernel_name(),
                            parameters={**cfg, 'out_dir': f'{tmp}/papermill2'}, progress_bar=False)
        in_worker = time.perf_counter() - t
    print(f"\npapermill overhead, one run of 3 epochs on the digits:")
    print(f"  run_training from Python:                  {in_python:6.2f} s")
    print(f"  papermill command (imports papermill too): {through_pm:6.2f} s   (+{through_pm - in_python:.2f} s)")
    print(f"  papermill in a sweep worker (new kernel):  {in_worker:6.2f} s   (+{in_worker - in_python:.2f} s: kernel start, "
          f"imports, a cold first run)")


if __name__ == '__main__':
    main()
