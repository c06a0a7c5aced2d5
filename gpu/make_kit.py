"""Build gpu-kit/: what a bare GPU host (Python, torch, torchvision, no Jupyter stack, no network) needs to run the
`gpu` scale through the same sweep and experiment notebook as every other scale, within 64 MiB.

    python gpu/make_kit.py [--out gpu-kit] [--pythons 3.10 3.11 3.12 3.13]      (make gpu-kit)

It writes
- wheels/: the experiments extra's packages and everything they need beyond torch, torchvision and numpy (papermill,
  nbclient, ipykernel, jupyter-client, pyzmq, tornado, PyYAML, tqdm, submitit, psutil, filelock, ...), x86_64,
  fetched from the package registry for each Python version asked for (pure-Python wheels once), with pip's own wheel
  (the host needs no pip) and, per version, constraints-X.Y.txt pinning exactly the set resolved for it;
- data/fashion_mnist/: the four IDX files of Fashion-MNIST as distributed (gzipped, 30 MB), from the dataset's root;
- COMMIT and TREE.sha256: the commit of this checkout (+dirty where its tracked files differ from it) and a digest of
  each tracked file, so that run.sh records the commit only if the tree it runs is the one the kit was built from;
- run.sh (from gpu/run.sh) and MANIFEST.txt (what is in the kit, with sizes).

matplotlib and tensorboard are left out (optional at run time: the notebook skips its figure, the gpu scale sets
tensorboard: false), as are torch, torchvision, numpy and pillow, which must be the host's own (a torchvision built for
the host's torch).
"""
import argparse
import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # this checkout's package (torch is needed to build the kit, not to run it)
from ratio_losses.core import EXTRAS  # noqa: E402
from ratio_losses.data.registry import DEBIAN_FASHION_MNIST, DatasetNotFoundError, _has, _locate  # noqa: E402

LIMIT = 64 * 2**20
PYTHONS = ('3.10', '3.11', '3.12', '3.13')
# the modules a sweep needs (the experiments extra's, as `require_extra` checks them), as distributions
REQUIREMENTS = tuple({'yaml': 'pyyaml'}.get(m, m) for m in EXTRAS['experiments'])
HOST_PROVIDES = ('torch', 'torchvision', 'numpy', 'pillow')   # never carried: the host's own builds
PLATFORMS = ('manylinux_2_28_x86_64', 'manylinux_2_27_x86_64', 'manylinux_2_26_x86_64', 'manylinux_2_17_x86_64',
             'manylinux2014_x86_64', 'manylinux_2_12_x86_64', 'manylinux2010_x86_64', 'manylinux_2_5_x86_64',
             'manylinux1_x86_64')
IDX_FILES = ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz', 't10k-images-idx3-ubyte.gz',
             't10k-labels-idx1-ubyte.gz')


def fail(msg: str):
    sys.exit(f"make_kit: {msg}")


def wheel_name(path: Path) -> tuple[str, str]:
    "The normalised distribution name and version of a wheel file."
    name, version = path.name.split('-')[:2]
    return re.sub(r'[-_.]+', '-', name).lower(), version


def download(python: str, dest: Path, cache: Path) -> list[Path]:
    "Every wheel REQUIREMENTS need on CPython `python`, x86_64 Linux, fetched into `dest` (a per-version folder)."
    cmd = [sys.executable, '-m', 'pip', 'download', '-q', '--disable-pip-version-check', '--only-binary=:all:',
           '--python-version', python, '--implementation', 'cp', '--cache-dir', str(cache), '-d', str(dest),
           *[a for p in PLATFORMS for a in ('--platform', p)], *REQUIREMENTS]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if r.returncode:
        err = [line for line in r.stderr.splitlines() if line.startswith('ERROR')] or r.stderr.splitlines()[-1:]
        fail(f"pip download for Python {python} failed: {' '.join(err)[:300]} (is the package registry reachable?)")
    return sorted(dest.glob('*.whl'))


def dataset_files() -> list[Path]:
    "The four gzipped IDX files of Fashion-MNIST, found as ratio_losses finds the dataset ($RATIO_LOSSES_DATA, Debian's)."
    try:
        found = _locate('fashion_mnist', None, ('', 'fashion_mnist', 'fashion-mnist', 'FashionMNIST/raw'),
                        _has(*IDX_FILES), (DEBIAN_FASHION_MNIST,))
    except DatasetNotFoundError as e:
        fail(f"Fashion-MNIST's four .gz files were not found: {' '.join(str(e).split())[:400]}")
    return [found/f for f in IDX_FILES]


def tree_digest(out: Path) -> str:
    "COMMIT and TREE.sha256 of this checkout: the commit (+dirty), and sha256sum lines of every tracked file."
    sha = subprocess.run(['git', '-C', str(ROOT), 'rev-parse', 'HEAD'], capture_output=True, text=True)
    if sha.returncode:
        fail(f"{ROOT} is not a git checkout: the kit names the commit its records come from")
    dirty = subprocess.run(['git', '-C', str(ROOT), 'status', '--porcelain', '--untracked-files=no'],
                           capture_output=True, text=True).stdout.strip()
    commit = sha.stdout.strip() + ('+dirty' if dirty else '')
    files = subprocess.run(['git', '-C', str(ROOT), 'ls-files', '-z'], capture_output=True, text=True,
                           check=True).stdout.split('\0')
    lines = [f"{hashlib.sha256((ROOT/f).read_bytes()).hexdigest()}  {f}" for f in files
             if f and (ROOT/f).is_file() and not (ROOT/f).is_symlink()]
    (out/'TREE.sha256').write_text('\n'.join(lines) + '\n')
    (out/'COMMIT').write_text(commit + '\n')
    return commit


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', default=str(ROOT/'gpu-kit'))
    p.add_argument('--pythons', nargs='+', default=list(PYTHONS), help='CPython versions to carry wheels for')
    p.add_argument('--cache', default=str(ROOT/'.cache'/'gpu-kit'), help="pip's download cache (kept between builds)")
    a = p.parse_args()
    for v in a.pythons:
        if not re.fullmatch(r'3\.\d+', v): fail(f"--pythons {v}: give versions as 3.X, e.g. 3.12")
    out, cache = Path(a.out).resolve(), Path(a.cache).resolve()
    staging = out.with_name(out.name + '.partial')
    shutil.rmtree(staging, ignore_errors=True)
    (staging/'wheels').mkdir(parents=True)
    print(f"gpu kit for CPython {', '.join(a.pythons)} (x86_64) -> {out}")
    for v in a.pythons:
        got = download(v, staging/'per'/v, cache)
        pins = sorted({wheel_name(w) for w in got if wheel_name(w)[0] not in HOST_PROVIDES})
        for w in got:
            if wheel_name(w)[0] not in HOST_PROVIDES and not (staging/'wheels'/w.name).exists():
                shutil.copy2(w, staging/'wheels'/w.name)
        (staging/'wheels'/f'constraints-{v}.txt').write_text(''.join(f'{n}=={ver}\n' for n, ver in pins))
        print(f"  Python {v}: {len(pins)} distributions")
    r = subprocess.run([sys.executable, '-m', 'pip', 'download', '-q', '--disable-pip-version-check', '--no-deps',
                        '--only-binary=:all:', '--cache-dir', str(cache), '-d', str(staging/'wheels'), 'pip'],
                       capture_output=True, text=True, timeout=300)
    if r.returncode: fail(f"pip download pip failed: {r.stderr.strip().splitlines()[-1:]}")
    shutil.rmtree(staging/'per')
    (staging/'wheels'/'requirements.txt').write_text(''.join(f'{n}\n' for n in REQUIREMENTS))
    (staging/'data'/'fashion_mnist').mkdir(parents=True)
    for f in dataset_files(): shutil.copy2(f, staging/'data'/'fashion_mnist'/f.name)
    shutil.copy2(ROOT/'gpu'/'run.sh', staging/'run.sh')
    (staging/'run.sh').chmod(0o755)
    commit = tree_digest(staging)
    files = sorted(f for f in staging.rglob('*') if f.is_file())
    total = sum(f.stat().st_size for f in files)
    (staging/'MANIFEST.txt').write_text(
        f"gpu-kit of ratio_losses {commit}, CPython {' '.join(a.pythons)}, {total / 2**20:.1f} MiB\n"
        + ''.join(f"{f.stat().st_size:>10}  {f.relative_to(staging)}\n" for f in files))
    if total > LIMIT:
        fail(f"the kit is {total / 2**20:.1f} MiB, over the 64 MiB a GPU host takes beside the tree; "
             f"carry fewer Python versions (--pythons)")
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    print(f"gpu-kit: {total / 2**20:.1f} MiB (limit 64 MiB), commit {commit}; on the GPU host: gpu-kit/run.sh OUT_DIR")


if __name__ == '__main__':
    main()
