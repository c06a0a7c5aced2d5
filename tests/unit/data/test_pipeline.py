"""The in-memory tensor pipeline: deterministic for a seed, and the same images as torchvision's transforms."""
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from ratio_losses.data import TensorLoader, augment_params, crop_flip, epoch_generator, load_tensors, standard_transform, stratified_subset


def _images(n=40, c=1, h=28, w=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8), torch.randint(0, 10, (n,), generator=g)


def _epochs(loader, k):
    return [[(x.clone(), y.clone()) for x, y in loader] for _ in range(k)]


def test_same_seed_same_batches_every_epoch():
    x, y = _images()
    kw = dict(seed=5, crop_padding=3, hflip=True, mean=(0.5,), std=(0.25,))
    a, b = _epochs(TensorLoader(x, y, 8, **kw), 3), _epochs(TensorLoader(x, y, 8, **kw), 3)
    for ea, eb in zip(a, b):
        for (xa, ya), (xb, yb) in zip(ea, eb):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a[0][0][1], a[1][0][1])                             # epochs differ
    other = _epochs(TensorLoader(x, y, 8, **{**kw, 'seed': 6}), 1)
    assert not torch.equal(other[0][0][0], a[0][0][0])                         # seeds differ


def test_set_epoch_rebuilds_any_epoch():
    x, y = _images()
    loader = TensorLoader(x, y, 8, seed=1, crop_padding=2, hflip=True)
    epochs = _epochs(loader, 3)
    loader.set_epoch(1)
    again = [(xb, yb) for xb, yb in loader]
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(epochs[1], again))
    assert loader.epoch == 2


def test_an_abandoned_epoch_still_advances():
    x, y = _images()
    loader = TensorLoader(x, y, 8, seed=1)
    first = next(iter(loader))[1]
    assert loader.epoch == 1 and not torch.equal(next(iter(loader))[1], first)


def test_every_image_once_per_epoch_and_drop_last():
    x, y = _images(n=37)
    y = torch.arange(37)                                                         # labels identify images
    seen = torch.cat([yb for _, yb in TensorLoader(x, y, 8, seed=3)])
    assert sorted(seen.tolist()) == list(range(37))
    loader = TensorLoader(x, y, 8, seed=3, drop_last=True)
    assert len(loader) == 4 and sum(len(yb) for _, yb in loader) == 32
    assert len(TensorLoader(x, y, 8)) == 5
    ordered = torch.cat([yb for _, yb in TensorLoader(x, y, 8, shuffle=False)])
    assert ordered.tolist() == list(range(37))


def test_no_augmentation_returns_the_images_normalised():
    x, y = _images(n=16, c=3, h=32, w=32)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    xb, _ = next(iter(TensorLoader(x, y, 16, shuffle=False, mean=mean, std=std)))
    ref = (x.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(xb, ref, atol=1e-6, rtol=0)


def _torchvision_reference(img: torch.Tensor, top, left, flip, padding, mean, std):
    "torchvision's functional transforms on a PIL image, with the given decisions."
    arr = img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()
    pil = TF.pad(Image.fromarray(arr), padding)
    pil = TF.crop(pil, int(top), int(left), img.shape[1], img.shape[2])
    if flip: pil = TF.hflip(pil)
    return TF.normalize(TF.to_tensor(pil), mean, std)


@pytest.mark.parametrize('shape,padding', [((1, 28, 28), 4), ((3, 32, 32), 4), ((3, 32, 32), 0), ((1, 8, 8), 2)])
def test_matches_the_torchvision_transform_path(shape, padding):
    x, y = _images(n=24, c=shape[0], h=shape[1], w=shape[2])
    mean, std = (0.3,) * shape[0], (0.7,) * shape[0]
    loader = TensorLoader(x, y, 24, seed=11, crop_padding=padding, hflip=True, mean=mean, std=std)
    order, top, left, flip = loader.epoch_plan(0)
    xb, yb = next(iter(loader))
    ref = torch.stack([_torchvision_reference(x[i], t, l, f, padding, mean, std)
                       for i, t, l, f in zip(order, top, left, flip)])
    torch.testing.assert_close(xb, ref, atol=1e-5, rtol=0)
    assert torch.equal(yb, y[order])
    assert flip.any() and (~flip).any()                         # both branches were exercised


def test_matches_torchvision_on_fashion_mnist(fashion_mnist_dir):
    fm = load_tensors('fashion_mnist', 'test')
    info = fm.info
    loader = TensorLoader(fm.images, fm.labels, 256, seed=0, crop_padding=4, hflip=True, mean=info.mean, std=info.std)
    order, top, left, flip = loader.epoch_plan(0)
    xb, _ = next(iter(loader))
    ref = torch.stack([_torchvision_reference(fm.images[i], t, l, f, 4, info.mean, info.std)
                       for i, t, l, f in zip(order[:256], top[:256], left[:256], flip[:256])])
    torch.testing.assert_close(xb, ref, atol=1e-5, rtol=0)
    # and the plain eval transform of load_dataset equals the loader without augmentation
    ds = __import__('ratio_losses.data', fromlist=['load_dataset']).load_dataset(
        'fashion_mnist', 'test', transform=standard_transform('fashion_mnist', train=False))
    plain, _ = next(iter(TensorLoader(fm.images, fm.labels, 16, shuffle=False, mean=info.mean, std=info.std)))
    torch.testing.assert_close(torch.stack([ds[i][0] for i in range(16)]), plain, atol=1e-6, rtol=0)


def test_augmentation_decisions_cover_their_range():
    top, left, flip = augment_params(20000, 32, 32, 4, True, epoch_generator(0, 0))
    assert set(top.tolist()) == set(range(9)) and set(left.tolist()) == set(range(9))
    from scipy.stats import binomtest
    assert binomtest(int(flip.sum()), len(flip), 0.5).pvalue > 1e-4   # a fair coin (fixed seed: deterministic)


def test_crop_flip_edge_cases():
    x, _ = _images(n=2, c=1, h=4, w=5)
    zero = torch.zeros(2, dtype=torch.long)
    assert torch.equal(crop_flip(x, zero, zero, torch.tensor([False, False]), 0), x)
    assert torch.equal(crop_flip(x, zero, zero, torch.tensor([True, False]), 0)[0], x[0].flip(-1))
    shifted = crop_flip(x, torch.tensor([0, 2]), torch.tensor([0, 2]), torch.tensor([False, False]), 1)
    assert torch.equal(shifted[0, :, 1:, 1:], x[0, :, :3, :4]) and shifted[0, :, 0].sum() == 0   # black border
    assert torch.equal(shifted[1, :, :3, :4], x[1, :, 1:, 1:])


def test_epoch_generator_depends_only_on_seed_and_epoch():
    a = torch.randint(0, 1000, (5,), generator=epoch_generator(3, 4))
    assert torch.equal(a, torch.randint(0, 1000, (5,), generator=epoch_generator(3, 4)))
    assert not torch.equal(a, torch.randint(0, 1000, (5,), generator=epoch_generator(4, 3)))


@pytest.mark.parametrize('kwargs,match', [
    (dict(images=torch.zeros(4, 1, 8, 8)), 'uint8'),
    (dict(labels=torch.zeros(3)), 'labels must'),
    (dict(batch_size=0), 'batch_size=0'),
    (dict(batch_size=5, drop_last=True), 'larger than the dataset'),
    (dict(crop_padding=-1), 'crop_padding=-1'),
    (dict(mean=(0.1, 0.2)), 'one value per channel'),
    (dict(std=(0.0,)), 'std > 0'),
])
def test_bad_arguments(kwargs, match):
    args = dict(images=torch.zeros(4, 1, 8, 8, dtype=torch.uint8), labels=torch.zeros(4), batch_size=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        TensorLoader(args.pop('images'), args.pop('labels'), args.pop('batch_size'), **args)


def test_stratified_subset():
    labels = torch.arange(1000) % 10
    idx = stratified_subset(labels, 200, seed=1)
    assert len(idx) == 200 and torch.bincount(labels[idx]).tolist() == [20] * 10
    assert torch.equal(idx, stratified_subset(labels, 200, seed=1))
    assert not torch.equal(idx, stratified_subset(labels, 200, seed=2))
    assert len(stratified_subset(labels, 0.1)) == 100 and len(stratified_subset(labels, 1000)) == 1000
    for bad, match in ((0, 'positive'), (1.5, 'fraction'), (5, 'number of classes'),
                       (5000, r'size=5000 is larger than the set itself \(1000 images\)')):   # never silently fewer
        with pytest.raises(ValueError, match=match): stratified_subset(labels, bad)
