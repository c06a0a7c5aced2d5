"""Images per second of the in-memory tensor pipeline against torchvision's DataLoader with PIL transforms.

Both sides do the same work on Fashion-MNIST's 60,000 training images: shuffle, random crop with 4 pixels of
zero padding, random horizontal flip, to float, normalise, batches of 256. Measured in the same run:

1. the pipeline alone (iterate and touch every batch), DataLoader with 0 and with 2 worker processes;
2. end to end: training the small CNN (SGD, cross-entropy, channels-last) for the same number of batches.

    python benchmarks/data_pipeline.py [--quick] [--device cpu] [--repeats 3]

Ratios > 1 mean the tensor pipeline is faster. On a CPU, training compute dominates the end-to-end numbers.
"""
import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ratio_losses.core import get_device, seed_everything
from ratio_losses.data import TensorLoader, load_dataset, load_tensors, standard_transform
from ratio_losses.models import build_model

BATCH, PADDING = 256, 4


def images_per_second(make_batches, n_images, repeats, consume):
    "Images/s over `n_images`, best and median of `repeats` passes (the best is the least disturbed by the machine)."
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        seen = 0
        for x, y in make_batches():
            consume(x, y)
            seen += len(y)
            if seen >= n_images: break
        rates.append(seen / (time.perf_counter() - start))
    return max(rates), statistics.median(rates)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--quick', action='store_true', help='few images, one repeat: a smoke run, not a measurement')
    p.add_argument('--device', default='cpu')
    p.add_argument('--repeats', type=int, default=3)
    args = p.parse_args()
    device = get_device(args.device)
    repeats = 1 if args.quick else args.repeats
    n_pipeline = 2048 if args.quick else 60000
    n_loader = 1024 if args.quick else 15360
    n_train = 512 if args.quick else 7680           # 30 batches of 256

    train = load_tensors('fashion_mnist', 'train')
    info = train.info
    tensor_loader = TensorLoader(train.images, train.labels, BATCH, seed=0, crop_padding=PADDING, hflip=True,
                                 mean=info.mean, std=info.std, device=device, channels_last=True)
    dataset = load_dataset('fashion_mnist', 'train',
                           transform=standard_transform('fashion_mnist', train=True, crop_padding=PADDING, hflip=True))

    def torchvision_loader(workers):
        return lambda: DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers,
                                  persistent_workers=False, drop_last=True)

    sources = [('tensor pipeline', lambda: iter(tensor_loader)),
               ('DataLoader + PIL, 0 workers', torchvision_loader(0)),
               ('DataLoader + PIL, 2 workers', torchvision_loader(2))]

    print(f'Fashion-MNIST train, batch {BATCH}, crop(pad {PADDING}) + flip + normalise | device {device} | '
          f'{torch.get_num_threads()} threads | torch {torch.__version__} | Python {platform.python_version()}')

    # 1. the pipeline alone ---------------------------------------------------------------------------
    touch = lambda x, y: (x.to(device, non_blocking=True).sum(), y.to(device).sum())
    alone = {}
    for name, make in sources:
        n = n_pipeline if name == 'tensor pipeline' else n_loader
        alone[name] = images_per_second(make, n, repeats, touch)

    # 2. end to end: training the small CNN -------------------------------------------------------------
    def trainer():
        seed_everything(0)
        model = build_model('small_cnn', in_channels=1, num_classes=10).to(device).to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
        def step(x, y):
            x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(x).logits, y.to(device))
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        return step
    end_to_end = {}
    for name, make in sources:
        step = trainer()
        step(*next(iter(make())))   # warm-up: first-call allocations
        end_to_end[name] = images_per_second(make, n_train, repeats, step)

    base = 'tensor pipeline'
    print(f"\n{'':34}{'images/s (best)':>16}{'median':>10}{'tensor pipeline ×':>20}")
    for title, table in (('pipeline alone', alone), ('end to end (training the small CNN)', end_to_end)):
        print(title)
        for name, (best, med) in table.items():
            ratio = table[base][0] / best
            print(f'  {name:32}{best:16,.0f}{med:10,.0f}{ratio:19.1f}×')
    print('\n(× = how many times more images per second the tensor pipeline delivers; best of '
          f'{repeats} passes)' + ('  [--quick: smoke run, not a measurement]' if args.quick else ''))


if __name__ == '__main__':
    main()
