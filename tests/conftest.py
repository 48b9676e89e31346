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
    from ltx_nb.samples import make_samples
    d = tmp_path_factory.mktemp('triplets')
    make_samples(d, n=3, frames=25)
    return d

def ltx_nb(*args, cwd=None, timeout=600):
    "Run the installed `ltx-nb` console script; returns the CompletedProcess."
    exe = Path(sys.executable).parent/'ltx-nb'
    return subprocess.run([str(exe), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout)
