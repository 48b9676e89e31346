"""Beyond one process, on the CPU with gloo: the shipped accelerate configs start DDP and FSDP runs of the tiny model;
both equal a one-process run of the same draws (batch 2) within float tolerance and each other bit for bit; a run
interrupted under DDP resumes under FSDP; a 2-"node" launch on loopback (machine ranks 0 and 1) trains and stops
cleanly. Every launch is short (9 frames, `STEPS` = 20 steps) and runs one thread per process."""
import json, os, socket, subprocess, sys
from pathlib import Path

import pytest
import torch
from conftest import STEPS, TINY

from ltx_nb.core import load_request
from ltx_nb.train import train

BIN = Path(sys.executable).parent
CONFIGS = Path(__file__).resolve().parents[1]/'ltx_nb'/'configs'/'accelerate'
HALF = STEPS // 2  # where the interrupted run stops and checkpoints
BASE = dict(TINY, number_of_steps=STEPS, warmup_steps=10, checkpoint_interval=HALF, seed=5, trigger_phrase='repl4ce')

pytestmark = pytest.mark.usefixtures('one_torch_thread')

def env()->dict:
    "One thread per process, offline, no GPU: gloo on the CPU."
    return {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', 'HF_HUB_OFFLINE': '1', 'CUDA_VISIBLE_DEVICES': '',
            'TOKENIZERS_PARALLELISM': 'false', 'MASTER_ADDR': '127.0.0.1', 'PYTHONIOENCODING': 'utf-8'}

def free_port()->int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def launch(config:str, *args, port:int|None=None, extra=())->list[str]:
    "`accelerate launch --config_file <shipped config> ... ARGS` for two CPU processes on this machine."
    return [str(BIN/'accelerate'), 'launch', '--config_file', str(CONFIGS/config), '--num_processes', '2',
            '--num_cpu_threads_per_process', '1', '--main_process_port', str(port or free_port()), *extra, *map(str, args)]

def run_cmd(cmd:list, timeout=600)->subprocess.CompletedProcess:
    res = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=timeout)
    return res

def ltx_run(req:Path, run_dir:Path)->list: return [BIN/'ltx-nb', 'run', req, '--run-dir', run_dir, '--quiet']

def tensors(p:Path)->dict:
    from safetensors.torch import load_file
    return load_file(str(p))

def max_diff(a:Path, b:Path)->float:
    ta, tb = tensors(a), tensors(b)
    assert ta.keys() == tb.keys()
    return max((ta[k].float() - tb[k].float()).abs().max().item() for k in ta)

def progress(run_dir:Path)->dict: return json.loads((run_dir/'progress.json').read_text())

@pytest.fixture(scope='module')
def work(tmp_path_factory):
    from ltx_nb.synth import make_triplets
    d = tmp_path_factory.mktemp('dist')
    make_triplets(d/'data', n=3, frames=9)
    (d/'req.json').write_text(json.dumps(dict(BASE, training_data_url=str(d/'data'), lora_dtype='fp32')))
    return d

@pytest.fixture(scope='module')
def ddp_run(work)->Path:
    "Two processes under the shipped DDP config."
    res = run_cmd(launch('ddp.yaml', *ltx_run(work/'req.json', work/'ddp')))
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-4000:])
    return work/'ddp'

def test_ddp_trains_and_equals_one_process_with_the_same_draws(ddp_run, work):
    p = progress(ddp_run)
    assert (p['status'], p['summary']['processes'], p['summary']['distributed']) == ('completed', 2, 'ddp')
    assert sorted(x.name for x in ddp_run.glob('*.safetensors')) == ['lora.safetensors']
    # one process, batch 2: draw numbers 2·step + item are the two processes' 2·step + rank
    one = train(load_request(work/'req.json', dict(batch_size=2)), run_dir=work/'one', progress=False)
    d = max_diff(one.lora, ddp_run/'lora.safetensors')
    print(f"one process (batch 2) vs DDP (2 × batch 1): max |ΔLoRA| {d:.2e}")
    assert d < 1e-4  # the same maths, summed in another order

def test_interrupted_under_ddp_resumes_under_fsdp(ddp_run, work):
    script, req = work/'stop_at_half.py', work/'req_half.json'
    script.write_text("import sys\nfrom ltx_nb.train import train\n"
                      "def stop(step, *a):\n    raise KeyboardInterrupt('test')\n"
                      "train(sys.argv[1], run_dir=sys.argv[2], progress=False, callbacks=[stop])\n")
    req.write_text(json.dumps(dict(json.loads((work/'req.json').read_text()), validation_interval=HALF)))  # not the identity
    res = run_cmd(launch('ddp.yaml', script, req, work/'resumed'))
    assert res.returncode != 0 and progress(work/'resumed')['status'] == 'interrupted'
    assert (work/'resumed'/'checkpoints'/f'step-{HALF:06d}').is_dir()
    res = run_cmd(launch('fsdp.yaml', *ltx_run(work/'req.json', work/'resumed')))
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-4000:])
    p = progress(work/'resumed')
    assert (p['status'], p['summary']['resumed_from'], p['summary']['distributed']) == ('completed', HALF, 'fsdp')
    # FSDP gathers the same base weights and averages the LoRA's gradients as DDP does: /2 is exact in floating point
    assert max_diff(work/'resumed'/'lora.safetensors', ddp_run/'lora.safetensors') == 0.0

def test_two_nodes_on_loopback_train_and_stop_cleanly(ddp_run, work):
    port, run_dir = free_port(), work/'nodes'
    node = lambda rank: launch('ddp_2nodes.yaml', *ltx_run(work/'req.json', run_dir), port=port,
                               extra=('--num_machines', '2', '--machine_rank', str(rank), '--main_process_ip', '127.0.0.1'))
    logs = [open(work/f'node{k}.log', 'w') for k in (0, 1)]
    procs = [subprocess.Popen(node(k), env=env(), stdout=logs[k], stderr=subprocess.STDOUT) for k in (0, 1)]
    try: rcs = [p.wait(600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None: p.kill()
        for f in logs: f.close()
    assert rcs == [0, 0], [(work/f'node{k}.log').read_text()[-3000:] for k in (0, 1)]
    p = progress(run_dir)
    assert (p['status'], p['summary']['processes']) == ('completed', 2)
    assert max_diff(run_dir/'lora.safetensors', ddp_run/'lora.safetensors') == 0.0  # the same two ranks' maths
