"""A researcher's own preset, from `configs/user/`, gets what the paper presets get: trained by one sweep (one line
per finished point even without the progress bar), then the paired table (difference, 95 % CI, paired t and exact
sign-flip p) and its figure from one command."""
import csv
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.process, pytest.mark.kernel]
ROOT = Path(__file__).resolve().parents[2]
EXE = Path(sys.executable).parent/'ratio-losses'
PRESET = ROOT/'configs'/'user'/'example.yaml'


def test_a_users_preset_gets_its_paired_table_and_figure(tmp_path):
    r = subprocess.run([str(EXE), 'sweep', str(PRESET), '--runs-root', str(tmp_path), '--no-progress', '--workers', '2'],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    done = [line for line in r.stdout.splitlines() if line.startswith('done') and 'example: ' in line]
    assert len(done) == 12, r.stdout[-3000:]                                 # one line per point, no progress bar
    r = subprocess.run([str(EXE), 'compare', str(PRESET), '--runs-root', str(tmp_path), '--out', str(tmp_path/'fig')],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    (row,) = [line for line in r.stdout.splitlines() if line.startswith('| CRL')]
    cells = [c.strip() for c in row.strip('|').split('|')]
    assert cells[1] == 'CE' and cells[6] == '6' and '(' in cells[2]       # vs CE, 6 paired seeds, a CI
    with open(tmp_path/'fig'/'example_paired.csv') as f:
        (rec,) = list(csv.DictReader(f))
    assert float(rec['ci_low']) <= float(rec['diff']) <= float(rec['ci_high']) and 0 < float(rec['p_exact']) <= 1
    assert (tmp_path/'fig'/'example_paired.png').stat().st_size > 1000
    assert row in (tmp_path/'fig'/'example_paired.md').read_text()


def test_the_paper_presets_and_make_reproduce_never_read_configs_user():
    "configs/*.yaml, which the tests, `make reproduce` and the report read, is one level: configs/user/ is not in it."
    paper = sorted(p.name for p in (ROOT/'configs').glob('*.yaml'))
    assert 'example.yaml' not in paper and (ROOT/'configs'/'user'/'example.yaml').is_file()
    assert 'PRESETS ?= configs/*.yaml' in (ROOT/'Makefile').read_text()
