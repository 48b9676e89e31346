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
