"""What decides a run's bits: the pinned CPU kernels reproduce a committed reference record bit for bit (in a fresh
process, pinned by run_training itself or by the environment it starts with), threads are part of the run, and a
sweep's worker count changes nothing. Every run here is a real process."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ratio_losses.core import numeric_env, numerics_info
from ratio_losses.training import config_from_dict, run_id

pytestmark = pytest.mark.determinism

# The pin makes runs agree across x86-64 CPUs of one vendor, not across vendors: AMD EPYC (Zen 4) and an Intel Xeon
# (with AMX) agree to ~1e-7 after one epoch and drift apart after that (test loss 0.84188 and 0.84238 after two;
# see test_the_vendors_references_differ). So each vendor has its reference, made with make_reference.py there.
REFERENCES = {'AMD': Path(__file__).parents[1]/'reference'/'digits_crl_avx2.json',
              'Intel': Path(__file__).parents[1]/'reference'/'digits_crl_avx2_intel.json'}
VENDOR = next((v for v in REFERENCES if v.lower() in numerics_info()['cpu_model'].lower()), None)
REFERENCE = REFERENCES.get(VENDOR)
MAKER = Path(__file__).parents[1]/'reference'/'make_reference.py'
X86_AVX2 = numerics_info()['machine'] == 'x86_64' and 'avx2' in numerics_info()['cpu_flags']


def _unpinned_env():
    return {k: v for k, v in os.environ.items() if k not in numeric_env('avx2')}


def _run_reference(tmp_path, env, **overrides) -> dict:
    "The reference config (with `overrides`) trained in a fresh Python process; returns what make_reference keeps."
    out = tmp_path/f'ref-{len(list(tmp_path.iterdir()))}.json'
    code = (f"import sys; sys.path.insert(0, {str(MAKER.parent)!r}); import make_reference as m; "
            f"m.main({str(out)!r}, **{overrides!r})")
    proc = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text())


@pytest.mark.skipif(not X86_AVX2 or REFERENCE is None,
                    reason='the references are pinned to AVX2 kernels on AMD and Intel x86-64 CPUs: neither is this one')
@pytest.mark.parametrize('pinned_at_start', [False, True], ids=['pinned-by-run_training', 'pinned-by-environment'])
def test_pinned_run_reproduces_the_committed_reference_bitwise(tmp_path, pinned_at_start):
    ref = json.loads(REFERENCE.read_text())
    env = {**_unpinned_env(), **(numeric_env('avx2') if pinned_at_start else {})}
    got = _run_reference(tmp_path, env)
    assert got['made_on']['aten_cpu_capability'] == 'AVX2'
    assert got['run_id'] == ref['run_id']
    # every float the reference holds, exactly (records made since it carry more keys: the collapse rule's readings)
    assert [{k: h.get(k) for k in r} for h, r in zip(got['history'], ref['history'])] == ref['history']
    assert len(got['history']) == len(ref['history']) and {k: got['final'].get(k) for k in ref['final']} == ref['final']
    assert all('train_max_abs_logit' in h for h in got['history'])
    assert got['weights_sha256'] == ref['weights_sha256']                          # and every weight


def test_the_vendors_references_differ():
    "What the pin does not give: the same bits on an AMD and an Intel CPU (same run id, same first digits, other bits)."
    amd, intel = (json.loads(p.read_text()) for p in REFERENCES.values())
    assert amd['run_id'] == intel['run_id'] and 'AMD' in amd['made_on']['cpu_model'] and 'Intel' in intel['made_on']['cpu_model']
    assert amd['history'][0]['test_loss'] == pytest.approx(intel['history'][0]['test_loss'], rel=1e-6)
    assert amd['final']['test_loss'] != intel['final']['test_loss']
    assert amd['final']['test_loss'] == pytest.approx(intel['final']['test_loss'], rel=1e-2)


@pytest.mark.skipif(not X86_AVX2 or REFERENCE is None, reason='needs an x86-64 CPU of a vendor with a reference')
def test_native_kernels_are_their_own_run_and_say_which_they_were(tmp_path):
    "'Another machine', emulated: this CPU's own kernels. The record names them and the run id differs."
    ref = json.loads(REFERENCE.read_text())
    got = _run_reference(tmp_path, _unpinned_env(), cpu_isa='native')
    native = 'AVX512' if 'avx512f' in numerics_info()['cpu_flags'] else 'AVX2'
    assert got['made_on']['aten_cpu_capability'] == native
    assert got['run_id'] != ref['run_id']


def test_threads_are_part_of_the_run_and_never_from_the_machine():
    c = config_from_dict({'dataset': 'digits'})
    assert c.threads == 1 and c.cpu_isa == 'avx2'
    assert run_id(c) != run_id(config_from_dict({'dataset': 'digits', 'threads': 2}))
    assert run_id(c) != run_id(config_from_dict({'dataset': 'digits', 'cpu_isa': 'native'}))
    for bad, msg in [({'threads': None}, 'threads=None must be a positive integer'),
                     ({'cpu_isa': 'sse4'}, "cpu_isa='sse4' is unknown; valid choices: avx2, avx512, native")]:
        with pytest.raises(ValueError, match=msg): config_from_dict({'dataset': 'digits', **bad})


def test_records_carry_the_numeric_environment(tmp_path):
    from ratio_losses.training import run_training
    rec = run_training({'dataset': 'digits', 'epochs': 1, 'batch_size': 64, 'progress': False, 'out_dir': str(tmp_path),
                        'feature_images': 0, 'softmax_images': 0})
    n = rec['numerics']
    assert n['aten_cpu_capability'] == 'AVX2' and n['threads'] == 1 and n['pin_env']['MKL_CBWR'] == 'AVX2'
    assert n['cpu_model'] and n['cpu_model'] != 'x86_64' and rec['device_name'] == n['cpu_model']
    assert {'deterministic_algorithms', 'mkldnn', 'float32_matmul_precision'} <= set(n)
    assert len(rec['weights_sha256']) == 64


def test_a_sweep_gives_the_same_runs_with_one_worker_or_two(tmp_path):
    from ratio_losses.sweeps.sweep import run_sweep
    preset = {'name': 'w', 'fixed': {'dataset': 'digits', 'epochs': 1, 'batch_size': 64, 'feature_images': 0,
                                     'softmax_images': 0},
              'grid': {'objective': [{'ce': {}}, {'crl': {}}]}, 'seeds': [0]}
    out = {}
    for workers in (1, 2):
        res = run_sweep(preset, runs_root=tmp_path/str(workers), workers=workers, progress=False, print_summary=False)
        assert [r['status'] for r in res] == ['done', 'done']
        recs = [json.loads((r['point'].run_dir/'record.json').read_text()) for r in res]
        out[workers] = [(r['run_id'], r['final'], r['weights_sha256'], r['numerics']['threads']) for r in recs]
    assert out[1] == out[2]
