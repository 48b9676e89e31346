"Shared fixtures: real triplets made with the package's own generator (ffmpeg from imageio-ffmpeg)."
import os, shutil, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

# The suite tests the job path, resume, faults and processes, not how well the tiny model trains: its runs are short.
# The request floor is the hosted trainer's 100 steps; LTX_NB_MIN_STEPS lowers it for this session (and its children).
STEPS = 20
os.environ.setdefault('LTX_NB_MIN_STEPS', '10')
# The suite runs offline (no weights or data are downloaded at run time): a Hub id fails at once instead of after retries.
os.environ.setdefault('HF_HUB_OFFLINE', '1')
# One torch thread per process: two xdist workers and their children already keep both cores busy, and a second
# OpenMP thread per process on shared cores spins instead of working. Runs compared bit for bit need it anyway.
os.environ.setdefault('OMP_NUM_THREADS', '1')

# The cheapest real grid of the tiny model, shared by the test modules' requests (each adds its own steps and seed).
TINY = dict(model='embedded:tiny', number_of_frames=9, resolution='low', aspect_ratio='16:9', rank=8, learning_rate=1e-3,
            validation_interval=0)

def product_floor(env:dict)->dict:
    "`env` without LTX_NB_MIN_STEPS: the step floor the user gets (100)."
    return {k: v for k, v in env.items() if k != 'LTX_NB_MIN_STEPS'}

@pytest.fixture(autouse=True, scope='session')
def _isolated_cache(tmp_path_factory):
    "Keep every test's cache (extracted archives, the tiny model, latents) out of the user's home."
    os.environ.setdefault('LTX_NB_CACHE', str(tmp_path_factory.mktemp('ltx_nb_cache')))
    os.environ.setdefault('PYTHONUTF8', '1')  # child processes print UTF-8 (× and — in reports) whatever the locale

@pytest.fixture(scope='session')
def triplets(tmp_path_factory):
    "Three small triplets (25 frames) in a folder, made once per session."
    from ltx_nb.synth import make_triplets
    d = tmp_path_factory.mktemp('triplets')
    make_triplets(d, n=3, frames=25)
    return d

def ltx_nb(*args, cwd=None, timeout=600, env=None):
    "Run the installed `ltx-nb` console script; returns the CompletedProcess."
    exe = Path(sys.executable).parent/'ltx-nb'
    return subprocess.run([str(exe), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)

def validation_entry(triplets:Path, k:int=1)->dict:
    "Validation entry from triplet `k` of `triplets` (its ground truth is known: the target)."
    from ltx_nb.synth import triplet_files
    f = triplet_files(k)
    return dict(prompt=f'entry {k}', video_url=str(triplets/f['end']), mask_url=str(triplets/f['mask']),
                reference_video_url=str(triplets/f['start']))

def validated_request(triplets:Path, **over)->dict:
    """A short run of the tiny model with one validation entry: the 16:9 'low' bucket at 9 frames, `STEPS` steps, the entry
    sampled with one denoising step at step 0, half-way and the end (checkpoints there too); `over` changes any of it."""
    from ltx_nb.core import EMBEDDED_MODEL
    return {**dict(training_data_url=str(triplets), model=EMBEDDED_MODEL, number_of_steps=STEPS, number_of_frames=9,
                   resolution='low', aspect_ratio='16:9', rank=8, learning_rate=1e-3, validation=[validation_entry(triplets)],
                   validation_number_of_frames=9, validation_resolution='low', validation_aspect_ratio='16:9',
                   validation_num_inference_steps=1, validation_guidance_scale=1.0, stg_scale=0.0,
                   validation_interval=STEPS // 2, checkpoint_interval=STEPS // 2), **over}

@pytest.fixture(scope='session')
def validated_run(triplets, tmp_path_factory)->Path:
    "One `validated_request` run directory, made once per session. Copy it before changing it."
    from ltx_nb.core import load_request
    from ltx_nb.train import train
    r = load_request(validated_request(triplets, run_dir=str(tmp_path_factory.mktemp('validated')/'run')))
    return train(r, progress=False).run_dir

@pytest.fixture(scope='module')
def one_torch_thread():
    "One torch thread for a module's in-process runs: float reductions stay identical between runs compared bit for bit."
    import torch
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

# The files that take minutes, longest first (measured 2026-12-01, idle machine, `--durations`). `make pytest` runs with
# `--dist loadfile --no-loadscope-reorder`, so xdist hands out files in this order and no long file is left to run
# alone at the end; the order of tests inside a file is kept.
LONGEST_FIRST = ('test_package.py', 'test_train.py', 'test_jobs.py', 'test_distributed.py', 'test_ltx_core_parity.py',
                 'test_tracking.py', 'test_ray.py', 'test_benchmarks.py', 'test_browser.py', 'test_model.py', 'test_sample.py',
                 'test_faults_rundir.py')

def pytest_collection_modifyitems(session, config, items):
    rank = {n: k for k, n in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda i: rank.get(i.path.name, len(rank)))  # a stable sort: each file's own order stays
