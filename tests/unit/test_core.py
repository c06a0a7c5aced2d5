"""Device selection, seeding and atomic writes (with a real kill mid-write)."""
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from ratio_losses.core import ModelOutput, atomic_path, cache_dir, get_device, seed_everything


def test_get_device():
    assert get_device('cpu') == torch.device('cpu')
    assert get_device(None) == get_device('auto')
    expected = 'cuda' if torch.cuda.is_available() else ('mps' if torch.backends.mps.is_available() else 'cpu')
    assert get_device().type == expected
    with pytest.raises(ValueError, match="device='gpu0' is not a device name"):
        get_device('gpu0')
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='CUDA is not available'):
            get_device('cuda:0')


def test_seed_everything_repeats_all_generators():
    def draw():
        return np.random.rand(3).tolist(), torch.rand(3).tolist(), __import__('random').random()
    seed_everything(123); a = draw()
    seed_everything(123); b = draw()
    seed_everything(124); c = draw()
    assert a == b and a != c
    for bad in (-1, 2**32, 1.5, True):
        with pytest.raises(ValueError, match='seed='): seed_everything(bad)


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv('RATIO_LOSSES_CACHE', str(tmp_path/'c'))
    assert cache_dir() == tmp_path/'c' and (tmp_path/'c').is_dir()
    monkeypatch.delenv('RATIO_LOSSES_CACHE')
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path/'xdg'))
    assert cache_dir() == tmp_path/'xdg'/'ratio_losses'


@pytest.mark.process
def test_atomic_write_survives_a_kill(tmp_path):
    "A process killed (SIGKILL) while writing leaves the previous file whole."
    target = tmp_path/'checkpoint.bin'
    target.write_bytes(b'old complete file')
    code = textwrap.dedent(f"""
        import sys, time
        from ratio_losses.core import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            with open(tmp, 'wb') as f:
                f.write(b'x' * 1_000_000); f.flush()
                print('writing', flush=True)
                time.sleep(60)          # killed here
    """)
    proc = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == 'writing'
    os.kill(proc.pid, signal.SIGKILL); proc.wait(10)
    assert target.read_bytes() == b'old complete file'
    with atomic_path(target) as tmp: tmp.write_bytes(b'new')
    assert target.read_bytes() == b'new'


def test_atomic_directory(tmp_path):
    with atomic_path(tmp_path/'unpacked', is_dir=True) as tmp:
        (tmp/'a.txt').write_text('a')
    assert (tmp_path/'unpacked'/'a.txt').read_text() == 'a'
    with atomic_path(tmp_path/'unpacked', is_dir=True) as tmp:   # someone else finished first: theirs is kept
        (tmp/'b.txt').write_text('b')
    assert sorted(p.name for p in (tmp_path/'unpacked').iterdir()) == ['a.txt']
    assert [p.name for p in tmp_path.iterdir()] == ['unpacked']     # no temporaries left


def test_model_output_detach():
    out = ModelOutput(torch.ones(2, 3, requires_grad=True) * 2, features=torch.ones(2, 4, requires_grad=True))
    d = out.detach()
    assert not d.logits.requires_grad and not d.features.requires_grad and d.attention is None
