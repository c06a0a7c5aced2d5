"""Executors against real processes and a real Slurm (tests/slurm_cluster.py): a job array, a failing point, GPU
requests, --no-wait / --status / cancel / rerun, a time limit that requeues and resumes, Ctrl-C, local workers that
die with their sweep, two sweeps at once. Every wait has a wall-clock bound."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from slurm_cluster import missing_programs, slurm_cluster
from ratio_losses.sweeps.launcher import Launcher
from ratio_losses.sweeps.executors import make_executor
from ratio_losses.sweeps.locks import read_claim
from ratio_losses.sweeps.presets import expand_sweep
from ratio_losses.sweeps.sweep import run_sweep
from ratio_losses.training import read_results
from clirun import like_a_terminal

pytestmark = pytest.mark.kernel

EXE = str(Path(sys.executable).parent/'ratio-losses')
TINY = {'dataset': 'digits', 'batch_size': 64, 'iterations': 6, 'epochs': None, 'feature_images': 0, 'softmax_images': 0}


def _preset(tmp_path, name='tiny', fixed=None, grid=None, seeds=(0,)):
    path = tmp_path/f'{name}.yaml'
    path.write_text(yaml.safe_dump({'name': name, 'fixed': {**TINY, **(fixed or {})},
                                    'grid': grid or {'objective': [{'ce': {}}, {'crl': {}}]}, 'seeds': list(seeds)}))
    return path


def _wait_for(cond, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        v = cond()
        if v: return v
        time.sleep(0.25)
    raise AssertionError(f'timed out after {timeout} s waiting for {what}')


@pytest.fixture(scope='module')
def slurm():
    if missing_programs():
        if os.environ.get('CI'): pytest.fail(f"Slurm is not installed ({', '.join(missing_programs())}): make slurm")
        pytest.skip(f"Slurm is not installed ({', '.join(missing_programs())}): make slurm")
    with slurm_cluster() as env:
        saved = {k: os.environ.get(k) for k in ('SLURM_CONF', 'PATH')}
        os.environ.update(SLURM_CONF=env['SLURM_CONF'], PATH=env['PATH'])   # for submitit in this process
        try: yield env
        finally:
            for k, v in saved.items():
                if v is None: os.environ.pop(k, None)
                else: os.environ[k] = v


def _squeue(env, *ids):
    out = subprocess.run(['squeue', '-h', '-r', '--states=all', '-o', '%i|%T'] + (['-j', ','.join(ids)] if ids else []),
                         env=env, capture_output=True, text=True).stdout
    return dict(line.split('|') for line in out.split())


# --- Slurm ---------------------------------------------------------------------------------------------------------

def test_slurm_sweep_runs_as_a_job_array(slurm, tmp_path):
    preset = _preset(tmp_path, grid={'objective': [{'ce': {}}, {'crl': {}}, {'nllr': {}}]})
    t = time.time()
    r = subprocess.run([EXE, 'sweep', str(preset), '--executor', 'slurm', '--runs-root', str(tmp_path/'runs'),
                        '--cpus', '1', '--mem-gb', '1', '--time-min', '10'], env=slurm, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'Kernel is running over TCP' not in r.stdout + r.stderr
    assert r.stdout.count('done     tiny: ') == 3, r.stdout
    rows = read_results(tmp_path/'runs'/'cpu'/'results.csv')
    assert len(rows) == 3 and len({row['run_id'] for row in rows}) == 3
    logs = sorted((tmp_path/'runs'/'cpu'/'.jobs'/'tiny').glob('*_log.out'))
    assert len(logs) == 3 and len({p.name.split('_')[0] for p in logs}) == 1    # one array: ARRAYID_TASK_...
    for p in expand_sweep(yaml.safe_load(preset.read_text()), 'cpu', tmp_path/'runs'):
        assert (p.run_dir/'record.json').exists() and (p.run_dir/'notebook.ipynb').exists() and read_claim(p.run_dir) is None
    print(f'3 points through Slurm: {time.time() - t:.1f} s')


def test_slurm_point_that_raises_reports_its_traceback_and_the_others_finish(slurm, tmp_path):
    bad = tmp_path/'bad.ipynb'
    nb = json.loads(Path(run_sweep.__globals__['EXPERIMENT_NOTEBOOK']).read_text())
    nb['cells'].append({'cell_type': 'code', 'id': 'boom', 'metadata': {}, 'execution_count': None, 'outputs': [],
                        'source': ["if objective == {'crl': {}}: raise RuntimeError('boom in the crl point')"]})
    bad.write_text(json.dumps(nb))
    res = run_sweep(yaml.safe_load(_preset(tmp_path).read_text()), runs_root=tmp_path/'runs', notebook=bad,
                    launcher={'executor': 'slurm', 'cpus': 1}, progress=False, print_summary=False)
    by = {r['point'].label: r for r in res}
    assert by['objective=ce, seed=0']['status'] == 'done'
    failed = by['objective=crl, seed=0']
    assert failed['status'] == 'failed' and 'boom in the crl point' in failed['error'], failed
    assert f"job {failed['job_id']}; logs: " in failed['error'] and '_log.err' in failed['error']
    assert json.loads((failed['point'].run_dir/'failure.json').read_text())['job_id'] == failed['job_id']


def test_gpu_requests_reach_the_job_as_cuda_visible_devices(slurm, tmp_path):
    ex = make_executor(Launcher(executor='slurm', gpus=1, cpus=1, time_min=5), tmp_path)
    visible = lambda: os.environ.get('CUDA_VISIBLE_DEVICES')      # cloudpickled by value: read in the job
    jobs = [ex.submit(visible) for _ in range(2)]
    seen = [j.result() for j in jobs]       # the test cluster has two fake GPUs
    assert all(s in ('0', '1') for s in seen), seen
    none = make_executor(Launcher(executor='slurm', cpus=1, time_min=5), tmp_path).submit(visible)
    assert none.result() in (None, '')


def test_two_task_point_trains_data_parallel(slurm, tmp_path):
    "--tasks 2: one job, two ranks joined over gloo, one executed notebook (rank 0's) and one record and row."
    preset = _preset(tmp_path, fixed={'iterations': None, 'epochs': 2}, grid={'objective': [{'cc': {}}], 'head': ['se_attention']})
    r = subprocess.run([EXE, 'sweep', str(preset), '--executor', 'slurm', '--runs-root', str(tmp_path/'runs'),
                        '--cpus', '1', '--tasks', '2', '--time-min', '10'], env=slurm, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    (point,) = expand_sweep(yaml.safe_load(preset.read_text()), 'cpu', tmp_path/'runs')
    rec = json.loads((point.run_dir/'record.json').read_text())
    assert rec['world_size'] == 2 and rec['status'] == 'complete'
    assert sorted(p.name for p in point.run_dir.glob('*.ipynb')) == ['notebook.ipynb']
    assert len(read_results(tmp_path/'runs'/'cpu'/'results.csv')) == 1
    logs = sorted(p.name.split('_')[1] for p in (tmp_path/'runs'/'cpu'/'.jobs'/'tiny').glob('*_log.out'))
    assert logs == ['0', '1']                                         # one log per task
    # the same run in one process: batch norms see half of each batch under DDP, so close, not equal
    single = run_sweep(yaml.safe_load(preset.read_text()), runs_root=tmp_path/'single', progress=False,
                       print_summary=False, launcher={'executor': 'debug'})
    one = json.loads((single[0]['point'].run_dir/'record.json').read_text())
    assert one['run_id'] == rec['run_id'] and one['world_size'] == 1
    assert rec['final']['train_loss'] == pytest.approx(one['final']['train_loss'], rel=0.05)


def test_no_wait_status_cancel_and_rerun(slurm, tmp_path):
    preset = _preset(tmp_path, fixed={'iterations': None, 'epochs': 200})
    base = [EXE, 'sweep', str(preset), '--executor', 'slurm', '--runs-root', str(tmp_path/'runs'), '--cpus', '1']
    r = subprocess.run(base + ['--no-wait'], env=slurm, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and 'submitted 2 job(s): ' in r.stdout, r.stdout + r.stderr
    ids = r.stdout.split('submitted 2 job(s): ')[1].split('.')[0].split(', ')
    st = subprocess.run(base + ['--status'], env=slurm, capture_output=True, text=True, timeout=60).stdout
    assert st.count('queued') + st.count('running') >= 2, st
    again = subprocess.run(base + ['--no-wait'], env=slurm, capture_output=True, text=True, timeout=120)
    assert 'submitted 0 job(s)' in again.stdout and again.stdout.count('skipped  tiny: ') == 2, again.stdout
    subprocess.run(['scancel'] + ids, env=slurm, check=True)
    _wait_for(lambda: all(s not in ('PENDING', 'RUNNING', 'COMPLETING') for s in _squeue(slurm, *ids).values()), 60,
              'the cancelled jobs to end')
    st = subprocess.run(base + ['--status'], env=slurm, capture_output=True, text=True, timeout=60).stdout
    assert 'queued' not in st and 'running' not in st, st
    # the same command again, waiting this time (fewer epochs: another run id, so a quick finish)
    preset.write_text(preset.read_text().replace('epochs: 200', 'epochs: 1'))
    done = subprocess.run(base, env=slurm, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.count('done     tiny: ') == 2, done.stdout + done.stderr


def test_a_submission_the_scheduler_refuses_is_one_line(slurm, tmp_path):
    "An unknown partition or a bad --sbatch option: one line naming what sbatch said, no claim left behind."
    preset = _preset(tmp_path)
    for extra, said in ((['--partition', 'no_such_partition'], 'partition'), (['--sbatch', 'no-such-option=1'], 'option')):
        r = subprocess.run([EXE, 'sweep', str(preset), '--executor', 'slurm', '--runs-root', str(tmp_path/'runs'), *extra],
                           env=slurm, capture_output=True, text=True, timeout=300)
        assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr[-3000:]
        (line,) = [l for l in r.stderr.splitlines() if l.startswith('error: ')]
        assert line.startswith('error: slurm refused the jobs: ') and said in line.lower() and '--partition' in line, line
        points = expand_sweep(yaml.safe_load(preset.read_text()), 'cpu', tmp_path/'runs')
        assert all(read_claim(q.run_dir) is None for q in points)


def test_ctrl_c_cancels_the_jobs_and_fails_no_point(slurm, tmp_path):
    preset = _preset(tmp_path, fixed={'iterations': None, 'epochs': 200})
    p = subprocess.Popen([EXE, 'sweep', str(preset), '--executor', 'slurm', '--runs-root', str(tmp_path/'runs'),
                          '--cpus', '1', '--cancel-on-interrupt'], env=slurm, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, preexec_fn=like_a_terminal)
    points = expand_sweep(yaml.safe_load(preset.read_text()), 'cpu', tmp_path/'runs')
    claims = _wait_for(lambda: all((read_claim(q.run_dir) or {}).get('slurm_job') for q in points)
                       and [read_claim(q.run_dir)['slurm_job'] for q in points], 60, 'the jobs to be submitted')
    time.sleep(1)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=180)   # a guard against a hang: cancelling through Slurm is slow on a loaded machine
    assert p.returncode == 130 and 'interrupted' in err and 'FAILED' not in out, out + err
    _wait_for(lambda: all(s not in ('PENDING', 'RUNNING', 'COMPLETING') for s in _squeue(slurm, *claims).values()), 60,
              'the jobs to be cancelled')
    assert set(_squeue(slurm, *claims).values()) <= {'CANCELLED'}
    assert all(read_claim(q.run_dir) is None and not (q.run_dir/'failure.json').exists() for q in points)


def test_time_limit_requeues_and_resumes_bitwise(slurm, tmp_path):
    """A job signalled before its time limit requeues (as often as it needs: max_requeues); the point resumes from its
    checkpoint and ends as an uninterrupted run. slurmctld checks time limits every 30 s and sends the warning signal up
    to one such period early (when now + 30 s + delay >= end), so with a 2-minute limit and a 60-s delay every share
    lasts 30-60 s from the job's start: enough to start the kernel and train, however loaded the machine. The run is
    made to outlast the longest share, so it is requeued at least once."""
    fixed = {'iterations': None, 'epochs': 400, 'subset': 1200, 'test_subset': 200, 'batch_size': 100}
    spec = yaml.safe_load(_preset(tmp_path, fixed=fixed, grid={'objective': [{'crl': {}}]}).read_text())
    ref = run_sweep(spec, runs_root=tmp_path/'ref', launcher={'executor': 'debug'}, progress=False, print_summary=False)[0]
    assert ref['status'] == 'done' and ref['seconds'] > 60, ref        # longer than the longest share
    res = run_sweep(spec, runs_root=tmp_path/'slurm', launcher={'executor': 'slurm', 'cpus': 1, 'time_min': 2,
                                                                 'signal_delay_s': 60, 'max_requeues': 20},
                    progress=False, print_summary=False)[0]
    # 'complete': the last share found the record its predecessor wrote just before the signal
    assert res['status'] in ('done', 'complete'), res.get('error')
    a = json.loads((ref['point'].run_dir/'record.json').read_text())
    b = json.loads((res['point'].run_dir/'record.json').read_text())
    assert b['resumed_after_epoch'], 'the job was never requeued'
    assert a['weights_sha256'] == b['weights_sha256'] and a['final'] == b['final']
    log = next((tmp_path/'slurm'/'cpu'/'.jobs'/'tiny').glob('*_0_log.out')).read_text()
    assert 'Requeued job' in log and 'timed-out' in log


# --- local workers ---------------------------------------------------------------------------------------------------

def test_local_workers_die_with_a_killed_sweep(tmp_path):
    preset = _preset(tmp_path, fixed={'iterations': None, 'epochs': 200})
    p = subprocess.Popen([EXE, 'sweep', str(preset), '--workers', '2', '--runs-root', str(tmp_path/'runs'),
                          '--no-progress'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    points = expand_sweep(yaml.safe_load(preset.read_text()), 'cpu', tmp_path/'runs')
    _wait_for(lambda: all((q.run_dir/'notebook.running.ipynb').exists() for q in points), 120, 'both kernels to start')
    family = psutil.Process(p.pid).children(recursive=True)
    assert len(family) >= 4                    # per point: submitit's controller, the job, the kernel
    p.kill(); p.wait(timeout=10)
    gone, alive = psutil.wait_procs(family, timeout=20)
    assert not alive, [q.cmdline() for q in alive]


def test_two_sweeps_at_once_train_each_point_once(tmp_path):
    preset = _preset(tmp_path, grid={'objective': [{'ce': {}}, {'crl': {}}, {'nllr': {}}]})
    cmd = [EXE, 'sweep', str(preset), '--workers', '1', '--runs-root', str(tmp_path/'runs')]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [q.communicate(timeout=300)[0] for q in procs]
    assert all(q.returncode == 0 for q in procs), outs
    assert sum(o.count('done     tiny: ') for o in outs) == 3, outs
    rows = read_results(tmp_path/'runs'/'cpu'/'results.csv')
    with open(tmp_path/'runs'/'cpu'/'results.csv') as f: lines = f.read().splitlines()
    assert len(rows) == 3 and len(lines) == 4
    # whatever the other sweep skipped is complete now: a third run trains nothing
    third = subprocess.run(cmd + ['--dry-run'], capture_output=True, text=True, timeout=120)
    assert third.stdout.count('complete') == 3, third.stdout


def test_local_ctrl_c_is_an_interrupt_not_a_failure(tmp_path):
    preset = _preset(tmp_path, fixed={'iterations': None, 'epochs': 200}, grid={'objective': [{'ce': {}}]})
    p = subprocess.Popen([EXE, 'sweep', str(preset), '--runs-root', str(tmp_path/'runs'), '--cancel-on-interrupt'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=like_a_terminal)
    point = expand_sweep(yaml.safe_load(preset.read_text()), 'cpu', tmp_path/'runs')[0]
    _wait_for(lambda: (point.run_dir/'notebook.running.ipynb').exists(), 120, 'the kernel to start')
    family = psutil.Process(p.pid).children(recursive=True)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=180)   # a guard against a hang: the kernel's shutdown is slow on a loaded machine
    assert p.returncode == 130 and 'FAILED' not in out + err and 'interrupted' in err, out + err
    assert not (point.run_dir/'failure.json').exists() and read_claim(point.run_dir) is None
    gone, alive = psutil.wait_procs(family, timeout=20)
    assert not alive, [q.cmdline() for q in alive]


def test_the_executors_notebook_sweeps_locally_and_through_slurm(slurm, tmp_path):
    nb = Path(__file__).resolve().parents[2]/'nbs'/'05e_sweeps.executors.ipynb'
    out = tmp_path/'executed.ipynb'
    r = subprocess.run([str(Path(sys.executable).parent/'papermill'), str(nb), str(out), '--cwd', str(nb.parent)],
                       env=slurm, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    text = out.read_text()
    assert 'through Slurm, jobs ' in text


# --- kept kernels ----------------------------------------------------------------------------------------------------

def _same_run(a: Path, b: Path):
    "Two runs' records equal but for times and places, their saved weights and their artefacts equal bit for bit."
    import numpy as np
    import torch
    def rec(d):
        r = json.loads((d/'record.json').read_text())
        for k in ('wall_seconds', 'train_seconds', 'finished_at', 'started_at'): r.pop(k, None)
        for k in ('out_dir', 'results_table'): r['config'].pop(k, None)
        r['history'] = [{k: v for k, v in h.items() if 'seconds' not in k} for h in r['history']]
        return r
    assert rec(a) == rec(b)
    wa, wb = (torch.load(d/'model.pt', map_location='cpu', weights_only=True) for d in (a, b))
    flat = lambda w: w.get('model', w) if isinstance(w, dict) else w
    wa, wb = flat(wa), flat(wb)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    with np.load(a/'artifacts.npz') as fa, np.load(b/'artifacts.npz') as fb:
        assert sorted(fa.files) == sorted(fb.files) and all(np.array_equal(fa[k], fb[k]) for k in fa.files)


@pytest.mark.determinism
def test_a_kept_kernel_gives_the_bits_of_a_new_one(tmp_path):
    """Two different points back to back in one kept kernel: each point's record, saved weights and artefacts are
    bitwise those of the same point in a new kernel. The first point changes what a run may leave behind: another
    seed and thread count, deterministic algorithms, and an objective with state of its own (center loss's centers)."""
    from ratio_losses.sweeps.executors import execute_point
    from ratio_losses.sweeps.kernels import WarmKernel, kernel_name
    from ratio_losses.sweeps.presets import EXPERIMENT_NOTEBOOK
    base = {**TINY, 'iterations': 20, 'save_model': True, 'feature_images': 60, 'softmax_images': 4, 'progress': False}
    points = {'a': {**base, 'objective': {'center': {'lam': 0.01, 'alpha': 0.5}}, 'seed': 3, 'threads': 2,
                    'deterministic': True},
              'b': {**base, 'objective': {'crl': {}}, 'seed': 0}}
    nb, kernel = str(EXPERIMENT_NOTEBOOK), kernel_name()
    for name, c in points.items():
        r = execute_point({**c, 'out_dir': str(tmp_path/'new'/name)}, nb, kernel)
        assert r['status'] == 'done', r
    warm = WarmKernel(kernel)
    try:
        for name, c in points.items():
            r = execute_point({**c, 'out_dir': str(tmp_path/'kept'/name)}, nb, kernel, warm=warm)
            assert r['status'] == 'done', r
        assert (warm.starts, warm.points) == (1, 2)            # the second point really ran in the first one's kernel
    finally: warm.shutdown()
    for name in points: _same_run(tmp_path/'new'/name, tmp_path/'kept'/name)
    executed = json.loads((tmp_path/'kept'/'b'/'notebook.ipynb').read_text())
    assert [c['execution_count'] for c in executed['cells'] if c['cell_type'] == 'code'][0] == 1


def _failing_notebook(tmp_path, condition: str, what: str) -> Path:
    bad = tmp_path/'bad.ipynb'
    nb = json.loads(Path(run_sweep.__globals__['EXPERIMENT_NOTEBOOK']).read_text())
    nb['cells'].append({'cell_type': 'code', 'id': 'boom', 'metadata': {}, 'execution_count': None, 'outputs': [],
                        'source': [f"if {condition}: raise RuntimeError({what!r})"]})
    bad.write_text(json.dumps(nb))
    return bad


def test_local_workers_keep_their_kernel_and_go_on_after_a_failing_point(tmp_path):
    bad = _failing_notebook(tmp_path, "objective == {'crl': {}}", 'boom in the crl point')
    preset = yaml.safe_load(_preset(tmp_path, grid={'objective': [{'ce': {}}, {'crl': {}}, {'nllr': {}}, {'focal': {}}]},
                                    seeds=(0, 1)).read_text())
    res = run_sweep(preset, runs_root=tmp_path/'runs', notebook=bad, launcher={'executor': 'local', 'workers': 2},
                    progress=False, print_summary=False)
    by = {r['point'].label: r for r in res}
    for label, r in by.items():
        # six steps leave a model near chance: the collapse rule may mark it; either way the point finished
        assert r['status'] in (('failed',) if 'crl' in label else ('done', 'collapsed')), (label, r)
    failed = by['objective=crl, seed=0']
    assert 'boom in the crl point' in failed['error'] and f"job {failed['job_id']}; logs: " in failed['error']
    assert json.loads((failed['point'].run_dir/'failure.json').read_text())['job_id'] == failed['job_id']
    assert len({r['job_id'] for r in res}) == 2                # 8 points, 2 workers: each kept its process throughout
    # the executed notebooks number their cells from 1, as in a new kernel
    for r in res:
        cells = json.loads(Path(r['notebook']).read_text())['cells']
        assert [c['execution_count'] for c in cells if c['cell_type'] == 'code'][0] == 1


def test_a_worker_killed_mid_point_fails_that_point_and_another_worker_runs_the_rest(tmp_path):
    preset = _preset(tmp_path, grid=[{'objective': [{'ce': {}}], 'iterations': [100000]},
                                     {'objective': [{'crl': {}}, {'nllr': {}}], 'iterations': [6]}])
    p = subprocess.Popen([EXE, 'sweep', str(preset), '--workers', '1', '--runs-root', str(tmp_path/'runs'), '--no-progress'],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    points = expand_sweep(yaml.safe_load(preset.read_text()), 'cpu', tmp_path/'runs')
    long = [q for q in points if q.config['iterations'] == 100000][0]
    _wait_for(lambda: (long.run_dir/'notebook.running.ipynb').exists(), 120, 'the long point to start')
    jobs = [q for q in psutil.Process(p.pid).children(recursive=True) if 'submitit.core._submit' in ' '.join(q.cmdline())]
    assert len(jobs) == 1, [q.cmdline() for q in psutil.Process(p.pid).children(recursive=True)]
    jobs[0].kill()
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 1, out
    assert out.count('FAILED   tiny: ') == 1 and 'FAILED   tiny: iterations=100000' in out, out
    assert 'has not produced any output' in out and '_log.err' in out, out      # the dead job's own error and its logs
    assert not (long.run_dir/'record.json').exists() and (long.run_dir/'failure.json').exists()
    others = [q for q in points if q is not long]
    assert all((q.run_dir/'record.json').exists() for q in others)               # a new worker ran the rest


def test_slurm_jobs_may_take_several_points_each(slurm, tmp_path):
    preset = yaml.safe_load(_preset(tmp_path, grid={'objective': [{'ce': {}}, {'crl': {}}, {'nllr': {}}]}).read_text())
    res = run_sweep(preset, runs_root=tmp_path/'runs', launcher={'executor': 'slurm', 'cpus': 1, 'points_per_job': 2},
                    progress=False, print_summary=False)
    assert [r['status'] for r in res] == ['done'] * 3, res
    jobs = [r['job_id'] for r in res]
    assert jobs[0] == jobs[1] != jobs[2], jobs                   # chunks of two: two array tasks for three points
    ref = run_sweep(preset, runs_root=tmp_path/'ref', launcher={'executor': 'debug'}, progress=False, print_summary=False)
    for a, b in zip(res, ref):
        assert json.loads((a['point'].run_dir/'record.json').read_text())['weights_sha256'] == \
            json.loads((b['point'].run_dir/'record.json').read_text())['weights_sha256']
