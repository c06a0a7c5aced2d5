"""The dataset registry: real offline data, every folder layout on a fixture, clear errors for missing data."""
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import ratio_losses.data as rd
from ratio_losses.data import DatasetNotFoundError, dataset_info, list_datasets, load_dataset, load_tensors
import layouts


# --- real data ------------------------------------------------------------------------------------------
def test_fashion_mnist_from_debian(fashion_mnist_dir):
    train, test = load_tensors('fashion_mnist', 'train'), load_tensors('fashion_mnist', 'test')
    assert (len(train), len(test)) == (60000, 10000)
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert int(train.images.min()) == 0 and int(train.images.max()) == 255
    assert train.info.num_classes == 10 and train.classes == list(rd.FASHION_MNIST_CLASSES)
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    mean, std = rd.compute_mean_std(train.images)
    assert mean == pytest.approx(train.info.mean, abs=5e-4) and std == pytest.approx(train.info.std, abs=5e-4)


def test_fashion_mnist_read_in_place_like_torchvision(fashion_mnist_dir, tmp_path, monkeypatch):
    "The IDX reader gives torchvision's tensors, reads Debian's .gz files where they are and writes nothing anywhere."
    monkeypatch.setenv('RATIO_LOSSES_CACHE', str(tmp_path/'cache'))
    listing = sorted(p.name for p in fashion_mnist_dir.iterdir())
    ours = load_tensors('fashion_mnist', 'test')
    assert sorted(p.name for p in fashion_mnist_dir.iterdir()) == listing   # nothing written beside the originals
    assert not (tmp_path/'cache').exists()                                    # and nothing unpacked into the cache
    from torchvision.datasets.mnist import read_image_file, read_label_file
    import gzip
    for f in rd.datasets._IDX_FILES:                                                   # torchvision reads unpacked files only
        (tmp_path/f).write_bytes(gzip.decompress((fashion_mnist_dir/f'{f}.gz').read_bytes()))
    assert torch.equal(ours.images[:, 0], read_image_file(str(tmp_path/'t10k-images-idx3-ubyte')))
    assert torch.equal(ours.labels, read_label_file(str(tmp_path/'t10k-labels-idx1-ubyte')).long())
    assert torch.equal(load_tensors('fashion_mnist', 'test', root=tmp_path).images, ours.images)  # unpacked copies too


def test_idx_reader_rejects_bad_files(tmp_path):
    layouts.write_idx(tmp_path, gz=False)
    with pytest.raises(ValueError, match='not an unsigned-byte IDX file'):
        (tmp_path/'bad').write_bytes(b'\x00\x00\x0d\x03' + bytes(16)); rd.read_idx(tmp_path/'bad')   # float values
    data = (tmp_path/'train-images-idx3-ubyte').read_bytes()
    (tmp_path/'cut').write_bytes(data[:-5])
    with pytest.raises(ValueError, match='truncated or padded: the header says \\(12, 28, 28\\)'):
        rd.read_idx(tmp_path/'cut')


@pytest.mark.process
def test_torchvision_is_imported_only_when_needed():
    "In-memory runs never import torchvision (≈1.5 s that every papermill point would pay)."
    import subprocess, sys
    code = ("import sys; from ratio_losses.training import run_training; from ratio_losses.data import load_tensors; "
            "load_tensors('digits'); print('torchvision' in sys.modules)")
    assert subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout.strip() == 'False'


def test_fashion_mnist_root_and_env(fashion_mnist_dir, tmp_path, monkeypatch):
    folder = tmp_path/'fmnist'
    shutil.copytree(fashion_mnist_dir, folder)
    assert len(load_dataset('fashion_mnist', 'test', root=folder)) == 10000
    monkeypatch.setenv("RATIO_LOSSES_DATA", str(tmp_path))           # searched: <base>, <base>/fashion-mnist, ... not <base>/fmnist
    monkeypatch.setattr(rd.datasets, 'DEBIAN_FASHION_MNIST', tmp_path/'nowhere')
    with pytest.raises(DatasetNotFoundError):
        load_dataset('fashion_mnist', 'test')
    folder.rename(tmp_path/'fashion-mnist')
    assert len(load_dataset('fashion_mnist', 'test')) == 10000


def test_digits_split_is_fixed_and_stratified():
    from sklearn.datasets import load_digits
    train, test = load_tensors('digits', 'train'), load_tensors('digits', 'test')
    assert (len(train), len(test)) == (1437, 360)
    assert train.images.shape[1:] == (1, 8, 8) and train.images.dtype == torch.uint8
    full = np.bincount(load_digits().target)
    assert (torch.bincount(train.labels) + torch.bincount(test.labels)).tolist() == full.tolist()
    assert np.abs(torch.bincount(test.labels).numpy() - full * 360 / 1797).max() < 1  # proportional per class
    again = load_tensors('digits', 'test')
    assert torch.equal(again.images, test.images) and torch.equal(again.labels, test.labels)
    # the two splits are disjoint: no test image is also a training image (digits has few exact duplicates,
    # so compare against the images' multiset in the full data)
    flat = lambda t: {bytes(r) for r in t.flatten(1).numpy()}
    all_images = np.rint(load_digits().images * (255 / 16)).astype(np.uint8).reshape(1797, -1)
    assert len(flat(train.images) | flat(test.images)) == len({bytes(r) for r in all_images})


# --- every folder layout on a fixture ------------------------------------------------------------------------
def _names(ds):
    names = [(Path(p).name, y) for p, y in ds.samples]
    assert ds.targets == [y for _, y in names], 'build_data reads the labels from `targets`'
    return names


def test_cub200(tmp_path):
    exp = layouts.write_cub(tmp_path)
    for split in ('train', 'test'):
        ds = load_dataset('cub200', split, root=tmp_path)
        assert ds.classes == exp.classes and _names(ds) == getattr(exp, split)
        img, y = ds[0]
        assert img.mode == 'RGB' and y == getattr(exp, split)[0][1]
    assert len(load_dataset('cub200', root=tmp_path/'CUB_200_2011')) == len(exp.train)   # the folder itself works too


def test_stanford_cars(tmp_path):
    exp = layouts.write_stanford_cars(tmp_path)
    for split in ('train', 'test'):
        ds = load_dataset('stanford_cars', split, root=tmp_path)
        assert ds.classes == exp.classes
        assert _names(ds) == getattr(exp, split)
        assert ds[len(ds) - 1][1] == getattr(exp, split)[-1][1]


def test_fgvc_aircraft(tmp_path):
    exp = layouts.write_fgvc_aircraft(tmp_path)
    for split in ('train', 'test'):
        ds = load_dataset('fgvc_aircraft', split, root=tmp_path)
        assert ds.classes == exp.classes and _names(ds) == getattr(exp, split)
    assert len(load_dataset('fgvc_aircraft', 'trainval', root=tmp_path)) == 6
    assert len(load_dataset('fgvc_aircraft', 'test', root=tmp_path, annotation_level='family').classes) == 3


@pytest.mark.parametrize('lists_folder', [False, True])
def test_stanford_dogs(tmp_path, lists_folder):
    exp = layouts.write_stanford_dogs(tmp_path, lists_folder)
    for split in ('train', 'test'):
        ds = load_dataset('stanford_dogs', split, root=tmp_path)
        assert ds.classes == exp.classes and _names(ds) == getattr(exp, split)
        assert ds[0][0].size[0] > 0


def test_stanford_dogs_inconsistent_lists(tmp_path):
    layouts.write_stanford_dogs(tmp_path)
    shutil.rmtree(tmp_path/'Images'/'n02085620-Chihuahua')   # a class folder missing shifts every label
    with pytest.raises(ValueError, match='does not match'):
        load_dataset('stanford_dogs', 'train', root=tmp_path)


@pytest.mark.parametrize('images', ['aligned', 'faces'])
def test_adience_folds_are_subject_exclusive(tmp_path, images):
    kept = layouts.write_adience(tmp_path, images)
    for fold in range(5):
        test = load_dataset('adience', 'test', root=tmp_path, fold=fold)
        train = load_dataset('adience', 'train', root=tmp_path, fold=fold)
        assert _names(test) == [(f, g) for f, g, _ in kept[fold]]
        assert _names(train) == [(f, g) for k in range(5) if k != fold for f, g, _ in kept[k]]
        users = lambda ds: {Path(p).parent.name for p, _ in ds.samples}
        assert not users(train) & users(test)
        assert test.classes == list(rd.ADIENCE_AGE_GROUPS) and dataset_info('adience').ordinal
        assert all(Path(p).is_file() for p, _ in train.samples + test.samples)
    with pytest.raises(ValueError, match='fold=5'):
        load_dataset('adience', 'test', root=tmp_path, fold=5)


def test_adience_age_groups():
    for age, group in layouts.ADIENCE_AGES:
        assert rd.adience_age_group(age) == group, age


def test_imagenet_folders(tmp_path):
    exp = layouts.write_imagenet(tmp_path)
    train, val = load_dataset('imagenet', 'train', root=tmp_path), load_dataset('imagenet', 'val', root=tmp_path)
    assert train.classes == exp.classes and _names(train) == exp.train and _names(val) == exp.test


def test_cifar10_layout(tmp_path):
    x, y, xt, yt = layouts.write_cifar10(tmp_path)
    with pytest.raises(ValueError, match='verify_checksums=False'):   # not the official files: say so
        load_tensors('cifar10', 'train', root=tmp_path)
    train = load_tensors('cifar10', 'train', root=tmp_path, verify_checksums=False)
    test = load_tensors('cifar10', 'test', root=tmp_path, verify_checksums=False)
    assert torch.equal(train.images, torch.from_numpy(x).permute(0, 3, 1, 2)) and train.labels.tolist() == y
    assert torch.equal(test.images, torch.from_numpy(xt).permute(0, 3, 1, 2)) and test.labels.tolist() == yt
    assert train.classes == list(dataset_info('cifar10').class_names)


def test_cifar100_layout(tmp_path):
    x, y, names = layouts.write_cifar100(tmp_path)
    train = load_tensors('cifar100', 'train', root=tmp_path, verify_checksums=False)
    assert torch.equal(train.images, torch.from_numpy(x)) and train.labels.tolist() == y and train.classes == names


def test_svhn_layout(tmp_path):
    x, y = layouts.write_svhn(tmp_path, 'extra')
    extra = load_tensors('svhn', 'extra', root=tmp_path, verify_checksums=False)
    assert torch.equal(extra.images, torch.from_numpy(x)) and extra.labels.tolist() == y.tolist()
    assert 0 in extra.labels.tolist() and 10 not in extra.labels.tolist()


@pytest.mark.parametrize('gz', [True, False])
def test_mnist_idx_files(tmp_path, gz):
    x, y, xt, yt = layouts.write_idx(tmp_path/'mnist', gz=gz)
    train = load_tensors('mnist', 'train', root=tmp_path)
    test = load_tensors('mnist', 'test', root=tmp_path)
    assert torch.equal(train.images[:, 0], torch.from_numpy(x)) and train.labels.tolist() == y.tolist()
    assert torch.equal(test.images[:, 0], torch.from_numpy(xt))


def test_mnist_in_torchvision_layout_is_found(tmp_path):
    x, y, _, _ = layouts.write_idx(tmp_path/'MNIST'/'raw', gz=False)    # where torchvision's download puts them
    ds = load_dataset('mnist', 'train', root=tmp_path)
    assert torch.equal(ds.images[:, 0], torch.from_numpy(x)) and ds.classes == [str(i) for i in range(10)]
    img, label = ds[3]
    assert img.mode == 'L' and np.array_equal(np.asarray(img), x[3]) and label == y[3]   # PIL items, as torchvision gives


# --- missing data: a clear error, at once -----------------------------------------------------------------
@pytest.mark.parametrize('name', [n for n in list_datasets() if n != 'digits'])
def test_missing_dataset_names_paths_and_remedy(name, tmp_path):
    info = dataset_info(name)
    start = time.perf_counter()
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset(name, info.splits[0], root=tmp_path)
    assert time.perf_counter() - start < 5
    msg = str(err.value)
    assert repr(name) in msg and info.title in msg
    assert str(tmp_path) in msg                        # the paths tried
    assert info.how_to_get in msg and 'RATIO_LOSSES_DATA' in msg


def test_missing_without_root_or_env(monkeypatch, tmp_path):
    monkeypatch.setattr(rd.datasets, 'DEBIAN_FASHION_MNIST', tmp_path/'not-installed')
    with pytest.raises(DatasetNotFoundError, match='no root argument and no \\$RATIO_LOSSES_DATA') as err:
        load_dataset('fashion_mnist')
    assert str(tmp_path/'not-installed') in str(err.value)   # the system folder was tried and is listed
    with pytest.raises(DatasetNotFoundError, match='Paths tried: none'):
        load_dataset('cifar10')


def test_download_failure_is_quick_and_clear(monkeypatch, tmp_path):
    "download=True on a machine whose network refuses: torchvision's real download path, a clear error, no hang."
    import torchvision.datasets as tvd
    monkeypatch.setattr(rd.datasets, 'DEBIAN_FASHION_MNIST', tmp_path/'not-installed')
    monkeypatch.setattr(tvd.FashionMNIST, 'mirrors', ['http://127.0.0.1:9/'])   # the discard port: refused at once
    start = time.perf_counter()
    with pytest.raises(DatasetNotFoundError, match='Download failed') as err:
        load_dataset('fashion_mnist', root=tmp_path/'dl', download=True)
    assert time.perf_counter() - start < 30
    assert str(tmp_path/'dl') in str(err.value)


def test_bad_arguments():
    with pytest.raises(ValueError, match="dataset='cifar11' is unknown; valid choices: .*cifar10"):
        load_dataset('cifar11')
    with pytest.raises(ValueError, match="split='val' is not a split of 'digits'; valid choices: train, test"):
        load_dataset('digits', 'val')
    with pytest.raises(ValueError, match='unknown option\\(s\\) fold .*valid options: verify_checksums'):
        load_dataset('cifar10', fold=1)
    with pytest.raises(ValueError, match='cannot be downloaded automatically'):
        load_dataset('cub200', download=True)
    with pytest.raises(ValueError, match='use load_dataset'):
        load_tensors('cub200')
