"""`ltx-nb train`: every request validated first, papermill jobs, failures, sweeps, the seed's example JSON."""
import json, os, time
from pathlib import Path
import pytest
from conftest import ltx_nb, ROOT, STEPS, product_floor

SEED_EXAMPLE = {
  "training_data_url": "https://example.com/v2v_masked_triplets.zip", "trigger_phrase": "repl4ce", "rank": 32,
  "number_of_steps": 3000, "learning_rate": 0.0002, "number_of_frames": 89, "frame_rate": 24,
  "resolution": "medium", "aspect_ratio": "1:1",
  "validation": [{"prompt": "repl4ce the billboard with a sunset", "video_url": "https://example.com/source.mp4",
                  "mask_url": "https://example.com/mask.png", "reference_video_url": "https://example.com/ref.mp4"}]}

# CPU-sized settings for the tiny model: the job path is what is tested, not the model's size
CPU = ['--set', 'model="embedded:tiny"', '--set', 'number_of_frames=9', '--set', 'resolution="low"',
       '--set', 'aspect_ratio="16:9"', '--set', f'number_of_steps={STEPS}', '--set', 'learning_rate=0.002', '--set', 'validation=[]']

@pytest.fixture(scope='module')
def small(tmp_path_factory):
    "Two 17-frame triplets and a request for them."
    from ltx_nb.synth import make_triplets
    d = tmp_path_factory.mktemp('jobs')
    make_triplets(d/'clips', n=2, frames=17)
    (d/'req.json').write_text(json.dumps(dict(training_data_url='clips', rank=8)))
    return d

def test_every_request_is_validated_before_anything_runs(small, tmp_path):
    bad = tmp_path/'bad.json'
    bad.write_text(json.dumps(dict(training_data_url='nowhere/', rank=7, resolution='ultra')))
    p = ltx_nb('train', small/'req.json', bad, '--run-dir', tmp_path/'runs', '--set', 'number_of_steps=5', cwd=tmp_path,
               env=product_floor(os.environ))
    assert p.returncode == 2, p.stdout + p.stderr
    assert not (tmp_path/'runs').exists(), 'a job started'  # not a timing: machines differ
    for msg in ("req: number_of_steps: 5 is below 100", "bad: number_of_steps: 5 is below 100", "bad: rank: 7",
                "bad: resolution: 'ultra'", "nowhere"):
        assert msg in p.stderr, (msg, p.stderr)
    assert not (tmp_path/'runs').exists()  # nothing started

def test_seed_example_runs_unchanged_apart_from_urls(tmp_path):
    "The seed's JSON, its URLs pointed at local files, validates and checks as it is (89 frames, medium, 3000 steps)."
    from ltx_nb.synth import make_triplets_zip
    make_triplets_zip(tmp_path/'v2v_masked_triplets.zip', n=2, frames=97, size=(160, 160))
    req = json.loads(json.dumps(SEED_EXAMPLE))
    req['training_data_url'] = 'file://' + str(tmp_path/'v2v_masked_triplets.zip')
    src = sorted(ROOT.glob('data_samples/sample00_*'))
    v = req['validation'][0]
    v['video_url'], v['mask_url'], v['reference_video_url'] = (str(ROOT/'data_samples'/f) for f in
                                                                ('sample00_end.mp4', 'sample00_mask.png', 'sample00_start.mp4'))
    (tmp_path/'seed.json').write_text(json.dumps(req))
    from ltx_nb.runner import plan_jobs
    job, = plan_jobs([tmp_path/'seed.json'])
    assert (job.request.number_of_steps, job.request.number_of_frames, job.request.size) == (3000, 89, (768, 768))
    p = ltx_nb('check', tmp_path/'seed.json', '--workdir', tmp_path/'work', cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert '2 triplets: 2 ok' in p.stdout and '89 frames at 24 fps, 768×768' in p.stdout

def test_failing_job_exits_1_and_keeps_its_notebook(small, tmp_path):
    p = ltx_nb('train', small/'req.json', *CPU, '--set', 'model="no-such-org/no-such-model"', '--run-dir', tmp_path/'run',
               '--quiet', cwd=small, timeout=600)
    assert p.returncode == 1, p.stdout + p.stderr
    assert 'failed' in p.stdout and 'no-such-org/no-such-model' in p.stdout
    nb = json.loads((tmp_path/'run'/'train_v2v_masked.ipynb').read_text())
    errors = [o for c in nb['cells'] for o in c.get('outputs', []) if o.get('output_type') == 'error']
    assert errors and 'no-such-org/no-such-model' in errors[0]['evalue']

def test_sweep_runs_one_job_per_combination_each_keeping_its_notebook(small, tmp_path):
    "A two-job sweep: one papermill job per combination, each run directory with its executed notebook and files, one summary."
    p = ltx_nb('train', small/'req.json', *CPU, '--sweep', 'rank=8,16', '--run-dir', tmp_path/'sweep', '--quiet', cwd=small)
    assert p.returncode == 0, p.stdout + p.stderr
    rows = [l for l in p.stdout.splitlines() if l.startswith('req ')]
    assert [r.split()[1] for r in rows] == ['rank=8', 'rank=16'] and all('completed' in r for r in rows)
    from ltx_nb.model import lora_metadata
    runs = sorted((tmp_path/'sweep').iterdir())
    assert sorted(lora_metadata(d/'lora.safetensors')['rank'] for d in runs) == ['16', '8']
    for d in runs:
        nb = json.loads((d/'train_v2v_masked.ipynb').read_text())
        assert any('injected-parameters' in c['metadata'].get('tags', []) for c in nb['cells'])
        for f in ('lora.safetensors', 'config.json', 'metrics.jsonl', 'progress.json', 'loss.png', 'report.json'):
            assert (d/f).exists(), (d, f)
    head = p.stdout.strip().splitlines()[-len(rows) - 2]
    assert head.split() == ['request', 'status', 'final', 'loss', 'time', 'run', 'directory'], p.stdout
    assert sorted(r.split()[-1] for r in rows) == [str(d) for d in runs]

def test_parameters_cell_is_the_request_table():
    "The job notebook's parameters cell (source and packaged copy) is generated from the request table: one line per field."
    from dataclasses import fields
    from ltx_nb.core import Request
    from ltx_nb.runner import job_parameters_source, job_notebook_path, JOB_NOTEBOOK
    for nb in (ROOT/'nbs'/'jobs'/JOB_NOTEBOOK, job_notebook_path()):
        cell = next(c for c in json.loads(nb.read_text())['cells'] if 'parameters' in c['metadata'].get('tags', []))
        assert ''.join(cell['source']) == job_parameters_source(), f"{nb}: run tools/sync_jobs.py"
    names = [l.split(' = ')[0] for l in job_parameters_source().splitlines() if ' = ' in l]
    assert names[:len(fields(Request))] == [f.name for f in fields(Request)]
