"""Training end to end with real processes and files: kill -9 and resume give the same LoRA bit for bit, a finished job
returns at once, a different request is refused, a diverging loss fails cleanly, Ctrl-C checkpoints and exits 130,
two `accelerate` processes make one run, the LoRA loads in diffusers, the LoRA learns to use the reference, and a
half-size reference trains."""
import json, os, re, signal, socket, subprocess, sys, time
from pathlib import Path

import pytest
import torch

from ltx_nb.core import RequestError, load_request, latent_grid
from ltx_nb.model import (LORA_TARGETS, add_lora, forward_video, load_lora_state, load_transformer, lora_metadata,
                          resolve_model, set_lora_state)
from ltx_nb.rundir import latest_checkpoint, read_metrics
from ltx_nb.train import TrainingFailed, learning_check, masked_batch, step_generator, train

BIN = Path(sys.executable).parent
# The 16:9 'low' bucket at 17 frames is the cheapest real grid: 3×9×16 = 432 target tokens (+ 432 reference tokens).
N = 30  # steps of every run below but the learning check's (LTX_NB_MIN_STEPS, set in conftest, allows so few)
BASE = dict(model='embedded:tiny', number_of_frames=17, resolution='low', aspect_ratio='16:9', number_of_steps=N,
            rank=8, learning_rate=1e-3, warmup_steps=10, checkpoint_interval=5, validation_interval=0, seed=7,
            trigger_phrase='repl4ce')

# ---------------------------------------------------------------- helpers

def env()->dict:
    """Subprocess environment: the session's cache, offline, and one thread per process. The 2 cores are shared with other
    jobs; oversubscribed torch threads made a step 10-30x slower here, and a fixed thread count keeps float reductions
    identical between the runs we compare bit for bit."""
    return {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', 'HF_HUB_OFFLINE': '1',
            'TOKENIZERS_PARALLELISM': 'false', 'PYTHONIOENCODING': 'utf-8'}

pytestmark = pytest.mark.usefixtures('one_torch_thread')  # runs compared bit for bit need identical float reductions

def write_request(path:Path, data:Path, **kw)->Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(BASE, training_data_url=str(data), **kw), indent=2))
    return path

def cli(req:Path, run_dir:Path, *extra)->list[str]:
    "`ltx-nb run REQ --run-dir RUN_DIR --quiet`."
    return [str(BIN/'ltx-nb'), 'run', str(req), '--run-dir', str(run_dir), '--quiet', *extra]

def ltx_run(req:Path, run_dir:Path, *extra, timeout=600)->subprocess.CompletedProcess:
    "Run to completion."
    return subprocess.run(cli(req, run_dir, *extra), env=env(), capture_output=True, text=True, timeout=timeout)

def ltx_start(req:Path, run_dir:Path, log:Path)->subprocess.Popen:
    "Run in the background, output to `log` (a pipe could fill up and stall it)."
    f = open(log, 'w')
    p = subprocess.Popen(cli(req, run_dir), env=env(), stdout=f, stderr=subprocess.STDOUT, text=True)
    f.close()
    return p

def read_json(p:Path):
    try: return json.loads(Path(p).read_text())
    except (FileNotFoundError, json.JSONDecodeError): return None

def wait_until(pred, proc:subprocess.Popen, log:Path, timeout=300, every=0.02):
    "Poll `pred()` until it returns something truthy; fail if `proc` ends first."
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = pred()
        if v: return v
        assert proc.poll() is None, f"process ended (rc {proc.returncode}) before the condition:\n{log.read_text()[-3000:]}"
        time.sleep(every)
    proc.kill(); pytest.fail(f"timed out after {timeout}s:\n{log.read_text()[-3000:]}")

def finish(proc:subprocess.Popen, log:Path, timeout=600)->Path:
    rc = proc.wait(timeout)
    assert rc == 0, log.read_text()[-3000:]
    return log

def tensors(path:Path)->dict:
    from safetensors.torch import load_file
    return load_file(str(path))

def assert_same_lora(a:Path, b:Path):
    ta, tb = tensors(a), tensors(b)
    assert ta.keys() == tb.keys()
    diff = {k: (ta[k] - tb[k]).abs().max().item() for k in ta if not torch.equal(ta[k], tb[k])}
    assert not diff, f"{len(diff)} of {len(ta)} tensors differ, largest {max(diff.values()):.3g}: {list(diff)[:3]}"

def tree(root:Path)->dict:
    "{relative path: (bytes, mtime_ns)} of every file below `root`."
    return {p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob('*')) if p.is_file()}

def steps_of(run_dir:Path)->list[int]:
    return [m['step'] for m in read_metrics(run_dir)]

def checkpoint_state(ck:Path)->tuple[int,int]:
    "(step the checkpoint says, optimizer steps actually in it)."
    st = torch.load(ck/'state.pt', weights_only=True)
    return st['step'], int(next(iter(st['optimizer']['state'].values()))['step'])

# ---------------------------------------------------------------- shared data and the reference run

@pytest.fixture(scope='module')
def data(tmp_path_factory)->Path:
    "Three triplets of 17 frames (the generator's mix of sizes, containers and mask kinds)."
    from ltx_nb.synth import make_triplets
    d = tmp_path_factory.mktemp('train_data')
    make_triplets(d, n=3, frames=17)
    return d

@pytest.fixture(scope='module')
def work(tmp_path_factory)->Path:
    return tmp_path_factory.mktemp('train_runs')

@pytest.fixture(scope='module')
def req(data, work)->Path:
    return write_request(work/'req.json', data)

@pytest.fixture(scope='module')
def warm(req, work, request):
    """Cache the tiny model, latents and text once, so the subprocesses below all start alike; and start the long
    learning run first when it is selected, so that it uses the second core while the others run."""
    if any(i.name == 'test_the_lora_learns_to_use_the_reference' for i in request.session.items):
        request.getfixturevalue('learning_proc')
    r = load_request(req)
    from ltx_nb.dataset import check_dataset
    from ltx_nb.latents import cache_dataset
    return [c.load() for c in cache_dataset(check_dataset(r, progress=False), r, progress=False)]

@pytest.fixture(scope='module')
def reference_proc(req, work, warm):
    "The uninterrupted run of `req`, started in the background (it runs while the kill-and-resume test works)."
    run_dir, log = work/'reference', work/'reference.log'
    return ltx_start(req, run_dir, log), run_dir, log

@pytest.fixture(scope='module')
def reference_run(reference_proc)->Path:
    proc, run_dir, log = reference_proc
    finish(proc, log)
    return run_dir

# ---------------------------------------------------------------- 1. kill -9 and resume

def test_kill_and_resume_gives_the_same_lora(req, work, reference_proc, request):
    run_dir, log = work/'killed', work/'killed.log'
    proc = ltx_start(req, run_dir, log)
    ck = lambda: (read_json(run_dir/'checkpoints'/'latest.json') or {}).get('step', 0) >= 10
    wait_until(ck, proc, log)
    proc.send_signal(signal.SIGKILL); proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir/'lora.safetensors').exists(), "killed too late: the run had finished"
    assert read_json(run_dir/'progress.json')['status'] == 'running'
    resume_from = int(latest_checkpoint(run_dir).name.split('-')[1])
    assert 10 <= resume_from < N

    res = ltx_run(req, run_dir)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.startswith(f'completed: {N} steps')
    prog = read_json(run_dir/'progress.json')
    assert (prog['status'], prog['step'], prog['summary']['resumed_from']) == ('completed', N, resume_from)
    assert prog['summary']['steps_trained'] == N - resume_from
    assert steps_of(run_dir) == list(range(1, N + 1))  # the rows after the checkpoint were dropped and redone once

    ref = request.getfixturevalue('reference_run')
    # bit for bit: the seeded LoRA init, per-step generators, the restored optimizer/scheduler/RNG and one thread
    assert_same_lora(run_dir/'lora.safetensors', ref/'lora.safetensors')
    got, want = read_metrics(run_dir), read_metrics(ref)
    assert [(m['loss'], m['sigma'], m['lr']) for m in got] == [(m['loss'], m['sigma'], m['lr']) for m in want]

class _Stop(Exception): "Ends a run from a callback."

def lora_after_step_1(req:Path, run_dir:Path, torch_seed:int)->dict:
    "The LoRA weights after one step of `req` in this process, with the global torch RNG seeded to `torch_seed`."
    from ltx_nb.model import lora_state
    got = {}
    def grab(step, tr, run_dir, r):
        got.update({k: v.detach().clone() for k, v in lora_state(tr).items()}); raise _Stop
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_seed)
        with pytest.raises(_Stop):
            train(load_request(req, dict(validation_interval=1)), run_dir=run_dir, progress=False, callbacks=[grab])
    return got

def test_same_request_same_lora_whatever_the_global_rng(req, work, warm):
    a, b = lora_after_step_1(req, work/'rng-a', 1), lora_after_step_1(req, work/'rng-b', 2)
    assert all(torch.equal(a[k], b[k]) for k in a), "same request, different LoRA after step 1"

# ---------------------------------------------------------------- 2. and 3. re-running

def test_rerunning_a_finished_job_returns_at_once(req, reference_run):
    before = tree(reference_run)
    t0 = time.monotonic()
    res = ltx_run(req, reference_run)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f'completed: {N} steps') and str(reference_run/'lora.safetensors') in res.stdout
    assert tree(reference_run) == before  # progress, metrics, checkpoints, LoRA: not even touched
    print(f"re-run of a finished job: {time.monotonic() - t0:.1f} s (interpreter and accelerate start-up)")

def test_a_different_request_in_the_same_run_dir_is_refused(data, work, reference_run):
    before = tree(reference_run)
    other = write_request(work/'other.json', data, learning_rate=5e-4)
    res = ltx_run(other, reference_run)
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert 'holds a run of a different request' in res.stderr and str(reference_run) in res.stderr
    assert tree(reference_run) == before

# ---------------------------------------------------------------- 4. non-finite loss

def test_non_finite_loss_fails_and_keeps_the_last_good_checkpoint(req, work, warm, monkeypatch):
    import ltx_nb.train as T
    calls, real = [], T.masked_loss
    def nan_at_25(*a):
        calls.append(1)
        loss = real(*a)
        return loss * float('nan') if len(calls) == 25 else loss
    monkeypatch.setattr(T, 'masked_loss', nan_at_25)
    run_dir = work/'nan'
    with pytest.raises(TrainingFailed, match=r'at step 25: training diverged') as e:
        train(load_request(req, dict(checkpoint_interval=10)), run_dir=run_dir, progress=False)
    msg = str(e.value)
    assert 'step-000020' in msg and 'lower learning_rate' in msg
    prog = read_json(run_dir/'progress.json')
    assert prog['status'] == 'failed' and prog['error'] == msg and prog['step'] == 24
    assert sorted(p.name for p in (run_dir/'checkpoints').iterdir()) == ['latest.json', 'step-000010', 'step-000020']
    assert read_json(run_dir/'checkpoints'/'latest.json')['step'] == 20
    assert checkpoint_state(run_dir/'checkpoints'/'step-000020') == (20, 20)
    assert not (run_dir/'lora.safetensors').exists()
    assert steps_of(run_dir) == list(range(1, 25))  # nothing logged for the bad step

# ---------------------------------------------------------------- 5. Ctrl-C

def test_ctrl_c_checkpoints_exits_130_and_resumes(req, work, warm, reference_run):
    run_dir, log = work/'interrupted', work/'interrupted.log'
    proc = ltx_start(req, run_dir, log)
    wait_until(lambda: len(read_metrics(run_dir)) >= 12, proc, log)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 130, log.read_text()[-3000:]
    assert 'interrupted' in log.read_text()
    prog = read_json(run_dir/'progress.json')
    s = prog['step']
    assert prog['status'] == 'interrupted' and 'resume' in prog['error'] and 12 <= s < N
    assert prog['last_checkpoint'] == f'step-{s:06d}' and (run_dir/'checkpoints'/f'step-{s:06d}'/'state.pt').exists()
    assert read_json(run_dir/'checkpoints'/'latest.json')['step'] == s
    assert not (run_dir/'lora.safetensors').exists()

    res = ltx_run(req, run_dir)
    assert res.returncode == 0, res.stderr[-3000:]
    prog = read_json(run_dir/'progress.json')
    assert (prog['status'], prog['summary']['resumed_from']) == ('completed', s)
    assert steps_of(run_dir) == list(range(1, N + 1))

def _interrupt_in_loss(monkeypatch, step:int):
    "Raise KeyboardInterrupt (what Ctrl-C does) inside the loss of `step`, before its optimizer step."
    import ltx_nb.train as T
    calls, real = [], T.masked_loss
    def f(*a):
        calls.append(1)
        if len(calls) == step: raise KeyboardInterrupt
        return real(*a)
    monkeypatch.setattr(T, 'masked_loss', f)

def _interrupt_after(step:int):
    "A callback that raises KeyboardInterrupt at `step`'s hooks, after its optimizer step and metrics line."
    def f(n, tr, run_dir, r):
        if n == step: raise KeyboardInterrupt
    return [f]

def test_ctrl_c_before_the_optimizer_step_checkpoints_what_was_done(req, work, warm, monkeypatch):
    _interrupt_in_loss(monkeypatch, 13)
    run_dir = work/'ctrl-c-loss'
    with pytest.raises(KeyboardInterrupt):
        train(load_request(req), run_dir=run_dir, progress=False)
    assert checkpoint_state(latest := run_dir/'checkpoints'/'step-000012') == (12, 12), latest
    assert read_json(run_dir/'progress.json')['step'] == 12

def test_ctrl_c_after_the_optimizer_step_checkpoints_what_was_done(req, work, warm):
    run_dir = work/'ctrl-c-metric'
    with pytest.raises(KeyboardInterrupt):
        train(load_request(req, dict(validation_interval=13)), run_dir=run_dir, progress=False, callbacks=_interrupt_after(13))
    st = read_json(run_dir/'progress.json')['step']
    assert st == 13  # step 13's update was applied before the interrupt; the checkpoint keeps it
    assert checkpoint_state(run_dir/'checkpoints'/f'step-{st:06d}') == (13, 13)  # its label = the updates it holds

# ---------------------------------------------------------------- 6. two processes

def free_port()->int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def accelerate_cmd(script:Path, *args)->list[str]:
    """`accelerate launch` of `script ARGS` in two CPU processes (gloo) on this machine. Not `--cpu`: accelerate 1.15
    sends `--cpu` to its simple launcher, which starts ONE process whatever `--num_processes` says (several CPU
    processes only through mpirun and `--mpirun_hostfile`). `--multi_gpu` starts them through torch.distributed.run,
    and `train`'s `Accelerator(cpu=True)` then joins them with gloo."""
    return [str(BIN/'accelerate'), 'launch', '--multi_gpu', '--num_processes', '2', '--num_machines', '1',
            '--mixed_precision', 'no', '--dynamo_backend', 'no', '--num_cpu_threads_per_process', '1',
            '--main_process_port', str(free_port()), str(script), *map(str, args)]

def accelerate_env()->dict:
    return {**env(), 'MASTER_ADDR': '127.0.0.1', 'CUDA_VISIBLE_DEVICES': ''}

# `ltx-nb run` under `accelerate launch`, with each rank's LoRA dumped at the validation points (steps 10, 20 and 30):
# the same initialisation and the same averaged gradients must keep them equal. One launch checks both.
RANK_DUMP = """
import sys
from accelerate import PartialState
from safetensors.torch import save_file
import ltx_nb.train
from ltx_nb.cli import main
from ltx_nb.model import lora_state
def dump(step, tr, run_dir, r):
    save_file({k: v.detach().contiguous() for k, v in lora_state(tr).items()},
              f"{sys.argv[1]}/rank{PartialState().process_index}-step{step}.safetensors")
ltx_nb.train.validation_callbacks = lambda st, callbacks: [dump]  # what `train(callbacks=[dump])` gets, through the CLI
sys.exit(main(sys.argv[2:]))
"""

def test_two_processes_make_one_run_and_hold_the_same_lora(data, work, warm):
    req2 = write_request(work/'two.json', data, seed=11, validation_interval=10)
    run_dir, dumps, script = work/'two', work/'two-dump', work/'rank_dump.py'
    dumps.mkdir(); script.write_text(RANK_DUMP)
    res = subprocess.run(accelerate_cmd(script, dumps, 'run', req2, '--run-dir', run_dir, '--quiet'), env=accelerate_env(),
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-4000:])
    assert res.stdout.count(f'completed: {N} steps') == 2  # each process prints its result
    check_two_process_run(run_dir)
    for step in (10, 20, N):
        r0, r1 = tensors(dumps/f'rank0-step{step}.safetensors'), tensors(dumps/f'rank1-step{step}.safetensors')
        assert r0.keys() == r1.keys() and all(torch.equal(r0[k], r1[k]) for k in r0), f"the ranks' LoRAs differ at step {step}"
    ref = tensors(dumps/'rank0-step10.safetensors')
    assert any(v.abs().max() > 0 for k, v in ref.items() if 'lora_B' in k)  # they did train
    final = load_lora_state(run_dir/'checkpoints'/f'step-{N:06d}'/'lora.safetensors')
    assert all(torch.equal(final[k], v) for k, v in tensors(dumps/f'rank0-step{N}.safetensors').items())  # what was saved

def check_two_process_run(run_dir:Path):
    assert sorted(p.name for p in run_dir.glob('*.safetensors')) == ['lora.safetensors']
    assert steps_of(run_dir) == list(range(1, N + 1))  # only the main process logs
    prog = read_json(run_dir/'progress.json')
    assert prog['status'] == 'completed' and prog['summary']['processes'] == 2
    assert read_metrics(run_dir)[0]['tokens'] == 2 * 864  # both processes' tokens per step
    assert not list(run_dir.glob('**/.tmp*'))

# ---------------------------------------------------------------- 7. the LoRA in diffusers

def test_lora_loads_in_diffusers_and_reproduces_the_trained_model(reference_run, warm):
    from diffusers import LTX2Pipeline
    f = reference_run/'lora.safetensors'
    r = load_request(reference_run/'request.json')
    md = lora_metadata(f)
    want = dict(rank='8', alpha='8', trigger_phrase='repl4ce', training_type='v2v-masked',
                base_model=str(resolve_model('embedded:tiny')), base_model_id='embedded:tiny',
                reference_downscale_factor='1', frames='17', resolution='512x288')
    assert {k: md.get(k) for k in want} == want
    keys = list(tensors(f))
    assert all(re.fullmatch(r'diffusion_model\.transformer_blocks\.\d+\.(attn1|attn2|ff)\..*\.lora_[AB]\.weight', k) for k in keys)
    assert all(re.fullmatch(r'diffusion_model\.' + LORA_TARGETS + r'\.lora_[AB]\.weight', k) for k in keys)
    base = load_transformer(r.model)
    assert len(keys) == 2 * 10 * base.config.num_layers and not any('audio' in k for k in keys)

    s = warm[0]
    b = masked_batch(base, s, 0.6, torch.randn(s['keep'].numel(), s['target'].shape[0], generator=step_generator(1, 2)))
    args = (b.tokens, b.timesteps, b.sigma, b.coords, b.context, b.context_mask)
    with torch.no_grad():
        untrained = forward_video(base, *args)
        trained = forward_video(set_lora_state(add_lora(load_transformer(r.model), r.rank), load_lora_state(f)).eval(), *args)
        pipe = LTX2Pipeline.from_pretrained(resolve_model(r.model))
        pipe.load_lora_weights(str(f))
        loaded = forward_video(pipe.transformer, *args)
    d_loaded, d_base = (loaded - trained).abs().max().item(), (trained - untrained).abs().max().item()
    print(f"diffusers vs trained: {d_loaded:.2e}; trained vs base: {d_base:.3f}")
    assert d_loaded < 1e-5
    assert d_base > 1e-2

# ---------------------------------------------------------------- 8. it learns

# Measured on 5 triplets, 16:9 'low', 17 frames, rank 8, warm-up 20, one thread (the ratios at steps 400 and 500;
# these runs predate the seeded LoRA init, so each also had its own random initialisation):
#   lr 3e-3 seed 1: step 400 0.525 / 0.724, step 500 0.500 / 0.702   (trained/untrained, trained/mismatched reference)
#   lr 3e-3 seed 2: step 400 0.530 / 0.801, step 500 0.510 / 0.745
#   lr 3e-3 seed 3: step 400 0.518 / 0.808, step 500 0.497 / 0.779
#   lr 2e-3 seed 0: step 400 0.564 / 0.847, step 500 0.537 / 0.791, step 800 0.487 / 0.717
# With the seeded init the test's own run (seed 1) is bit-reproducible on this stack: 0.505 / 0.810.
# With the trained embedded:tiny (its base learned the domain without the reference) the same run gives, after
# 250 / 350 / 400 / 500 steps: 0.219 / 0.668, 0.205 / 0.567, 0.214 / 0.502, 0.199 / 0.466 (2026-12-01, one thread,
# each a run of its own). At step 100 the mismatched ratio is still 1.00: the LoRA first learns what every training item
# shares, then how to copy the reference into the masked region. 400 steps keep a margin under 0.6 at 4/5 of the cost
# (500 took ~110 CPU-s here).
# With the 4-layer base (2026-12-02, issue #13) the LoRA copies the reference much sooner: this run gives 0.156 / 0.392
# after 250 steps (one run of its own, 60 s on an idle 2-core Intel Xeon), so the check now runs 250 steps with tighter
# thresholds. With the encoder phase (2026-12-04, latents moved a little) the same run gives 0.151 / 0.366 (2 threads,
# the whole test, 128 s with tests/test_embedded.py), so the thresholds tighten again.
LEARN = dict(number_of_steps=250, learning_rate=3e-3, warmup_steps=20, checkpoint_interval=0, seed=1)

@pytest.fixture(scope='module')
def learning_proc(tmp_path_factory, work):
    from ltx_nb.synth import make_triplets
    d = tmp_path_factory.mktemp('learn_data')
    make_triplets(d, n=5, frames=17)
    req = write_request(work/'learn.json', d, **LEARN)
    run_dir, log = work/'learn', work/'learn.log'
    proc = ltx_start(req, run_dir, log)
    yield proc, run_dir, log
    if proc.poll() is None: proc.kill(); proc.wait()

def test_the_lora_learns_to_use_the_reference(learning_proc):
    proc, run_dir, log = learning_proc
    finish(proc, log, timeout=900)
    lc = learning_check(run_dir)
    print(f"trained/untrained {lc['trained_vs_untrained']:.3f}, trained/mismatched {lc['trained_vs_mismatched']:.3f}")
    # on the shipped embedded:tiny (2026-12-04): 0.151 / 0.366 at these 250 steps (12-02's model: 0.156 / 0.392)
    assert lc['trained_vs_untrained'] < 0.20
    assert lc['trained_vs_mismatched'] < 0.45     # the right reference lowers the loss (the demo's target is 0.6)

# ---------------------------------------------------------------- 9. half-size reference

def test_reference_downscale_factor_2(req, work):
    from ltx_nb.dataset import check_dataset, reference_size
    from ltx_nb.latents import cache_dataset
    with pytest.raises(RequestError, match='medium 16:9'):  # 288/2 = 144 is off the 32-pixel grid: refused up front
        load_request(req, dict(reference_downscale_factor=2))
    steps = 10  # the checks below need a finished run with its final checkpoint, not a long one
    r = load_request(req, dict(reference_downscale_factor=2, aspect_ratio='1:1', number_of_steps=steps))
    res = train(r, run_dir=work/'ref2', progress=False)
    assert res.status == 'completed' and lora_metadata(res.lora)['reference_downscale_factor'] == '2'
    rw, rh = reference_size(r.size, 2)
    assert (rw, rh) == (256, 256)  # exactly half of 512×512
    for c in cache_dataset(check_dataset(r, progress=False), r, progress=False):
        s = c.load()
        assert tuple(s['target'].shape[1:]) == latent_grid(17, 512, 512) == (3, 16, 16)
        assert tuple(s['reference'].shape[1:]) == latent_grid(17, rh, rw) == (3, 8, 8)
    assert read_metrics(res.run_dir)[0]['tokens'] == 3*16*16 + 3*8*8
    # the final LoRA is bf16 (lora_dtype's default), the last checkpoint fp32 and equal to it up to that rounding
    final, ck = load_lora_state(res.lora), load_lora_state(res.run_dir/'checkpoints'/f'step-{steps:06d}'/'lora.safetensors')
    assert {v.dtype for v in final.values()} == {torch.bfloat16} and {v.dtype for v in ck.values()} == {torch.float32}
    assert all(torch.equal(final[k], ck[k].to(torch.bfloat16)) for k in ck)
