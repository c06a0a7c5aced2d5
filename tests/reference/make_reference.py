"""Write tests/reference/digits_crl_avx2.json: the record of a tiny run with the CPU kernels pinned (cpu_isa avx2,
one thread), which tests/integration/test_reproducibility.py must reproduce bit for bit on x86-64 CPUs of the vendor it was made on
(AMD: digits_crl_avx2.json; Intel: digits_crl_avx2_intel.json, written by passing that path).

    .venv/bin/python tests/reference/make_reference.py      # only when a deliberate change moves the numbers

It runs in a fresh process, so `run_training` pins the kernels before anything computes."""
import json
import sys
import tempfile
from pathlib import Path

from ratio_losses.training import run_training

CONFIG = {'dataset': 'digits', 'epochs': 2, 'batch_size': 64, 'lr': 0.05, 'objective': {'crl': {'alpha': 1.5, 'beta': 1.0}},
          'crop_padding': 2, 'softmax_images': 0, 'feature_images': 0, 'save_model': False, 'progress': False,
          'threads': 1, 'cpu_isa': 'avx2'}
KEPT = ('run_id', 'history', 'final', 'weights_sha256', 'steps_per_epoch', 'train_size', 'test_size')


def reference_of(record: dict) -> dict:
    "What must match bitwise (all but the seconds of the history), and where it was made."
    ref = {k: record[k] for k in KEPT}
    ref['history'] = [{k: v for k, v in h.items() if k != 'seconds'} for h in ref['history']]
    n = record['numerics']
    ref['made_on'] = {'cpu_model': n['cpu_model'], 'cpu_flags': n['cpu_flags'], 'aten_cpu_capability': n['aten_cpu_capability'],
                      'torch': record['versions']['torch']}
    return ref


def main(out: str | None = None, **overrides):
    with tempfile.TemporaryDirectory() as d:
        record = run_training({**CONFIG, **overrides, 'out_dir': d})
    ref = reference_of(record)
    text = json.dumps(ref, indent=1, sort_keys=True) + '\n'
    if out: Path(out).write_text(text)
    return ref


if __name__ == '__main__':
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).with_name('digits_crl_avx2.json')))
