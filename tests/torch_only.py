"""A Python environment that holds torch, torchvision and numpy (and what they require) and nothing else: a user's
core install, or a bare GPU host. It is a fresh virtual environment without pip, whose .pth file points at a folder of
links to exactly those distributions of this environment."""
import importlib.metadata as md
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

CORE = ('torch', 'torchvision', 'numpy')


def closure(names) -> set[str]:
    "The distributions `names` need, recursively (requirements whose marker holds here, with the extras asked for)."
    seen, todo = set(), [(n, frozenset()) for n in names]
    while todo:
        name, extras = todo.pop()
        key = (name.lower().replace('_', '-'), extras)
        if key in seen:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue  # an optional requirement this environment does not have
        seen.add(key)
        for spec in dist.requires or []:
            req = Requirement(spec)
            if any(req.marker is None or req.marker.evaluate({'extra': e}) for e in ('', *extras)):
                todo.append((req.name, frozenset(req.extras)))
    return {name for name, _ in seen}


def core_site(folder: Path, names=CORE) -> Path:
    "A folder of links to the files of `names`' distributions (and what they need) in this environment, nothing else."
    folder.mkdir()
    for key in closure(names):
        dist = md.distribution(key)
        base = Path(dist.locate_file(''))
        for top in {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith('..')}:
            if not (folder/top).exists() and (base/top).exists():
                (folder/top).symlink_to(base/top)
    return folder


def torch_only_python(tmp: Path, names=CORE) -> Path:
    "The python of a fresh virtual environment under `tmp` that sees `names` (default: the core) and nothing else."
    venv = tmp/'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True, timeout=120)
    py = venv/'bin'/'python'
    purelib = subprocess.run([str(py), '-c', "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    if names:
        Path(purelib, 'core.pth').write_text(str(core_site(tmp/'core', names)) + '\n')
    return py
