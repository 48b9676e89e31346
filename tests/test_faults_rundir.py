"""Faults of the run directory, injected: one run per directory (the lock), SIGTERM/SIGHUP, failures that must not stay
`running`, corrupt checkpoints, pickles that must not run, validation that fails, a full disk, changed data, and job
notebooks that a refused attempt must not overwrite. Runs are the tiny model at 9 frames in the 'low' bucket."""
import errno, json, os, pickle, shutil, signal, socket, subprocess, sys, time, warnings
from pathlib import Path

import pytest
import torch

from ltx_nb.core import RequestError, load_request, file_sha256
from ltx_nb.rundir import (LOCK, CHECKPOINT_STATE, CHECKPOINT_INFO, RunDirBusy, RunDirError, acquire_lock, read_progress,
                           read_metrics, latest_checkpoint, list_checkpoints, load_checkpoint)
from ltx_nb.train import train

from conftest import TINY
N = 30  # steps of each run (LTX_NB_MIN_STEPS, set in conftest, allows fewer than 100): checkpoints at 20 and 30
BASE = dict(TINY, number_of_steps=N, warmup_steps=5, checkpoint_interval=20, seed=3)

pytestmark = pytest.mark.usefixtures('one_torch_thread')  # runs compared bit for bit need identical float reductions

@pytest.fixture(scope='module')
def data(tmp_path_factory)->Path:
    from ltx_nb.synth import make_triplets
    d = tmp_path_factory.mktemp('fault_data')
    make_triplets(d, n=2, frames=9)
    return d

@pytest.fixture(scope='module')
def work(tmp_path_factory)->Path: return tmp_path_factory.mktemp('fault_runs')

def request(data:Path, **kw): return load_request(dict(BASE, training_data_url=str(data), **kw))

def tree(root:Path)->dict:
    return {p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob('*')) if p.is_file()}

def dead_pid()->int:
    p = subprocess.Popen([sys.executable, '-c', 'pass']); p.wait()
    return p.pid

@pytest.fixture(scope='module')
def finished(data, work):
    "A completed run that started over a lock left by a dead process: (run dir, the warnings it gave)."
    run_dir = work/'finished'; run_dir.mkdir()
    (run_dir/LOCK).write_text(json.dumps(dict(pid=dead_pid(), host=socket.gethostname(), started=0)))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        res = train(request(data), run_dir=run_dir, progress=False)
    assert res.status == 'completed'
    return run_dir, [str(x.message) for x in w]

# ---------------------------------------------------------------- one run per directory

def test_a_dead_process_lock_is_taken_over_with_a_note_and_released(finished):
    run_dir, msgs = finished
    assert any('taking over the lock' in m and 'which is gone' in m for m in msgs), msgs
    assert not (run_dir/LOCK).exists()

def test_a_second_process_refuses_at_once_and_names_the_holder(data, work):
    run_dir = work/'busy'; run_dir.mkdir()
    holder = subprocess.Popen([sys.executable, '-c', 'import sys, time; from ltx_nb.rundir import acquire_lock; '
                               'acquire_lock(sys.argv[1]); print("held", flush=True); time.sleep(120)', str(run_dir)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        with pytest.raises(RunDirBusy, match=rf'in use by process {holder.pid} on {socket.gethostname()}'):
            train(request(data), run_dir=run_dir, progress=False)
        assert not (run_dir/'progress.json').exists() and not (run_dir/'metrics.jsonl').exists()
        assert json.loads((run_dir/LOCK).read_text())['pid'] == holder.pid  # the holder's lock is left alone
    finally: holder.kill(); holder.wait()

# ---------------------------------------------------------------- signals and failures

def send_at(step:int, sig):
    "A callback that sends this process `sig` at `step` (validation points)."
    def f(n, tr, run_dir, r):
        if n == step: os.kill(os.getpid(), sig)
    return [f]

@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_checkpoint_at_the_step_boundary(data, work, sig):
    run_dir, handler = work/f'signal-{sig.name}', signal.getsignal(sig)
    with pytest.raises(KeyboardInterrupt):
        train(request(data, validation_interval=25), run_dir=run_dir, progress=False, callbacks=send_at(25, sig))
    prog = read_progress(run_dir)
    assert (prog['status'], prog['step'], prog['last_checkpoint']) == ('interrupted', 25, 'step-000025')
    assert sig.name in prog['error'] and 'resume' in prog['error']
    assert latest_checkpoint(run_dir).name == 'step-000025' and not (run_dir/LOCK).exists()
    assert signal.getsignal(sig) == handler  # restored

def test_any_other_failure_records_failed_and_releases_the_lock(data, work):
    def boom(n, tr, run_dir, r): raise RuntimeError('out of luck')
    run_dir = work/'failed'
    with pytest.raises(RuntimeError):
        train(request(data, validation_interval=10), run_dir=run_dir, progress=False, callbacks=[boom])
    prog = read_progress(run_dir)
    assert prog['status'] == 'failed' and prog['error'] == 'RuntimeError: out of luck'
    assert not (run_dir/LOCK).exists()

def test_a_full_disk_names_the_path_and_the_fix(data, work, monkeypatch):
    import ltx_nb.rundir as R
    def full(run_dir, rows): raise OSError(errno.ENOSPC, 'No space left on device', str(Path(run_dir)/R.METRICS))
    monkeypatch.setattr(R, 'append_metrics', full)
    run_dir = work/'full'
    with pytest.raises(RunDirError, match='free space on that disk') as e:
        train(request(data), run_dir=run_dir, progress=False)
    assert str(run_dir/'metrics.jsonl') in str(e.value) and 'resumes' in str(e.value)
    assert read_progress(run_dir)['status'] == 'failed' and not (run_dir/LOCK).exists()

# ---------------------------------------------------------------- checkpoints

def test_a_truncated_newest_checkpoint_is_skipped_and_the_run_resumes_from_the_one_before(data, work):
    run_dir = work/'signal-SIGTERM'  # interrupted at 25 with checkpoints 20 and 25
    assert [c.name for c in list_checkpoints(run_dir)] == ['step-000020', 'step-000025']
    p = run_dir/'checkpoints'/'step-000025'/CHECKPOINT_STATE
    p.write_bytes(p.read_bytes()[:len(p.read_bytes()) // 2])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        res = train(request(data), run_dir=run_dir, progress=False)
    assert res.status == 'completed' and res.summary['resumed_from'] == 20
    assert any('step-000025' in str(x.message) and 'truncated' in str(x.message) for x in w)
    assert any('step-000025' in m for m in read_progress(run_dir)['warnings'])
    assert [m['step'] for m in read_metrics(run_dir) if 'loss' in m] == list(range(1, N + 1))

class _Evil:
    def __reduce__(self): return (os.system, (f'touch {os.environ["EVIL_MARKER"]}',))

def test_a_pickle_in_a_checkpoint_is_not_executed(finished, tmp_path, monkeypatch):
    from ltx_nb.model import load_transformer
    from ltx_nb.train import attach_lora, make_optimizer, warmup_schedule
    run_dir, _ = finished
    ck = tmp_path/f'step-{N:06d}'
    shutil.copytree(run_dir/'checkpoints'/f'step-{N:06d}', ck)
    marker = tmp_path/'pwned'
    monkeypatch.setenv('EVIL_MARKER', str(marker))
    (ck/CHECKPOINT_STATE).write_bytes(pickle.dumps(dict(optimizer=_Evil())))
    info = json.loads((ck/CHECKPOINT_INFO).read_text())
    info['files'][CHECKPOINT_STATE] = dict(bytes=(ck/CHECKPOINT_STATE).stat().st_size, sha256=file_sha256(ck/CHECKPOINT_STATE))
    (ck/CHECKPOINT_INFO).write_text(json.dumps(info))  # the digest matches: only weights_only stands in the way
    r = request(Path('.'))
    tr = load_transformer(r.model)
    params = attach_lora(tr, r.rank, r.seed)
    opt = make_optimizer(params, r, 'cpu')
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(ck, tr, opt, warmup_schedule(opt, 1))
    assert not marker.exists()

# ---------------------------------------------------------------- validation

def test_a_failing_validation_is_a_warning_and_the_lora_is_kept(data, work, monkeypatch):
    import ltx_nb.validation as S
    from ltx_nb.synth import triplet_files
    def broken(r, run_dir, is_main=True, **kw):
        def cb(step, tr, run_dir, r): raise RuntimeError('decoder exploded')
        return cb
    monkeypatch.setattr(S, 'make_validation_callback', broken)
    f = triplet_files(0)
    entry = dict(prompt='x', video_url=str(data/f['end']), mask_url=str(data/f['mask']), reference_video_url=str(data/f['start']))
    run_dir = work/'validation'
    res = train(request(data, validation=[entry], validation_interval=15, validation_number_of_frames=9,
                        validation_aspect_ratio='16:9', validation_resolution='low'), run_dir=run_dir, progress=False)
    assert res.status == 'completed' and (run_dir/'lora.safetensors').exists()
    assert (run_dir/'checkpoints'/f'step-{N:06d}').is_dir()
    prog = read_progress(run_dir)
    assert len(prog['warnings']) == 3 and all('decoder exploded' in m for m in prog['warnings'])
    assert [m['step'] for m in read_metrics(run_dir) if m.get('kind') == 'warning'] == [0, 15, N]  # step 0: the base model

# ---------------------------------------------------------------- job notebooks

def test_an_executed_notebook_that_is_not_json_is_never_kept(tmp_path):
    from ltx_nb.runner import _keep_notebook
    out, tmp = tmp_path/'job.ipynb', tmp_path/'.job.running'
    out.write_text('{"cells": []}'); tmp.write_text('{"cells": [')
    assert _keep_notebook(tmp, out, ok=False, was_completed=True) == out
    assert out.read_text() == '{"cells": []}' and not tmp.exists()
    tmp.write_text('{"cells": [1]}')
    failed = _keep_notebook(tmp, out, ok=False, was_completed=True)
    assert failed.name.startswith('job.failed-') and out.read_text() == '{"cells": []}'

def test_a_refused_job_does_not_replace_the_runs_notebook(data, finished, work):
    from ltx_nb.runner import Job, run_job, JOB_NOTEBOOK
    run_dir = work/'job-refused'
    shutil.copytree(finished[0], run_dir)
    (run_dir/JOB_NOTEBOOK).write_text('{"the": "record of the run"}')
    before = tree(run_dir)
    res = run_job(Job('other', request(data, learning_rate=5e-4), run_dir), progress=False)
    assert res.status == 'failed' and 'different request' in res.error
    after = tree(run_dir)
    assert {k: v for k, v in after.items() if '.failed-' not in k} == before
    assert json.loads(res.notebook.read_text())['cells']  # the attempt's own record, valid JSON, beside the run's

# ---------------------------------------------------------------- changed data (last: it edits the data)

def test_rerunning_on_changed_data_refuses_naming_the_files(data, finished):
    run_dir, _ = finished
    before = tree(run_dir)
    cap = sorted(data.glob('*.txt'))[0]
    cap.write_text(cap.read_text() + ' (edited)')
    with pytest.raises(RequestError, match='on other data') as e:
        train(request(data), run_dir=run_dir, progress=False)
    assert f'changed: {cap.name}' in str(e.value) and 'choose another run_dir' in str(e.value)
    assert tree(run_dir) == before  # the finished run is not touched, and not returned as completed
