"""The pip-installed package on its own: a wheel built from this checkout, installed into a fresh venv and used from
a folder far from the repository (issue: the third way in). Also: `import ltx_nb` stays light."""
import json, os, subprocess, sys, sysconfig, venv
from pathlib import Path
import pytest
from conftest import STEPS

ROOT = Path(__file__).resolve().parents[1]

def test_import_is_light():
    "Importing the package and the CLI pulls in none of the heavy libraries."
    code = ("import sys, ltx_nb, ltx_nb.cli, ltx_nb.core, ltx_nb.dataset, ltx_nb.runner, ltx_nb.archive, ltx_nb.media, ltx_nb.masks;"
            "print([m for m in ('torch','diffusers','transformers','papermill','jupyter_client','decord','av','PIL','matplotlib') if m in sys.modules])")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == '[]', out

@pytest.fixture(scope='module')
def wheel_env(tmp_path_factory):
    "A fresh venv with only the wheel of this checkout installed; its dependencies come from the test venv."
    tmp = tmp_path_factory.mktemp('wheel')
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(tmp/'dist'), str(ROOT)],
                   check=True, capture_output=True)
    whl = next((tmp/'dist').glob('ltx_nb-*.whl'))
    env_dir = tmp/'venv'
    venv.EnvBuilder(with_pip=False).create(env_dir)
    site = next((env_dir/'lib').glob('python3*/site-packages'))
    # the dependencies (torch, diffusers, ...) are those of the test venv; ltx_nb itself only from the wheel
    (site/'deps.pth').write_text(sysconfig.get_paths()['purelib'] + '\n')
    subprocess.run([sys.executable, '-m', 'pip', '--python', str(env_dir/'bin'/'python'), 'install', '--no-deps', '--force-reinstall', '-q', str(whl)],
                   check=True, capture_output=True)
    work = tmp/'elsewhere'; work.mkdir()
    env = {**os.environ, 'LTX_NB_CACHE': str(tmp/'cache'), 'PATH': f"{env_dir/'bin'}:{os.environ['PATH']}"}
    env.pop('PYTHONPATH', None)
    return dict(bin=env_dir/'bin', work=work, env=env, whl=whl)

def run(w, *args, timeout=900):
    return subprocess.run([str(w['bin']/'ltx-nb'), *map(str, args)], cwd=w['work'], env=w['env'], capture_output=True,
                          text=True, timeout=timeout)

def test_wheel_ships_job_notebook_and_imports_from_site_packages(wheel_env):
    import zipfile
    names = zipfile.ZipFile(wheel_env['whl']).namelist()
    assert 'ltx_nb/job_notebooks/train_v2v_masked.ipynb' in names
    for c in ('vae', 'connectors', 'scheduler'):  # LTX-2.3 configs for Lightricks' single-file checkpoints (no Hub at run time)
        assert f'ltx_nb/configs/ltx-2.3/{c}/config.json' in names, c
    for c in ('1gpu', 'ddp', 'fsdp', 'ddp_2nodes'):  # the accelerate launch configs of the README
        assert f'ltx_nb/configs/accelerate/{c}.yaml' in names, c
    out = subprocess.run([str(wheel_env['bin']/'python'), '-c', 'import ltx_nb; print(ltx_nb.__file__)'], cwd=wheel_env['work'],
                         env=wheel_env['env'], capture_output=True, text=True, check=True).stdout
    assert 'site-packages' in out and str(ROOT) not in out

@pytest.mark.timeout(1800)  # five CLI runs from a fresh wheel: minutes on an idle machine, several times that on a shared one
def test_wheel_cli_check_demo_train_runs(wheel_env, tmp_path):
    w = wheel_env
    p = run(w, '--help'); assert p.returncode == 0 and 'check' in p.stdout
    # the demo generates the bundled samples into the cache (no data_samples/ next to an installed package)
    # a short demo: its validation entries sampled in one unguided step (the installed path is tested, not the sampler)
    p = run(w, 'demo', '--run-dir', 'demo', '--set', f'number_of_steps={STEPS}', '--set', 'validation_num_inference_steps=1',
            '--set', 'validation_guidance_scale=1.0', '--set', 'stg_scale=0.0', '--quiet')
    assert p.returncode == 0, p.stdout + p.stderr
    assert 'learning check' in p.stdout
    d = w['work']/'demo'
    for f in ('lora.safetensors', 'config.json', 'train_v2v_masked.ipynb', 'metrics.jsonl', 'progress.json', 'loss.png'):
        assert (d/f).exists(), f
    samples = Path(w['env']['LTX_NB_CACHE'])/'demo_samples'
    assert (samples/'request.json').exists()
    p = run(w, 'check', samples/'request.json', '--json')
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)['counts']['ok'] == 10
    # a request of the user's own, relative to its folder (the demo's frames and bucket: its cached latents are reused)
    from ltx_nb.cli import DEMO_OVERRIDES
    req = w['work']/'req.json'
    req.write_text(json.dumps(dict(training_data_url=str(samples), model='embedded:tiny', number_of_steps=STEPS, rank=8,
                                   number_of_frames=DEMO_OVERRIDES['number_of_frames'], resolution='low', aspect_ratio='1:1',
                                   learning_rate=0.002)))
    p = run(w, 'train', req, '--run-dir', 'mine', '--quiet')
    assert p.returncode == 0, p.stdout + p.stderr
    assert 'completed' in p.stdout
    # sampling with the demo's LoRA, from the installed package
    p = run(w, 'sample', '--lora', d/'lora.safetensors', '--video', samples/'sample00_end.mp4', '--mask', samples/'sample00_mask.png',
            '--reference', samples/'sample00_start.mp4', '--prompt', 'repl4ce the panel', '--out', 'out.npz',
            '--number-of-frames', 9, '--resolution', 'low', '--steps', 2, '--quiet')
    assert p.returncode == 0, p.stdout + p.stderr
    import numpy as np
    out = np.load(w['work']/'out.npz')
    assert out['frames'].shape == (9, 512, 512, 3) and out['frames'].dtype == np.uint8
    p = run(w, 'runs', '.', '--json')
    runs = {Path(r['run_dir']).name: r['status'] for r in json.loads(p.stdout)}
    assert runs == {'demo': 'completed', 'mine': 'completed'}
