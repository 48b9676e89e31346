"""Several processes: `train`'s DDP (accelerate's `prepare`), FSDP (accelerate's FSDP2 plugin) and the hand all-reduce,
side by side on the same request and steps, each launched with the shipped accelerate config, 2 CPU processes (gloo,
one thread each); one process as the baseline. The time is `train`'s own loop (summary `wall_s`, caching and model
loading excluded), taken in turns so a busy machine slows every mode alike; and the LoRAs are compared.

    python benchmarks/distributed.py              # 17 frames, 16:9 low (864 tokens per item), 100 steps, 2 rounds
    python benchmarks/distributed.py --quick      # 9 frames, 1 round
"""
from __future__ import annotations
import argparse, json, os, socket, subprocess, sys, tempfile
from pathlib import Path

BIN = Path(sys.executable).parent
CONFIGS = Path(__file__).resolve().parents[1]/'ltx_nb'/'configs'/'accelerate'
MODES = (('one process', None, None), ('ddp', 'ddp.yaml', 'ddp'), ('fsdp', 'fsdp.yaml', 'fsdp'), ('allreduce', 'ddp.yaml', 'allreduce'))

def env()->dict:
    return {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', 'HF_HUB_OFFLINE': '1', 'CUDA_VISIBLE_DEVICES': '',
            'MASTER_ADDR': '127.0.0.1', 'TOKENIZERS_PARALLELISM': 'false'}

def free_port()->int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def launch(req:Path, run_dir:Path, config:str|None, mode:str|None)->dict:
    "One run; returns its progress summary."
    run = [str(BIN/'ltx-nb'), 'run', str(req), '--run-dir', str(run_dir), '--quiet']
    if mode: run += ['--set', f'distributed={mode}']
    cmd = run if config is None else [str(BIN/'accelerate'), 'launch', '--config_file', str(CONFIGS/config), '--num_processes', '2',
                                      '--num_cpu_threads_per_process', '1', '--main_process_port', str(free_port()), *run]
    res = subprocess.run(cmd, env=env(), capture_output=True, text=True)
    if res.returncode: raise SystemExit(res.stderr[-3000:])
    return json.loads((run_dir/'progress.json').read_text())['summary']

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--quick', action='store_true'); ap.add_argument('--rounds', type=int)
    a = ap.parse_args()
    from ltx_nb.synth import make_triplets
    from safetensors.torch import load_file
    tmp = Path(tempfile.mkdtemp(prefix='bench-dist-'))
    frames, rounds = (9, 1) if a.quick else (17, 2)
    make_triplets(tmp/'data', n=3, frames=frames)
    req = tmp/'req.json'
    req.write_text(json.dumps(dict(model='embedded:tiny', number_of_frames=frames, resolution='low', aspect_ratio='16:9',
                                   number_of_steps=100, rank=8, learning_rate=1e-3, warmup_steps=10, checkpoint_interval=0,
                                   validation_interval=0, seed=3, lora_dtype='fp32', training_data_url=str(tmp/'data'))))
    walls = {name: [] for name, _, _ in MODES}
    for k in range(a.rounds or rounds):
        for name, config, mode in MODES:
            walls[name].append(launch(req, tmp/f'{name}-{k}'.replace(' ', '_'), config, mode)['wall_s'])
    lora = lambda name: load_file(str(tmp/f"{name.replace(' ', '_')}-0"/'lora.safetensors'))
    ref = lora('ddp')
    print('| mode (CPU processes, gloo) | processes | s per 100 steps (best) | items/s | max abs LoRA diff vs ddp |')
    print('|---|---|---|---|---|')
    for name, config, _ in MODES:
        n = 1 if config is None else 2
        best, other = min(walls[name]), lora(name)
        diff = max((other[k] - ref[k]).abs().max().item() for k in ref) if name != 'one process' else float('nan')
        print(f"| {name} | {n} | {best:.1f} | {100 * n / best:.2f} | {'—' if name == 'one process' else f'{diff:.1e}'} |")

if __name__ == '__main__': main()
