"Shared fixtures: real triplets made with the package's own generator (ffmpeg from imageio-ffmpeg)."
import os, shutil, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

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

def ltx_nb(*args, cwd=None, timeout=600):
    "Run the installed `ltx-nb` console script; returns the CompletedProcess."
    exe = Path(sys.executable).parent/'ltx-nb'
    return subprocess.run([str(exe), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout)

@pytest.fixture(scope='session')
def validated_run(triplets, tmp_path_factory)->Path:
    """One short real run directory, made once per session: the tiny model, the 16:9 'low' bucket at 9 frames, 100 steps,
    one validation entry sampled with one denoising step at step 50 and at the end. Copy it before changing it."""
    from ltx_nb.core import EMBEDDED_MODEL, load_request
    from ltx_nb.synth import triplet_files
    from ltx_nb.train import train
    f = triplet_files(1)
    entry = dict(prompt='entry 1', video_url=str(triplets/f['end']), mask_url=str(triplets/f['mask']),
                 reference_video_url=str(triplets/f['start']))
    r = load_request(dict(training_data_url=str(triplets), model=EMBEDDED_MODEL, number_of_steps=100, number_of_frames=9,
                          resolution='low', aspect_ratio='16:9', rank=8, learning_rate=1e-3, validation=[entry],
                          validation_number_of_frames=9, validation_resolution='low', validation_aspect_ratio='16:9',
                          validation_num_inference_steps=1, validation_guidance_scale=1.0, stg_scale=0.0,
                          validation_interval=50, checkpoint_interval=50,
                          run_dir=str(tmp_path_factory.mktemp('validated')/'run')))
    return train(r, progress=False).run_dir

@pytest.fixture(scope='module')
def one_torch_thread():
    "One torch thread for a module's in-process runs: float reductions stay identical between runs compared bit for bit."
    import torch
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
