"""`ltx_nb.model`: the tiny model builds identically in separate processes, loads offline through diffusers, is cached
atomically under concurrency; LoRA files round-trip through diffusers' `load_lora_weights`; bad models fail clearly."""
import json, os, re, subprocess, sys, textwrap
from pathlib import Path

import pytest
import torch

from ltx_nb.core import EMBEDDED_MODEL, RequestError, latent_grid
from ltx_nb.model import (LORA_TARGETS, TINY_MODEL_VERSION, add_lora, build_tiny_model, forward_video, load_lora_state,
                          load_text_encoder, load_transformer, load_vae, encode_video, decode_latents, lora_metadata,
                          lora_target_modules, pack_latents, resolve_model, save_lora, set_lora_state, video_coords,
                          _synthetic_clip)

ROOT = Path(__file__).resolve().parents[1]

def run_py(code:str, env:dict|None=None, timeout=300)->subprocess.CompletedProcess:
    "Run `code` in a fresh interpreter (fresh RNG, hash seed and huggingface_hub settings)."
    e = {**os.environ, 'HF_HUB_OFFLINE': '1', **(env or {})}
    r = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], env=e, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return r

def tree_bytes(d:Path)->dict:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob('*')) if p.is_file()}

@pytest.fixture(scope='module')
def tiny(tmp_path_factory)->Path:
    return build_tiny_model(tmp_path_factory.mktemp('tiny')/'model')

def test_build_is_deterministic_across_processes(tmp_path, tiny):
    "A fresh interpreter with another hash seed than this one builds the same bytes."
    own = os.environ.get('PYTHONHASHSEED', '')  # unset or 'random': this process's seed is random
    seed = str(int(own) + 17 if own.isdigit() else 17)
    run_py(f"from ltx_nb.model import build_tiny_model; build_tiny_model({str(tmp_path/'a')!r})", env={'PYTHONHASHSEED': seed})
    a = tree_bytes(tmp_path/'a')
    assert a == tree_bytes(tiny)
    assert {'model_index.json', 'transformer/diffusion_pytorch_model.safetensors', 'vae/diffusion_pytorch_model.safetensors',
            'text_encoder/model.safetensors', 'tokenizer/tokenizer.json', 'connectors/config.json',
            'scheduler/scheduler_config.json', 'audio_vae/config.json', 'vocoder/config.json'} <= set(a)
    assert sum(len(v) for v in a.values()) < 10_000_000

def test_architecture_is_ltx_2_3(tiny):
    cfg = json.loads((tiny/'transformer'/'config.json').read_text())
    assert {k: cfg[k] for k in ('gated_attn', 'audio_gated_attn', 'cross_attn_mod', 'audio_cross_attn_mod', 'use_prompt_embeddings',
            'perturbed_attn', 'rope_type')} == dict(gated_attn=True, audio_gated_attn=True, cross_attn_mod=True,
            audio_cross_attn_mod=True, use_prompt_embeddings=False, perturbed_attn=True, rope_type='split')
    assert cfg['num_layers'] >= 2
    vae = json.loads((tiny/'vae'/'config.json').read_text())
    assert (vae['spatial_compression_ratio'], vae['temporal_compression_ratio'], vae['encoder_causal']) == (32, 8, True)
    conn = json.loads((tiny/'connectors'/'config.json').read_text())
    te = json.loads((tiny/'text_encoder'/'config.json').read_text())
    assert conn['per_modality_projections'] and conn['text_proj_in_factor'] == te['text_config']['num_hidden_layers'] + 1

def test_pipeline_loads_and_runs_offline(tmp_path):
    "`LTX2Pipeline.from_pretrained` on the cached tiny model, with the Hub switched off, generates a clip."
    r = run_py("""
        import json, numpy as np
        from diffusers import LTX2Pipeline
        from ltx_nb.model import resolve_model
        pipe = LTX2Pipeline.from_pretrained(resolve_model('embedded:tiny'))
        pipe.set_progress_bar_config(disable=True)
        out = pipe(prompt='a red car', negative_prompt='', height=64, width=96, num_frames=9, num_inference_steps=2,
                   max_sequence_length=32, output_type='np')
        print(json.dumps(dict(shape=list(out.frames.shape), finite=bool(np.isfinite(out.frames).all()))))
        """, env={'LTX_NB_CACHE': str(tmp_path)})
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res == dict(shape=[1, 9, 64, 96, 3], finite=True)
    assert len(list(tmp_path.glob(f'embedded-tiny-{TINY_MODEL_VERSION}-*/model_index.json'))) == 1  # keyed by the shipped manifest

def test_embedded_cache_is_atomic_under_concurrency(tmp_path):
    code = "from ltx_nb.model import embedded_model_dir; print(embedded_model_dir())"
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'LTX_NB_CACHE': str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, '-c', code], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    dirs = {o[0].strip().splitlines()[-1] for o in outs}
    assert len(dirs) == 1 and Path(dirs.pop()).name.startswith(f'embedded-tiny-{TINY_MODEL_VERSION}-')  # keyed by the manifest
    assert len(list(tmp_path.iterdir())) == 1  # no half-built leftovers

def test_hub_id_offline_fails_clearly(tmp_path):
    r = run_py("""
        from ltx_nb.core import RequestError
        from ltx_nb.model import load_transformer
        try: load_transformer('nobody-here/no-such-ltx-model')
        except RequestError as e: print(e)
        """, env={'HF_HOME': str(tmp_path)})
    assert 'Hugging Face Hub' in r.stdout and "'embedded:tiny'" in r.stdout and '--local-dir' in r.stdout

def test_bad_local_models_fail_clearly(tmp_path):
    with pytest.raises(RequestError, match='is not a directory'): resolve_model(str(tmp_path/'missing'))
    with pytest.raises(RequestError, match='vae/ subfolder'): load_vae(tmp_path)

def test_video_round_trip_shapes(tiny):
    vae = load_vae(tiny)
    z = encode_video(vae, _synthetic_clip(25, 64, 128))
    assert tuple(z.shape) == (16, *latent_grid(25, 64, 128)) == (16, 4, 2, 4)
    x = decode_latents(vae, z)
    assert tuple(x.shape) == (25, 64, 128, 3) and x.dtype == torch.uint8

def _inputs(transformer, text, grid=(2, 2, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    F, H, W = grid
    x = torch.randn(1, F*H*W, transformer.config.in_channels, generator=g)
    t = torch.rand(1, F*H*W, generator=g)
    ctx, _, mask = text.encode('repl4ce a red car', max_sequence_length=32)
    return x, t, torch.tensor([0.7]), video_coords(transformer, F, H, W), ctx, mask

def test_lora_round_trip_through_diffusers(tiny, tmp_path):
    from diffusers import LTX2Pipeline
    transformer, text = load_transformer(tiny), load_text_encoder(tiny)
    args = _inputs(transformer, text)
    with torch.no_grad(): base = forward_video(transformer, *args)
    torch.manual_seed(1)
    add_lora(transformer, rank=16)
    with torch.no_grad():
        for n, p in transformer.named_parameters():
            if 'lora_B' in n: p.normal_(0, 0.05)
        trained = forward_video(transformer, *args)
    assert (trained - base).abs().max() > 1e-3
    f = save_lora(transformer, tmp_path/'out'/'lora.safetensors',
                  dict(trigger_phrase='repl4ce', training_type='v2v-masked', base_model='embedded:tiny', frames=17))
    assert [p.name for p in f.parent.iterdir()] == ['lora.safetensors']  # no temporary file left
    from safetensors import safe_open
    with safe_open(str(f), 'pt') as sf: keys = list(sf.keys())
    n = len(lora_target_modules(transformer))
    assert len(keys) == 2*n == 2*10*transformer.config.num_layers
    assert all(re.fullmatch(r'diffusion_model\.' + LORA_TARGETS + r'\.lora_[AB]\.weight', k) for k in keys)
    assert not any('audio' in k or 'alpha' in k for k in keys)
    md = lora_metadata(f)
    assert (md['rank'], md['alpha'], md['trigger_phrase'], md['training_type'], md['frames']) == ('16', '16', 'repl4ce', 'v2v-masked', '17')

    pipe = LTX2Pipeline.from_pretrained(tiny)
    pipe.load_lora_weights(str(f))
    with torch.no_grad(): loaded = forward_video(pipe.transformer, *args)
    assert (loaded - trained).abs().max().item() < 1e-6

    resumed = set_lora_state(add_lora(load_transformer(tiny), rank=16), load_lora_state(f))
    with torch.no_grad(): assert (forward_video(resumed, *args) - trained).abs().max().item() < 1e-6

def test_lora_file_errors(tmp_path):
    from safetensors.torch import save_file
    save_file({'transformer_blocks.0.attn1.to_q.lora_A.weight': torch.zeros(4, 8)}, str(tmp_path/'diffusers.safetensors'))
    with pytest.raises(RequestError, match='lacks the'): load_lora_state(tmp_path/'diffusers.safetensors')
    state = {'transformer_blocks.0.attn1.to_q.lora_A.weight': torch.zeros(4, 8), 'transformer_blocks.0.attn1.to_q.lora_B.weight': torch.zeros(8, 4)}
    with pytest.raises(ValueError, match='alpha must equal rank'): save_lora(state, tmp_path/'x.safetensors', dict(alpha=8))
    save_lora(state, tmp_path/'x.safetensors')
    assert lora_metadata(tmp_path/'x.safetensors')['alpha'] == '4'

def test_pack_order_matches_coords(tiny):
    "Token i of `pack_latents` sits where `video_coords` says it does."
    transformer = load_transformer(tiny)
    F, H, W = 3, 2, 4
    lat = torch.arange(F*H*W).float().reshape(1, F, H, W).expand(2, -1, -1, -1)
    idx = pack_latents(lat)[:, 0].long()
    c = video_coords(transformer, F, H, W)[0]
    f = torch.arange(F)[:, None, None].expand(F, H, W).flatten()[idx]
    h = torch.arange(H)[None, :, None].expand(F, H, W).flatten()[idx]
    w = torch.arange(W)[None, None, :].expand(F, H, W).flatten()[idx]
    assert torch.equal(c[1, :, 0], h.float()*32) and torch.equal(c[2, :, 0], w.float()*32)
    assert torch.equal(c[0, :, 1] > c[0, :, 0], torch.ones_like(f, dtype=torch.bool))
    assert torch.equal(torch.argsort(c[0, :, 0], stable=True), torch.argsort(f, stable=True))
