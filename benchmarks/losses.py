"""Forward + backward time of each loss relative to F.cross_entropy, measured in the same run.

B = 256 float32 logits, C in {10, 100, 1000}, on the CPU (or --device). Each round times F.cross_entropy and every
loss back to back with torch.utils.benchmark; the table gives the median over rounds of (loss time / CE time), so
that drifts of a shared machine hit both sides of a ratio alike. `checks on` is the default behaviour (target range
and a finite loss verified on every call: one read on the CPU, a device-side assert on an accelerator); `checks off`
is inside `validation(False)`. The compiled rows time each loss under torch.compile (Inductor, fullgraph=True, one
graph per C) against F.cross_entropy compiled the same way, forward + backward; compiling skips the value checks.

    python benchmarks/losses.py [--rounds 7] [--min-time 0.2] [--device cpu] [--quick] [--no-compile] [--against REV]

`--against REV` also times NLLR, CRL, CCE and GCE as commit REV wrote them (its package, read
with git into a temporary package), in the same rounds: a before/after measured in one run.

Targets (issue "losses", and the compiled rows of the drop-in issue): CRL and NLLR <= 1.3x, CCE and GCE <= 2x.
`--quick` compiles at C = 10 only.
"""
import argparse
import importlib
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils import benchmark

import ratio_losses.losses as L
from ratio_losses.core import get_device

LOSSES = {
    'cross_entropy (ours)': (L.cross_entropy, None),
    'nllr_loss': (L.nllr_loss, 1.3),
    'competing_ratio_loss': (L.competing_ratio_loss, 1.3),
    'categorical_cross_entropy': (L.categorical_cross_entropy, 2.0),
    'gradient_boosting_cross_entropy k=15': (lambda x, t: L.gradient_boosting_cross_entropy(x, t, 15), 2.0),
    'focal_loss gamma=2 (comparison loss)': (L.focal_loss, None),
    'max_entropy_loss gamma=0.1': (lambda x, t: L.max_entropy_loss(x, t, 0.1), None),
}

# The comparison losses that read features and class vectors instead of logits: timed on (features (B, D = 64),
# class vectors (C, D)) with gradients into both; the baseline is the plain last layer plus F.cross_entropy,
# features @ W.T, on the same inputs. MC-Loss reads (B, 3C, 7, 7) feature maps; its baseline is GAP + a linear layer
# + F.cross_entropy on the same maps.
D = 64
FEATURE_LOSSES = {
    'center_loss (+ CE)': lambda f, w, t: L.center_loss(f @ w.T, t, f, w),
    'large_margin_softmax_loss m=4': lambda f, w, t: L.large_margin_softmax_loss(f, t, w, 4),
    'angular_softmax_loss m=4': lambda f, w, t: L.angular_softmax_loss(f, t, w, 4),
    'lgm_loss': lambda f, w, t: L.lgm_loss(f, t, w),
}


def losses_at(rev: str):
    "The `ratio_losses.losses` module of commit `rev`, imported from a temporary copy of that commit's package."
    root = Path(__file__).resolve().parents[1]
    pkg = Path(tempfile.mkdtemp())/'ratio_losses_at_rev'
    pkg.mkdir()
    listed = subprocess.run(['git', '-C', str(root), 'ls-tree', '--name-only', rev, 'ratio_losses/'],
                            capture_output=True, text=True)
    if listed.returncode: raise SystemExit(f'--against {rev}: {listed.stderr.strip()}')
    for f in [Path(n).name for n in listed.stdout.split() if n.endswith('.py')]:
        text = subprocess.run(['git', '-C', str(root), 'show', f'{rev}:ratio_losses/{f}'], capture_output=True, text=True)
        if text.returncode: raise SystemExit(f'--against {rev}: {text.stderr.strip()}')
        (pkg/f).write_text(text.stdout)
    sys.path.insert(0, str(pkg.parent))
    return importlib.import_module('ratio_losses_at_rev.losses')


def time_us(fn, x, t, min_time):
    stmt = 'x.grad = None; fn(x, t).backward()'
    return benchmark.Timer(stmt, globals=dict(fn=fn, x=x, t=t)).blocked_autorange(min_run_time=min_time).median * 1e6


def time_features_us(fn, f, w, t, min_time):
    stmt = 'f.grad = None; w.grad = None; fn(f, w, t).backward()'
    return benchmark.Timer(stmt, globals=dict(fn=fn, f=f, w=w, t=t)).blocked_autorange(min_run_time=min_time).median * 1e6


def compiled_ratios(sizes, rounds, min_time, device) -> tuple[dict, dict]:
    """Every loss of LOSSES compiled (Inductor, fullgraph=True, static shapes) against F.cross_entropy compiled alike:
    per C, each compiled once (its compile and first run untimed), then `rounds` rounds of back-to-back timings."""
    ratios, base_us = {(name, C): [] for name in LOSSES for C in sizes}, {C: [] for C in sizes}
    for C in sizes:
        g = torch.Generator().manual_seed(C)
        x = (torch.randn(256, C, generator=g) * 3).to(device).requires_grad_()
        t = torch.randint(0, C, (256,), generator=g).to(device)
        base = torch.compile(F.cross_entropy, fullgraph=True, dynamic=False)
        fns = {name: torch.compile(fn, fullgraph=True, dynamic=False) for name, (fn, _) in LOSSES.items()}
        for fn in [base, *fns.values()]:
            fn(x, t).backward()  # compile
        for _ in range(rounds):
            b = time_us(base, x, t, min_time)
            base_us[C].append(b)
            for name, fn in fns.items():
                ratios[name, C].append(time_us(fn, x, t, min_time) / b)
    return ratios, base_us


def print_ratios(title: str, ratios: dict, sizes) -> None:
    print(title)
    for name, (_, target) in LOSSES.items():
        r = [statistics.median(ratios[name, C]) for C in sizes]
        missed = ','.join(str(C) for C, v in zip(sizes, r) if target is not None and v > target)
        verdict = '' if target is None else f"  <= {target}: {'met' if max(r) <= target else 'not met at C=' + missed}"
        print(f'  {name:38}' + ''.join(f'{v:9.2f}×' for v in r) + verdict)


def linear_ce(f, w, t): return F.cross_entropy(f @ w.T, t)


def mc_baseline(maps, w, t): return F.cross_entropy(maps.mean((2, 3)) @ w.T, t)


def mc_loss(maps, w, t): return L.mutual_channel_loss(maps.mean((2, 3)) @ w.T, t, maps)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--rounds', type=int, default=7)
    p.add_argument('--min-time', type=float, default=0.2, help='seconds per timing')
    p.add_argument('--device', default='cpu')
    p.add_argument('--quick', action='store_true', help='one short round: a smoke run, not a measurement')
    p.add_argument('--against', metavar='REV', help='also time the paper losses as commit REV wrote them')
    p.add_argument('--no-compile', action='store_true', help='leave out the compiled rows')
    args = p.parse_args()
    old = losses_at(args.against) if args.against else None
    before = {} if old is None else {
        'nllr_loss': old.nllr_loss, 'competing_ratio_loss': old.competing_ratio_loss,
        'categorical_cross_entropy': old.categorical_cross_entropy,
        'gradient_boosting_cross_entropy k=15': lambda x, t: old.gradient_boosting_cross_entropy(x, t, 15)}
    rounds, min_time = (1, 0.02) if args.quick else (args.rounds, args.min_time)
    device = get_device(args.device)
    sizes = (10, 100, 1000)
    print(f'B = 256, float32, device {device} ({torch.get_num_threads()} threads), torch {torch.__version__}, '
          f'Python {platform.python_version()}; median of {rounds} rounds')
    ratios = {(name, checks, C): [] for name in LOSSES for checks in (True, False) for C in sizes}
    before_ratios = {(name, C): [] for name in before for C in sizes}
    base_us = {C: [] for C in sizes}
    for C in sizes:
        g = torch.Generator().manual_seed(C)
        x = (torch.randn(256, C, generator=g) * 3).to(device).requires_grad_()
        t = torch.randint(0, C, (256,), generator=g).to(device)
        for _ in range(rounds):
            base = time_us(F.cross_entropy, x, t, min_time)
            base_us[C].append(base)
            for name, (fn, _) in LOSSES.items():
                for checks in (True, False):
                    with L.validation(checks):
                        ratios[name, checks, C].append(time_us(fn, x, t, min_time) / base)
            for name, fn in before.items():
                before_ratios[name, C].append(time_us(fn, x, t, min_time) / base)
    print(f"\n{'':40}" + ''.join(f'{f"C={C}":>10}' for C in sizes) + '    target')
    print(f"{'F.cross_entropy (µs, median)':40}" + ''.join(f'{statistics.median(base_us[C]):10.0f}' for C in sizes))
    for checks in (True, False):
        print_ratios(f"× F.cross_entropy, checks {'on' if checks else 'off'}",
                     {(n, C): v for (n, c, C), v in ratios.items() if c == checks}, sizes)
    if not args.no_compile:
        csizes = (10,) if args.quick else sizes
        compiled, cbase = compiled_ratios(csizes, rounds, min_time, device)
        print(f"{'compiled F.cross_entropy (µs, median)':40}" + ''.join(f'{statistics.median(cbase[C]):10.0f}' for C in csizes))
        print_ratios('× F.cross_entropy, both compiled (torch.compile: Inductor, fullgraph=True), forward + backward',
                     compiled, csizes)
    if before:
        print(f"× F.cross_entropy, checks on: as commit {args.against} wrote them (same rounds) -> now")
        for name in before:
            med = statistics.median
            print(f'  {name:38}' + ''.join(f"{med(before_ratios[name, C]):6.2f}× ->{med(ratios[name, True, C]):5.2f}×"
                                           for C in sizes))
    feature_ratios = {(name, C): [] for name in list(FEATURE_LOSSES) + ['mutual_channel_loss xi=3 (+ CE)'] for C in sizes}
    for C in sizes:
        g = torch.Generator().manual_seed(C)
        f = torch.randn(256, D, generator=g).to(device).requires_grad_()
        w = torch.randn(C, D, generator=g).to(device).requires_grad_()
        t = torch.randint(0, C, (256,), generator=g).to(device)
        maps = torch.randn(32 if C < 1000 else 8, 3 * C, 7, 7, generator=g).to(device).requires_grad_()
        wm = torch.randn(C, 3 * C, generator=g).to(device).requires_grad_()
        for _ in range(rounds):
            base = time_features_us(linear_ce, f, w, t, min_time)
            for name, fn in FEATURE_LOSSES.items():
                feature_ratios[name, C].append(time_features_us(fn, f, w, t, min_time) / base)
            mc_base = time_features_us(mc_baseline, maps, wm, t[:len(maps)], min_time)
            feature_ratios['mutual_channel_loss xi=3 (+ CE)', C].append(
                time_features_us(mc_loss, maps, wm, t[:len(maps)], min_time) / mc_base)
    print(f"× last layer + F.cross_entropy on the same features (B = 256, D = {D}; MC-Loss: B = 32 (8 at C = 1000), "
          "3C maps of 7×7), checks on")
    for name in list(FEATURE_LOSSES) + ['mutual_channel_loss xi=3 (+ CE)']:
        print(f'  {name:38}' + ''.join(f'{statistics.median(feature_ratios[name, C]):9.2f}×' for C in sizes))
    if args.quick: print('[--quick: a smoke run, not a measurement]')


if __name__ == '__main__':
    main()
