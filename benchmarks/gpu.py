"""GPU benchmark, prepared for the day a GPU is lent: one command, under 5 minutes, a table on stdout.

On synthetic CIFAR-shaped data (uint8 images of 3x32x32 held on the device, 100 classes), each row measured against a
baseline timed in the same run:

1. Training throughput (images/s): `ratio_losses.training.train_one_epoch` (objective from `build_objective`, LambdaLR
   stepped per batch, gradient scaler, loss/error sums kept on the device) against a minimal hand-written loop over
   the same model, data and `TensorLoader` (crop + flip on the device), for a CIFAR ResNet-18 and VGG-16-BN, each
   with and without bf16 autocast and channels_last.
2. `--compile` (optional, a separate pass: compiling alone can take minutes): the same, the model through
   `torch.compile`, bf16 + channels_last; its compile time is printed apart.
3. The tensor pipeline alone: images/s of `TensorLoader` batches (crop, flip, normalisation on the device).
4. Losses: forward + backward of CRL, GCE (k = 15) and CC-Loss (attention of width 512) against `F.cross_entropy`
   on the same logits, at C = 100 and C = 1000, batch 512.
5. The `gpu` scale (configs/*.yaml, scales.gpu): the trainer's images/s for each backbone those presets train, at their
   batch, autocast and layout, on Fashion-MNIST-shaped data (1x32x32, 10 classes); then each preset's seconds per run
   by its own rule (`presets.run_seconds`) from these rates, beside the rates its `cost` section assumes.
   `--scale-only` runs this part alone (what gpu-kit/run.sh does before it trains).

Needs torch and this package (with numpy, PyYAML, tqdm); no Jupyter stack, no dataset, no network.

    python benchmarks/gpu.py [--device cuda] [--compile] [--steps 40] [--batch-size 512]
    python benchmarks/gpu.py --scale-only     # only the gpu scale's rates and cost (about a minute)
    python benchmarks/gpu.py --quick          # CPU smoke run of every path but compile (the tests run it)
"""
import argparse
import copy
import importlib.util
import platform
import statistics
import sys
import time
from pathlib import Path

if importlib.util.find_spec('ratio_losses') is None:          # not installed: the working tree is enough
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
MISSING = [m for m in ('torch', 'numpy', 'yaml', 'tqdm') if importlib.util.find_spec(m) is None]
if MISSING:
    sys.exit(f"benchmarks/gpu.py needs {', '.join(MISSING)} (pip install {' '.join(MISSING).replace('yaml', 'pyyaml')})")

import torch                                   # noqa: E402
import torch.nn.functional as F                # noqa: E402

from ratio_losses.data.loaders import TensorLoader  # noqa: E402
from ratio_losses.data.registry import dataset_info  # noqa: E402
from ratio_losses.losses import build_objective  # noqa: E402
from ratio_losses.models import build_model  # noqa: E402
from ratio_losses.losses.cc import channel_correlation_loss  # noqa: E402
from ratio_losses.losses.crl import competing_ratio_loss
from ratio_losses.losses.gce import gradient_boosting_cross_entropy
from ratio_losses.training.config import amp_autocast  # noqa: E402
from ratio_losses.training.schedules import LRFactor  # noqa: E402
from ratio_losses.training import train_one_epoch  # noqa: E402

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
FASHION = dataset_info('fashion_mnist')   # the gpu scale's data: its normalisation
BACKBONES = ('cifar_resnet18', 'vgg16_bn')
CONFIGS = Path(__file__).resolve().parents[1] / 'configs'


def synchronize(device):
    if device.type == 'cuda': torch.cuda.synchronize(device)


def synthetic_loader(n: int, num_classes: int, batch_size: int, device, channels_last: bool,
                     channels: int = 3) -> TensorLoader:
    "CIFAR-shaped uint8 images (`channels` x 32 x 32) and labels made on `device`, batched with crop (padding 4) and flip there."
    g = torch.Generator(device='cpu').manual_seed(0)
    images = torch.randint(0, 256, (n, channels, 32, 32), dtype=torch.uint8, generator=g).to(device)
    labels = torch.randint(0, num_classes, (n,), generator=g).to(device)
    mean, std = (CIFAR_MEAN, CIFAR_STD) if channels == 3 else (FASHION.mean, FASHION.std)
    return TensorLoader(images, labels, batch_size, seed=0, drop_last=True, crop_padding=4, hflip=True,
                        mean=mean, std=std, device=device, channels_last=channels_last)


def minimal_loop(model, optimizer, loader, steps, device, amp):
    "The plainest loop: forward, cross-entropy, zero_grad, backward, step."
    model.train()
    for i, (x, y) in enumerate(loader):
        with amp_autocast(device, amp):
            loss = F.cross_entropy(model(x).logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i + 1 == steps: break
    return loss.item()


def trainer_loop(model, optimizer, loader, steps, device, amp, channels_last):
    "The trainer's epoch as `run_training` calls it."
    objective = build_objective({'ce': {}}).to(device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, LRFactor({'name': 'cosine'}, 0.05, len(loader), 10 * len(loader)))
    scaler = torch.amp.GradScaler(device.type, enabled=amp == 'fp16')
    return train_one_epoch(model, objective, optimizer, loader, device, scheduler=scheduler, scaler=scaler, amp=amp,
                           channels_last=channels_last, max_steps=steps, progress=False)['loss']


def images_per_s(fn, steps, batch_size, device) -> float:
    synchronize(device); t = time.perf_counter()
    fn()
    synchronize(device)
    return steps * batch_size / (time.perf_counter() - t)


def training_rows(a, device, compiled: bool = False):
    "Per backbone and setting: the minimal loop's and the trainer's images/s (medians over rounds) and their ratio."
    settings = [('bf16', True)] if compiled else [('none', False), ('none', True), ('bf16', False), ('bf16', True)]
    rows = []
    for backbone in BACKBONES:
        for amp, cl in settings:
            loader = synthetic_loader(a.batch_size * (a.steps + a.warmup), 100, a.batch_size, device, cl)
            torch.manual_seed(0)
            base = build_model(backbone, num_classes=100).to(device)
            if cl: base = base.to(memory_format=torch.channels_last)
            compile_s = None
            def fresh():
                model = copy.deepcopy(base)
                opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
                return (torch.compile(model) if compiled else model), opt
            kept = fresh() if compiled else None       # compiled once, then reused: a new module would compile again
            def run(which, steps):
                model, opt = kept or fresh()
                loader.set_epoch(0)
                if which == 'minimal': return lambda: minimal_loop(model, opt, loader, steps, device, amp)
                return lambda: trainer_loop(model, opt, loader, steps, device, amp, cl)
            if compiled:
                t = time.perf_counter(); run('trainer', a.warmup)(); synchronize(device); compile_s = time.perf_counter() - t
            for which in ('minimal', 'trainer'): run(which, a.warmup)()         # warm-up: kernels chosen, caches filled
            got = {'minimal': [], 'trainer': []}
            for r in range(a.rounds):
                for which in (('minimal', 'trainer') if r % 2 == 0 else ('trainer', 'minimal')):
                    got[which].append(images_per_s(run(which, a.steps), a.steps, a.batch_size, device))
            ratios = [t / m for t, m in zip(got['trainer'], got['minimal'])]
            rows.append((backbone, amp, cl, statistics.median(got['minimal']), statistics.median(got['trainer']),
                         statistics.median(ratios), compile_s))
    return rows


def pipeline_rate(a, device) -> float:
    "images/s of the tensor pipeline alone: every batch of one epoch made and touched."
    loader = synthetic_loader(a.batch_size * a.steps * 4, 100, a.batch_size, device, True)
    def epoch():
        total = torch.zeros((), device=device)
        for x, _ in loader: total += x[0, 0, 0, 0]
        return total.item()
    epoch()
    return images_per_s(epoch, len(loader), a.batch_size, device)


def loss_rows(a, device):
    "ms per forward + backward of each loss and its ratio to cross-entropy's, at C = 100 and 1000."
    losses = {'cross_entropy': lambda z, y, q: F.cross_entropy(z, y),
              'CRL (competing_ratio_loss)': lambda z, y, q: competing_ratio_loss(z, y),
              'GCE k=15 (gradient_boosting_ce)': lambda z, y, q: gradient_boosting_cross_entropy(z, y, k=15),
              'CC-Loss (channel_correlation_loss)': lambda z, y, q: channel_correlation_loss(z, y, q)}
    rows, n = [], a.loss_batch
    for C in (100, 1000):
        g = torch.Generator(device='cpu').manual_seed(C)
        logits = torch.randn(n, C, generator=g).to(device).requires_grad_()
        target = torch.randint(0, C, (n,), generator=g).to(device)
        attention = torch.rand(n, 512, generator=g).to(device).requires_grad_()
        ms = {}
        for name, fn in losses.items():
            def step():
                for _ in range(a.loss_reps):
                    logits.grad = attention.grad = None
                    fn(logits, target, attention).backward()
            step()
            synchronize(device); t = time.perf_counter()
            step()
            synchronize(device); ms[name] = 1000 * (time.perf_counter() - t) / a.loss_reps
        rows += [(C, name, v, v / ms['cross_entropy']) for name, v in ms.items()]
    return rows


def gpu_scale_presets():
    "The presets of configs/ with a `gpu` scale that states a cost: (name, fixed run-config keys, cost, backbones)."
    from ratio_losses.sweeps.presets import load_preset, scale_backbones   # needs the experiments extra
    out = []
    for path in sorted(CONFIGS.glob('*.yaml')):
        p = load_preset(path)
        if ((p.get('scales') or {}).get('gpu') or {}).get('cost'):
            out.append((p['name'], *scale_backbones(p, 'gpu'), p['scales']['gpu']['cost']))
    return out


def setting(fixed: dict, backbone: str) -> tuple:
    "What the gpu-scale rate of `backbone` depends on: (backbone, batch, autocast, channels_last)."
    return backbone, fixed['batch_size'], fixed.get('amp', 'none'), fixed.get('channels_last', True)


def gpu_scale_rows(a, device, presets):
    "Per setting of the gpu scale: the trainer's images/s (median over rounds) at the scale's batch, amp and layout."
    rates = {}
    for key in {setting(fixed, b): None for _, fixed, backbones, _ in presets for b in backbones}:
        b, batch, amp, cl = key
        batch = 2 if a.quick else batch
        amp = 'none' if device.type == 'cpu' else amp
        loader = synthetic_loader(batch * (a.steps + a.warmup), 10, batch, device, cl, channels=1)
        torch.manual_seed(0)
        model = build_model(b, num_classes=10, in_channels=1).to(device)
        if cl: model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
        loader.set_epoch(0); trainer_loop(model, opt, loader, a.warmup, device, amp, cl)
        got = []
        for _ in range(a.rounds):
            loader.set_epoch(0)
            got.append(images_per_s(lambda: trainer_loop(model, opt, loader, a.steps, device, amp, cl), a.steps, batch, device))
        rates[key] = statistics.median(got)
    return rates


def print_gpu_scale(a, device):
    try:
        presets = gpu_scale_presets()
    except ImportError as e:
        print(f"\ngpu scale: skipped ({e})"); return
    from ratio_losses.sweeps.presets import expand_sweep, run_seconds
    rates = gpu_scale_rows(a, device, presets)
    print("\ngpu scale (configs/*.yaml scales.gpu), trainer on 1x32x32 synthetic data, 10 classes:")
    print(f"{'backbone':16} {'batch':>5} {'autocast':8} {'channels_last':13} {'img/s':>10}")
    for (b, bs, amp, cl), r in rates.items(): print(f"{b:16} {bs:5} {amp:8} {str(cl):13} {r:10,.0f}")
    print(f"\n{'preset':12} {'backbone':14} {'points':>6} {'assumed s/run':>13} {'measured s/run':>14} {'all points, min':>15}")
    total = 0.0
    for name, fixed, backbones, cost in presets:
        points = expand_sweep(CONFIGS / f'{name}.yaml', 'gpu', '/tmp/ratio-losses-dry')
        for b in backbones:
            s = run_seconds(fixed, cost['train_images'], rates[setting(fixed, b)], cost.get('overhead_s', 0))
            n = sum(p.config['backbone'] == b for p in points)
            total += n * s
            print(f"{name:12} {b:14} {n:6} {cost['seconds_per_run'][b]:13} {s:14.0f} {n * s / 60:15.1f}")
    print(f"every gpu-scale point once (runs shared between presets counted in each): {total / 60:.0f} min"
          + (' (CPU smoke sizes: not an estimate)' if a.quick else ''))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--device', default='cuda')
    p.add_argument('--steps', type=int, default=40, help='batches per timing')
    p.add_argument('--warmup', type=int, default=10, help='batches before timing (kernel choice, caches)')
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--batch-size', type=int, default=512)
    p.add_argument('--loss-batch', type=int, default=512)
    p.add_argument('--loss-reps', type=int, default=50)
    p.add_argument('--compile', action='store_true', help='add the torch.compile pass (compile time printed apart)')
    p.add_argument('--quick', action='store_true', help='CPU smoke run: tiny sizes, every path but compile')
    p.add_argument('--scale-only', action='store_true', help="only the gpu scale's rates and cost per run (section 5)")
    a = p.parse_args()
    if a.quick:
        a.device, a.steps, a.warmup, a.rounds, a.batch_size, a.loss_batch, a.loss_reps, a.compile = 'cpu', 1, 1, 1, 2, 32, 2, False
    if a.device.startswith('cuda') and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device is visible to this torch; run on a GPU machine, or --quick for the CPU "
                 "smoke run")
    device = torch.device(a.device)
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or platform.machine()
    print(f"# GPU benchmark | {name} | torch {torch.__version__} | synthetic CIFAR (3x32x32, 100 classes) on {device} | "
          f"batch {a.batch_size}, {a.steps} steps x {a.rounds} rounds after {a.warmup}")
    if a.quick: print('(smoke run, not a measurement)')
    start = time.perf_counter()
    if a.scale_only:
        print_gpu_scale(a, device)
        print(f"\ntotal {time.perf_counter() - start:.0f} s")
        return
    print(f"\n{'backbone':16} {'autocast':8} {'channels_last':13} {'minimal img/s':>14} {'trainer img/s':>14} {'ratio':>7}")
    for b, amp, cl, m, t, r, _ in training_rows(a, device):
        print(f"{b:16} {amp:8} {str(cl):13} {m:14,.0f} {t:14,.0f} {r:6.3f}x")
    if a.compile:
        print(f"\ntorch.compile (bf16, channels_last):\n{'backbone':16} {'compile s':>9} {'minimal img/s':>14} "
              f"{'trainer img/s':>14} {'ratio':>7}")
        for b, amp, cl, m, t, r, c in training_rows(a, device, compiled=True):
            print(f"{b:16} {c:9.1f} {m:14,.0f} {t:14,.0f} {r:6.3f}x")
    print(f"\ntensor pipeline alone (crop + flip + normalise on {device}): {pipeline_rate(a, device):,.0f} images/s")
    print(f"\nlosses, forward + backward, batch {a.loss_batch} (ms per call, ratio to F.cross_entropy):")
    print(f"{'C':>5} {'loss':36} {'ms':>8} {'ratio':>7}")
    for C, n, ms, r in loss_rows(a, device): print(f"{C:5} {n:36} {ms:8.3f} {r:6.2f}x")
    print_gpu_scale(a, device)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == '__main__':
    main()
