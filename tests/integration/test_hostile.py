"""What a hostile tester tried, each fault reproduced with the real thing and its one-line answer checked.

- A checkpoint that would run code when loaded, or that is not a checkpoint at all.
- A full disk: the file-size limit (RLIMIT_FSIZE) makes the kernel refuse writes past a size, as a full disk does, for
  the results table's append and a checkpoint's save.
- A record or checkpoint of the same settings made on another device type.
- Two checkouts and one environment.
- Damaged, empty and racing claims.
- The launcher's setup lines, a table of other columns, a diverging run, a damaged record in --status, Ctrl-C, the
  CLI's defaults, numpy hyperparameters, iterations alone."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from clirun import like_a_terminal

pytestmark = pytest.mark.process
ROOT = Path(__file__).resolve().parents[2]
EXE = Path(sys.executable).parent/'ratio-losses'
TINY = {'dataset': 'digits', 'batch_size': 64, 'iterations': 4, 'feature_images': 0, 'softmax_images': 0,
        'progress': False, 'tensorboard': False, 'save_model': False}


def _in_process_with_file_limit(code: str, limit: int) -> subprocess.CompletedProcess:
    "Run `code` in a fresh Python whose writes past `limit` bytes fail with EFBIG, as on a full disk."
    prologue = (f"import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
                f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n")
    return subprocess.run([sys.executable, '-c', prologue + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300)


# --- checkpoints --------------------------------------------------------------------------------------------------

class _RunsCode:
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (Path.touch, (Path(self.marker),))


def test_a_checkpoint_that_would_run_code_is_refused_in_one_line(tmp_path):
    from ratio_losses.training.checkpoints import load_checkpoint
    marker, ckpt = tmp_path/'code-ran', tmp_path/'checkpoint.pt'
    torch.save({'identity': {}, 'payload': _RunsCode(str(marker))}, ckpt)
    with pytest.raises(ValueError, match=r'checkpoint.pt holds objects other than tensors and plain data') as e:
        load_checkpoint(ckpt)
    assert '\n' not in str(e.value) and not marker.exists() and ckpt.exists()
    torch.save({'identity': 3, 'epoch': 1}, ckpt)
    with pytest.raises(ValueError, match=r"checkpoint.pt is not a checkpoint of ratio_losses \(a mapping whose 'identity'"):
        load_checkpoint(ckpt)


def test_a_real_checkpoint_loads_weights_only_and_resumes(tmp_path):
    "The trainer's own checkpoints hold tensors and plain data only (the numpy generator's state as a tensor)."
    from ratio_losses.training import run_training
    from ratio_losses.training.checkpoints import _rng_state, _set_rng_state, load_checkpoint
    state = _rng_state()
    a = np.random.rand(3)
    _set_rng_state(state)
    assert np.array_equal(np.random.rand(3), a)
    rec = run_training({**TINY, 'out_dir': str(tmp_path/'run'), 'keep_checkpoint': True})
    ckpt = load_checkpoint(tmp_path/'run'/'checkpoint.pt')
    assert ckpt['identity'] and ckpt['device'] == 'cpu' and rec['status'] in ('complete', 'collapsed')  # 4 steps


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(tmp_path):
    from ratio_losses.training.checkpoints import load_checkpoint, save_checkpoint
    path = tmp_path/'checkpoint.pt'
    save_checkpoint(path, {'identity': {'a': 1}, 'weights': torch.zeros(10)})
    r = _in_process_with_file_limit(f"""
        import torch
        from ratio_losses.training.checkpoints import save_checkpoint
        try:
            save_checkpoint({str(path)!r}, {{'identity': {{'a': 2}}, 'weights': torch.zeros(100_000)}})
        except OSError as e:
            print('ERROR', e)
        """, limit=20_000)
    assert r.stdout.startswith('ERROR could not write the checkpoint') and 'the previous checkpoint is kept' in r.stdout, r.stderr
    assert r.stdout.count('\n') == 1 and 'Traceback' not in r.stderr
    assert load_checkpoint(path)['identity'] == {'a': 1}
    assert [p.name for p in tmp_path.iterdir()] == ['checkpoint.pt']     # no temporary file left behind


# --- the results table ----------------------------------------------------------------------------------------------

def _row(i):
    return {'run_id': f'run{i:08d}', 'name': f'point {i}', 'loss': 'crl', 'seed': i, 'test_error': 0.1 * i,
            'tags': '{"scale": "cpu"}', 'record': f'/runs/point{i}/record.json'}


def test_a_full_disk_leaves_the_results_table_whole(tmp_path):
    from ratio_losses.training.results_table import append_result, read_results
    table = tmp_path/'results.csv'
    append_result(table, _row(1))
    size = table.stat().st_size
    r = _in_process_with_file_limit(f"""
        from ratio_losses.training.results_table import append_result
        try:
            append_result({str(table)!r}, {_row(2)!r})
        except OSError as e:
            print('ERROR', e)
        """, limit=size + 20)
    assert r.stdout.startswith('ERROR could not append the run') and 'the table is left as it was' in r.stdout, r.stderr
    assert table.stat().st_size == size                                # cut back: no partial line
    append_result(table, _row(3))                                      # space again: the next row is whole
    assert [row['run_id'] for row in read_results(table)] == ['run00000001', 'run00000003']


def test_a_line_cut_short_by_a_crash_is_removed_before_the_next_row(tmp_path, capsys):
    from ratio_losses.training.results_table import append_result, read_results
    table = tmp_path/'results.csv'
    append_result(table, _row(1))
    with open(table, 'a') as f:
        f.write('run00000002,point 2,,,,,12')                           # a crash mid-line (no newline)
    append_result(table, _row(3))
    assert 'ended in a line cut short' in capsys.readouterr().err
    rows = read_results(table)
    assert [row['run_id'] for row in rows] == ['run00000001', 'run00000003'] and rows[1]['tags'] == '{"scale": "cpu"}'


def test_a_row_lost_to_a_full_disk_is_added_when_the_run_is_started_again(tmp_path):
    from ratio_losses.training import read_results, run_training
    config = {**TINY, 'out_dir': str(tmp_path/'run')}
    rec = run_training(config)
    table = tmp_path/'results.csv'
    table.write_text(table.read_text().splitlines()[0] + '\n')          # the row lost, the record kept
    again = run_training(config)                                        # complete already: not trained again ...
    assert again['weights_sha256'] == rec['weights_sha256'] and again['finished_at'] == rec['finished_at']
    assert [r['run_id'] for r in read_results(table)] == [rec['run_id']]   # ... and its row is back


def test_a_table_of_other_columns_is_found_before_training(tmp_path):
    from ratio_losses.training import run_training
    (tmp_path/'results.csv').write_text('a,b,c\n1,2,3\n')
    with pytest.raises(ValueError, match='has other columns than this version writes'):
        run_training({**TINY, 'out_dir': str(tmp_path/'run')})
    assert not (tmp_path/'run'/'checkpoint.pt').exists() and not (tmp_path/'run'/'record.json').exists()


# --- device types --------------------------------------------------------------------------------------------------

def test_a_record_or_checkpoint_of_another_device_type_is_not_this_run(tmp_path):
    from ratio_losses.training import run_training
    from ratio_losses.training.checkpoints import save_checkpoint
    config = {**TINY, 'out_dir': str(tmp_path/'run')}
    rec = run_training(config)
    path = tmp_path/'run'/'record.json'
    path.write_text(json.dumps({**rec, 'device': 'cuda:0'}))              # the same settings, trained on a GPU
    with pytest.raises(ValueError, match=r'record.json is this run\'s on a cuda device, and this run is on cpu'):
        run_training(config)
    path.unlink()
    ckpt = tmp_path/'run'/'checkpoint.pt'
    save_checkpoint(ckpt, {'identity': {}, 'device': 'cuda:0'})
    with pytest.raises(ValueError, match=r'checkpoint.pt is this run\'s on a cuda device'):
        run_training(config)


# --- two checkouts, one environment ---------------------------------------------------------------------------------

def test_a_second_checkout_does_not_run_the_first_ones_code(tmp_path):
    other = tmp_path/'second-clone'
    (other/'ratio_losses').mkdir(parents=True)
    (other/'ratio_losses'/'__init__.py').write_text('__version__ = "0.1.0"\n')
    (other/'nbs'/'experiments').mkdir(parents=True)
    (other/'nbs'/'experiments'/'train.ipynb').write_text('{}')
    for command in (['sweep', str(ROOT/'configs'/'user'/'example.yaml'), '--dry-run'], ['train', '--iterations', '1']):
        r = subprocess.run([str(EXE), *command], cwd=other, capture_output=True, text=True, timeout=300)
        assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr[-2000:]
        (line,) = [l for l in r.stderr.splitlines() if l.startswith('error: ')]
        assert f'this checkout is {other.resolve()}, but this environment imports ratio_losses from {ROOT}' in line
        assert f'PYTHONPATH={other.resolve()}' in line


# --- claims ---------------------------------------------------------------------------------------------------------

def test_an_empty_or_damaged_claim_holds_the_point(tmp_path, capsys):
    from ratio_losses.sweeps.locks import claim_point, process_owner, read_claim
    for text in ('', '{"host": "x", "pid'):
        (tmp_path/'claim.json').write_text(text)
        assert claim_point(tmp_path, process_owner()) is False
        assert 'cannot be read; the point is taken as held' in capsys.readouterr().err
        assert (tmp_path/'claim.json').read_text() == text               # not taken over
    (tmp_path/'claim.json').unlink()
    assert claim_point(tmp_path, process_owner()) and read_claim(tmp_path)['pid'] == os.getpid()


def test_claims_taken_at_once_have_one_winner_and_are_never_seen_half_written(tmp_path):
    from ratio_losses.sweeps.locks import claim_point, read_claim
    for attempt in range(20):
        d = tmp_path/f'point{attempt}'
        wins, seen, start = [], [], threading.Barrier(8)
        def claim(i):
            start.wait()
            if claim_point(d, {'host': 'elsewhere', 'pid': i, 'started': None}):   # another host's: always live
                wins.append(i)
            if (d/'claim.json').exists():
                seen.append(read_claim(d))
        threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        assert len(wins) == 1 and all(c is not None and c['pid'] == wins[0] for c in seen), (wins, seen)
        assert sorted(p.name for p in d.iterdir()) == ['claim.json']       # no temporary file left


# --- the CLI ---------------------------------------------------------------------------------------------------------

def test_a_diverging_run_recorded_is_one_line(tmp_path):
    r = subprocess.run([str(EXE), 'train', '--dataset', 'digits', '--iterations', '6', '--lr', '1e6', '--out-dir',
                        str(tmp_path/'run'), '--set', 'on_divergence=record', '--set', 'progress=false'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and 'Traceback' not in r.stderr + r.stdout, r.stderr[-2000:]
    (line,) = [l for l in r.stderr.splitlines() if l.startswith('error: ')]
    assert line.startswith('error: the run diverged in epoch 1') and 'recorded as diverged' in line
    assert json.loads((tmp_path/'run'/'record.json').read_text())['status'] == 'diverged'


def test_status_marks_a_damaged_record_and_lists_the_others(tmp_path):
    from ratio_losses.sweeps.presets import expand_sweep, load_preset
    preset = ROOT/'configs'/'user'/'example.yaml'
    points = expand_sweep(load_preset(preset), 'cpu', tmp_path)
    points[0].run_dir.mkdir(parents=True)
    (points[0].run_dir/'record.json').write_text('{"run_id": ')
    r = subprocess.run([str(EXE), 'sweep', str(preset), '--runs-root', str(tmp_path), '--status'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and 'Traceback' not in r.stderr, r.stderr[-2000:]
    assert f'{len(points)} points: 1 damaged, {len(points) - 1} new' in r.stdout
    assert 'is not a valid record' in r.stdout


def test_ctrl_c_of_train_is_one_line_not_a_traceback(tmp_path):
    p = subprocess.Popen([str(EXE), 'train', '--dataset', 'digits', '--epochs', '500', '--out-dir', str(tmp_path/'run')],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=like_a_terminal)
    end = time.time() + 120
    while time.time() < end and not (tmp_path/'run'/'checkpoint.pt').exists():
        time.sleep(0.2)
    assert (tmp_path/'run'/'checkpoint.pt').exists(), 'the run did not start'
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130 and 'Traceback' not in err, err[-2000:]
    assert 'interrupted: nothing is lost; run the same command again to resume' in err


def test_the_help_quotes_the_defaults_train_uses():
    r = subprocess.run([str(EXE), 'train', '--help'], capture_output=True, text=True, timeout=300)
    assert '(default: fashion_mnist)' in ' '.join(r.stdout.split())


def test_the_sweep_shows_the_setup_lines_its_slurm_jobs_run(tmp_path, capsys):
    from ratio_losses.sweeps.sweep import run_sweeps
    run_sweeps([ROOT/'configs'/'user'/'example.yaml'], 'cpu', runs_root=tmp_path, dry_run=True,
               launcher={'executor': 'slurm', 'setup': ['module load cuda', 'source ~/venv/bin/activate']})
    assert ('every Slurm job of this sweep first runs these setup lines as shell: module load cuda; '
            'source ~/venv/bin/activate') in capsys.readouterr().out


# --- the Python API --------------------------------------------------------------------------------------------------

def test_numpy_numbers_are_hyperparameters():
    import ratio_losses.losses as L
    assert L.MutualChannelLoss(channels_per_class=np.int64(3)).xi == 3
    assert L.LargeMarginSoftmaxLoss(margin=np.int32(2)).margin == 2
    assert L.MixtureSeparabilityLoss(patience=np.int64(5)).patience == 5
    assert L.GradientBoostingCrossEntropyLoss(k=np.int64(3)).k == 3


def test_iterations_alone_is_enough(tmp_path):
    from ratio_losses.training import RunConfig, run_training
    rec = run_training({'dataset': 'digits', 'iterations': 3, 'out_dir': str(tmp_path/'a'), 'progress': False,
                        'tensorboard': False, 'save_model': False, 'feature_images': 0, 'softmax_images': 0})
    assert rec['iterations'] == 3 and rec['config']['epochs'] is None
    rec = run_training(RunConfig(dataset='digits', feature_images=0, softmax_images=0, progress=False,
                                 tensorboard=False, save_model=False), iterations=2, out_dir=str(tmp_path/'b'))
    assert rec['iterations'] == 2
