"`ltx-nb plan` on the seed's example request: a fitting preset for 24, 32, 48 and 80 GB cards, exit 2 when nothing fits."
import json, subprocess, sys
from pathlib import Path
import pytest
from conftest import STEPS
from ltx_nb.cli import main

ROOT = Path(__file__).resolve().parents[1]
REQUEST = ROOT/'data_samples'/'request.json'
SEED_SETTINGS = ['--set', 'resolution=medium', '--set', 'aspect_ratio=1:1', '--set', 'number_of_frames=89', '--set', 'rank=32',
                 '--set', 'validation_number_of_frames=89', '--set', 'validation_resolution=high']

def plan_json(capsys, *args)->tuple[int, dict|str]:
    code = main(['plan', str(REQUEST), *SEED_SETTINGS, *args])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 and '--json' in args else out.out + out.err)

@pytest.mark.parametrize('gb', [24, 32, 48, 80])
def test_seed_request_fits(capsys, gb):
    code, p = plan_json(capsys, '--gpu-memory', str(gb), '--json')
    assert code == 0
    assert p['fits'] and p['peak_gb'] <= gb and p['estimate'] is True
    assert {ph['name'] for ph in p['phases']} == {'text encoder caching', 'VAE caching', 'training', 'validation sampling'}
    assert p['peak_gb'] == max(ph['peak_gb'] for ph in p['phases'])
    assert p['settings']['vram'] in ('24', '32', '48', '80') and p['settings']['gradient_checkpointing']

def test_table_and_nothing_fits(capsys):
    code, out = plan_json(capsys, '--gpu-memory', '80')
    assert code == 0 and '| phase | peak GB | what |' in out and 'estimates' in out
    code, out = plan_json(capsys, '--gpu-memory', '10')
    assert code == 2 and 'nothing fits 10 GB' in out

def test_fsdp_shards_the_base(capsys):
    _, one = plan_json(capsys, '--gpu-memory', '80', '--json', '--set', 'vram=80')
    _, four = plan_json(capsys, '--gpu-memory', '80', '--json', '--set', 'vram=80', '--num-gpus', '4')
    train = lambda p: next(ph['peak_gb'] for ph in p['phases'] if ph['name'] == 'training')
    assert train(four) < train(one) - 15  # 3/4 of a 26 GB base, less two blocks in flight

def test_lazy_top_level_plan():
    code = "import sys, ltx_nb; assert 'torch' not in sys.modules; print(callable(ltx_nb.plan))"
    assert subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout.strip() == 'True'

def test_knobs_refused_on_cpu_with_reason():
    from ltx_nb.core import parse_request, RequestError
    from ltx_nb.memory import apply_memory_settings, small_transformer
    with pytest.raises(RequestError, match="offload: 'blocks'"):
        apply_memory_settings(small_transformer(64, 1, rank=0), parse_request(dict(training_data_url='.', vram=24)), 'cpu')

def test_caching_time_estimate_in_table_and_json(capsys):
    _, p = plan_json(capsys, '--gpu-memory', '80', '--json', '--set', 'num_workers=4')
    c = p['caching']
    assert c['estimate'] is True and c['workers'] == 4 and c['s_per_triplet'] == max(c['decode_s'], c['encode_s']) > 0
    assert c['rates']['decode_px_per_s'] > 0 and 'assumed' in c['rates']['vae_from']
    code, out = plan_json(capsys, '--gpu-memory', '80')
    assert code == 0 and 'caching (estimate):' in out and 'per triplet' in out

def test_every_knob_from_the_cli_on_the_cpu(capsys):
    "Each knob value plans from the CLI; on the CPU the trainer refuses the ones that cannot run there, with the reason."
    from ltx_nb.core import load_request
    from ltx_nb.train import check_features
    for k, vals in dict(base_precision=('bf16', 'fp8', 'int8', 'nf4'), offload=('none', 'blocks'),
                        text_encoder_precision=('bf16', 'int8', 'nf4'), text_encoder_offload=('on', 'off')).items():
        for v in vals:
            code, p = plan_json(capsys, '--gpu-memory', '80', '--json', '--set', f'{k}={v}')
            assert code == 0 and p['settings'][k] == v, (k, v, p)
            r = load_request(str(REQUEST), {k: v})
            if (k, v) == ('offload', 'blocks'):
                with pytest.raises(Exception, match="offload: 'blocks'"): check_features(r, 'cpu')
            else: check_features(r, 'cpu')  # runs on the CPU (bitsandbytes is installed)

def test_knobs_train_end_to_end_on_the_tiny_model(triplets, tmp_path):
    "fp8 base, int8 text encoder (bitsandbytes on the CPU) kept on the CPU: the tiny model trains, and the captions' int8 embeddings are their own cache entries."
    import math, torch
    from ltx_nb.core import EMBEDDED_MODEL, load_request, cache_dir
    from ltx_nb.latents import text_key
    from ltx_nb.train import train
    r = load_request(dict(training_data_url=str(triplets), model=EMBEDDED_MODEL, number_of_steps=STEPS, number_of_frames=9,
                          resolution='low', aspect_ratio='16:9', rank=8, base_precision='fp8', text_encoder_precision='int8',
                          text_encoder_offload='on', checkpoint_interval=0, validation_interval=0, run_dir=str(tmp_path/'run')))
    res = train(r, progress=False)
    assert res.status == 'completed' and res.lora.exists() and math.isfinite(res.final_loss)
    from ltx_nb.dataset import check_dataset
    caption = check_dataset(r, progress=False).ok[0].caption
    texts = {p.name for p in (cache_dir('latents')/'text').glob('*.safetensors')}
    assert f"{text_key(caption, r.model, torch.float32, None, 'int8')}.safetensors" in texts
