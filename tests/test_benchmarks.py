"Smoke tests: each benchmark script runs with --quick and prints its table and its one-line ratio."
import os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

def run(script:str, *args:str, tmp_path:Path, timeout:int=120)->str:
    env = dict(os.environ, LTX_NB_CACHE=str(tmp_path/'cache'))
    p = subprocess.run([sys.executable, str(ROOT/'benchmarks'/script), '--quick', *args], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=timeout)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout

@pytest.mark.parametrize('script, header, ratio', [
    ('data_pipeline.py', '| pipeline | workers | s/pass |', 'loader / ceiling:'),
    ('trainer_overhead.py', '| variant | s/step |', 'train step / bare forward+backward ='),
    ('token_budget.py', '| bucket | size | target |', 'reference half / full:'),
    ('fp8_base.py', '| base storage | base bytes | steps |', 'fp8 / fp32: steps/s'),
    ('heap_pad.py', '| variant | triplets | wall s |', 'kept / default: wall'),
])
def test_quick_prints_table(script, header, ratio, tmp_path):
    out = run(script, tmp_path=tmp_path)
    assert header in out and ratio in out, out
    assert out.count('\n| ') >= 3, out  # a header and at least one row

def test_gpu_step_without_cuda(tmp_path):
    import torch
    out = run('gpu_step.py', tmp_path=tmp_path)
    if torch.cuda.is_available(): assert '| case | tokens (ref+target) | s/step |' in out, out
    else: assert out.startswith('skipped: no CUDA'), out

def test_caching_quick(tmp_path):
    "The caching benchmark: ceiling, loader with 1 and 2 workers, encode only, cache_dataset; its ratios and the decode-path table."
    out = run('caching.py', '--decode-paths', tmp_path=tmp_path, timeout=400)  # loads the tiny VAE and forks workers
    for s in ('| pipeline | s/pass |', 'loader, 2 workers', 'caching, 1 worker', 'loader / ceiling:', 'caching / max(decode, encode):',
              'load average', '| source | scale |'):
        assert s in out, (s, out)

def test_gpu_step_presets_plan_on_any_machine(tmp_path):
    "The preset rows' CPU side: every preset's knobs, a cap equal to its budget, full and half reference at 768×448×89."
    sys.path.insert(0, str(ROOT/'benchmarks'))
    import gpu_step
    runs = gpu_step.preset_runs(141.0)
    assert [r['preset'] for r in runs] == ['24', '32', '48', '80']
    assert [round(r['fraction'] * 141) for r in runs] == [24, 32, 48, 80]
    assert runs[0]['offload'] == 'blocks' and runs[-1]['base_precision'] == 'bf16'
    assert all(r['cases'] == [((768, 448), 1), ((768, 448), 2)] for r in runs)
    assert gpu_step.preset_runs(40.0)[-1]['fraction'] == 1.0  # a cap never exceeds the card
    out = run('gpu_step.py', '--presets', '--dry-run', '--card-gb', '80', tmp_path=tmp_path)
    assert '| preset | base | offload |' in out and '768×448×89, ref half' in out and sum(l.startswith('| ') for l in out.splitlines()) == 5, out
