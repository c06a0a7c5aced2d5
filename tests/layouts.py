"""Tiny copies of the datasets in their official on-disk layouts, written by the tests.

Each `write_*` function writes a few generated images per class exactly where the official archive puts them,
with the official index files, and returns what a correct reader must find (`Expected`).
"""
from __future__ import annotations

import gzip
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat


@dataclass
class Expected:
    "What a reader of a fixture must return."
    classes: list[str]
    train: list[tuple[str, int]] = field(default_factory=list)   # (file name, label) in the reader's order
    test: list[tuple[str, int]] = field(default_factory=list)


def _image(path: Path, seed: int, size=(20, 14), mode='RGB'):
    "A small random image; its size varies with the seed, as real photographs do."
    rng = np.random.default_rng(seed)
    w, h = size[0] + seed % 5, size[1] + seed % 3
    shape = (h, w, 3) if mode == 'RGB' else (h, w)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)


# --- CUB-200-2011: images.txt, image_class_labels.txt, train_test_split.txt, classes.txt, images/ -------------
def write_cub(root: Path, per_class: int = 4) -> Expected:
    d = root/'CUB_200_2011'
    classes = ['001.Black_footed_Albatross', '002.Laysan_Albatross', '003.Sooty_Albatross']
    exp = Expected(classes)
    images, labels, split = [], [], []
    i = 0
    for c, cls in enumerate(classes):
        for k in range(per_class):
            i += 1
            rel = f'{cls}/{cls.split(".")[1]}_{k:04d}_{700 + i}.jpg'
            _image(d/'images'/rel, i)
            is_train = k % 2 == 0
            images.append(f'{i} {rel}'); labels.append(f'{i} {c + 1}'); split.append(f'{i} {int(is_train)}')
            (exp.train if is_train else exp.test).append((rel.split('/')[-1], c))
    (d/'images.txt').write_text('\n'.join(images) + '\n')
    (d/'image_class_labels.txt').write_text('\n'.join(labels) + '\n')
    (d/'train_test_split.txt').write_text('\n'.join(split) + '\n')
    (d/'classes.txt').write_text(''.join(f'{c + 1} {cls}\n' for c, cls in enumerate(classes)))
    return exp


# --- Stanford Cars, as torchvision.datasets.StanfordCars reads it -------------------------------------------
def _cars_annos(records):
    dt = [('bbox_x1', 'O'), ('bbox_y1', 'O'), ('bbox_x2', 'O'), ('bbox_y2', 'O'), ('class', 'O'), ('fname', 'O')]
    arr = np.zeros((1, len(records)), dtype=dt)
    for j, (fname, label) in enumerate(records):
        arr[0, j] = (np.array([[1]]), np.array([[2]]), np.array([[10]]), np.array([[8]]), np.array([[label]]), np.array([fname]))
    return arr


def write_stanford_cars(root: Path, per_class: int = 2) -> Expected:
    d = root/'stanford_cars'
    classes = ['AM General Hummer SUV 2000', 'Acura RL Sedan 2012', 'Acura TL Sedan 2012']
    exp = Expected(classes)
    train, test = [], []
    for c in range(len(classes)):
        for k in range(per_class):
            for split, records, folder in (('train', train, 'cars_train'), ('test', test, 'cars_test')):
                fname = f'{len(records) + 1:05d}.jpg'
                _image(d/folder/fname, 10 * c + k + (100 if split == 'test' else 0))
                records.append((fname, c + 1))          # class ids are 1-based in the .mat files
                getattr(exp, split).append((fname, c))
    (d/'devkit').mkdir(parents=True, exist_ok=True)
    savemat(d/'devkit'/'cars_meta.mat', {'class_names': np.array([classes], dtype=object)})
    savemat(d/'devkit'/'cars_train_annos.mat', {'annotations': _cars_annos(train)})
    savemat(d/'cars_test_annos_withlabels.mat', {'annotations': _cars_annos(test)})
    return exp


# --- FGVC-Aircraft 2013b: data/images/*.jpg, data/variants.txt, data/images_variant_<split>.txt ---------------
def write_fgvc_aircraft(root: Path) -> Expected:
    d = root/'fgvc-aircraft-2013b'/'data'
    classes = ['707-320', 'A300B4', 'Cessna 172']   # names may contain spaces
    exp = Expected(classes)
    levels = {'variant': classes, 'family': ['Boeing 707', 'A300', 'Cessna 172'], 'manufacturer': ['Boeing', 'Airbus', 'Cessna']}
    lines = {(lv, s): [] for lv in levels for s in ('train', 'val', 'trainval', 'test')}
    n = 1000000
    for c in range(len(classes)):
        for split in ('train', 'val', 'test'):
            n += 1
            _image(d/'images'/f'{n}.jpg', n % 97, size=(30, 20))
            for lv, names in levels.items():
                lines[lv, split].append(f'{n} {names[c]}')
                if split in ('train', 'val'): lines[lv, 'trainval'].append(f'{n} {names[c]}')
            if split in ('train', 'test'): getattr(exp, split).append((f'{n}.jpg', c))
    for lv, fname in (('variant', 'variants'), ('family', 'families'), ('manufacturer', 'manufacturers')):
        (d/f'{fname}.txt').write_text('\n'.join(levels[lv]) + '\n')
    for (lv, split), ls in lines.items():
        (d/f'images_{lv}_{split}.txt').write_text('\n'.join(ls) + '\n')
    return exp


# --- Stanford Dogs: Images/<synset>-<name>/*.jpg, train_list.mat, test_list.mat ----------------------------
def write_stanford_dogs(root: Path, lists_folder: bool = False) -> Expected:
    synsets = ['n02085620-Chihuahua', 'n02085782-Japanese_spaniel', 'n02085936-Maltese_dog']
    exp = Expected([s.split('-', 1)[1] for s in synsets])
    files = {'train': [], 'test': []}
    for c, syn in enumerate(synsets):
        for k in range(4):
            rel = f'{syn}/{syn.split("-")[0]}_{1000 + k}.jpg'
            _image(root/'Images'/rel, 3 * c + k)
            split = 'train' if k < 3 else 'test'
            files[split].append((rel, c))
            getattr(exp, split).append((rel.split('/')[-1], c))
    lists = root/'lists' if lists_folder else root
    lists.mkdir(parents=True, exist_ok=True)
    for split, fl in files.items():
        savemat(lists/f'{split}_list.mat', {
            'file_list': np.array([[r] for r, _ in fl], dtype=object),
            'annotation_list': np.array([[r.removesuffix('.jpg')] for r, _ in fl], dtype=object),
            'labels': np.array([[c + 1] for _, c in fl], dtype=np.float64)})
    return exp


# --- Adience: fold_{0..4}_data.txt (tab-separated) and aligned/<user>/landmark_aligned_face.<face>.<image> ----
ADIENCE_HEADER = ['user_id', 'original_image', 'face_id', 'age', 'gender', 'x', 'y', 'dx', 'dy', 'tilt_ang',
                  'fiducial_yaw_angle', 'fiducial_score']
# (age field as written in the fold files, expected group index or None when the row must be dropped)
ADIENCE_AGES = [('(0, 2)', 0), ('(4, 6)', 1), ('(8, 12)', 2), ('(15, 20)', 3), ('(25, 32)', 4), ('(38, 43)', 5),
                ('(48, 53)', 6), ('(60, 100)', 7), ('13', 2), ('(38, 42)', 5), ('None', None), ('(38, 48)', None),
                ('35', None)]


def write_adience(root: Path, images: str = 'aligned') -> dict:
    """Five folds, two subjects each (so folds are subject-exclusive), every age form of ADIENCE_AGES.
    Returns {fold: [(file name, label, user_id), ...]} of the rows a reader must keep."""
    prefix = {'aligned': 'landmark_aligned_face', 'faces': 'coarse_tilt_aligned_face'}[images]
    kept = {}
    face = 0
    for fold in range(5):
        rows, kept[fold] = ['\t'.join(ADIENCE_HEADER)], []
        for u in range(2):
            user = f'{fold}{u}@N0{fold}'
            for j, (age, group) in enumerate(ADIENCE_AGES[(fold + u) % 3::3]):
                face += 1
                original = f'{9000 + face}_{j}abc_o.jpg'
                fname = f'{prefix}.{face}.{original}'
                _image(root/images/user/fname, face, size=(24, 24))
                rows.append('\t'.join([user, original, str(face), age, 'f', '0', '0', '10', '10', '0', '0', '50']))
                if group is not None: kept[fold].append((fname, group, user))
        (root/f'fold_{fold}_data.txt').write_text('\n'.join(rows) + '\n')
    return kept


# --- ImageNet, prepared: train/<wnid>/*.JPEG, val/<wnid>/*.JPEG -------------------------------------------
def write_imagenet(root: Path) -> Expected:
    wnids = ['n01440764', 'n01443537', 'n01484850']
    exp = Expected(wnids)
    for c, w in enumerate(wnids):
        for split, n in (('train', 3), ('val', 2)):
            for k in range(n):
                name = f'{w}_{k}.JPEG' if split == 'train' else f'ILSVRC2012_val_{c}{k:07d}.JPEG'
                _image(root/'imagenet'/split/w/name, 7 * c + k)
                getattr(exp, 'train' if split == 'train' else 'test').append((name, c))
    return exp


# --- CIFAR-10/100 (python pickles) and SVHN (.mat) -------------------------------------------------------
def _pickle(path: Path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'wb') as f: pickle.dump(obj, f)


def write_cifar10(root: Path, per_batch: int = 4) -> tuple[np.ndarray, list[int], np.ndarray, list[int]]:
    "Five training batches and one test batch; returns (train images NHWC, labels, test images, labels)."
    d = root/'cifar-10-batches-py'
    rng = np.random.default_rng(10)
    xs, ys = [], []
    for b in range(1, 6):
        x = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, per_batch)]
        _pickle(d/f'data_batch_{b}', {'batch_label': f'training batch {b} of 5', 'labels': y, 'data': x,
                                      'filenames': [f'img_{b}_{i}.png' for i in range(per_batch)]})
        xs.append(x); ys += y
    xt = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
    yt = [int(v) for v in rng.integers(0, 10, per_batch)]
    _pickle(d/'test_batch', {'batch_label': 'testing batch 1 of 1', 'labels': yt, 'data': xt, 'filenames': []})
    _pickle(d/'batches.meta', {'num_cases_per_batch': per_batch, 'num_vis': 3072, 'label_names': [
        'airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']})
    to_nhwc = lambda x: x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return to_nhwc(np.concatenate(xs)), ys, to_nhwc(xt), yt


def write_cifar100(root: Path, n: int = 6) -> tuple[np.ndarray, list[int], list[str]]:
    d = root/'cifar-100-python'
    rng = np.random.default_rng(100)
    names = [f'class_{i:02d}' for i in range(100)]
    x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    y = [int(v) for v in rng.integers(0, 100, n)]
    for split in ('train', 'test'):
        _pickle(d/split, {'filenames': [], 'batch_label': split, 'fine_labels': y, 'coarse_labels': [0] * n, 'data': x})
    _pickle(d/'meta', {'fine_label_names': names, 'coarse_label_names': [f'super_{i}' for i in range(20)]})
    return x.reshape(-1, 3, 32, 32), y, names


def write_svhn(root: Path, split: str = 'train', n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    "Returns (images NCHW, labels with 10 already mapped to 0)."
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)        # the .mat files store (H, W, C, N)
    y = np.array([[10], [1], [2], [10], [9]][:n], dtype=np.uint8)    # label 10 is the digit 0
    root.mkdir(parents=True, exist_ok=True)
    savemat(root/f'{split}_32x32.mat', {'X': x, 'y': y})
    labels = y.ravel().astype(np.int64); labels[labels == 10] = 0
    return x.transpose(3, 2, 0, 1), labels


# --- MNIST / Fashion-MNIST IDX files --------------------------------------------------------------------
def _idx_bytes(arr: np.ndarray) -> bytes:
    code = 0x08  # unsigned byte
    return struct.pack('>HBB', 0, code, arr.ndim) + struct.pack(f'>{arr.ndim}I', *arr.shape) + arr.tobytes()


def write_idx(folder: Path, n_train: int = 12, n_test: int = 6, gz: bool = True, seed: int = 0):
    "The four IDX files (gzipped like the official download, or unpacked); returns (train x, y, test x, y)."
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    data = {}
    for prefix, n in (('train', n_train), ('t10k', n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        for kind, arr in (('images-idx3', x), ('labels-idx1', y)):
            raw = _idx_bytes(arr)
            name = f'{prefix}-{kind}-ubyte'
            if gz:
                with gzip.open(folder/f'{name}.gz', 'wb') as f: f.write(raw)
            else: (folder/name).write_bytes(raw)
        data[prefix] = (x, y)
    return data['train'][0], data['train'][1], data['t10k'][0], data['t10k'][1]
