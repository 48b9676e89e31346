"The video-only transformer (issue 17): no audio weights loaded, the video prediction unchanged bit for bit."
import copy, json
import pytest
import torch

from ltx_nb.model import (add_lora, audio_branch_loaded, embedded_model_dir, forward_video, is_audio_key, load_lora_state,
                          load_transformer, ltx23_transformer_config, save_lora, set_lora_state, stg_blocks_for, strip_audio,
                          transformer_parameters, transformer_weight_bytes, video_only_transformer)
from ltx_nb.train import masked_batch


@pytest.fixture(scope='module')
def tiny(): return embedded_model_dir()

@pytest.fixture(scope='module')
def models(tiny): return load_transformer(tiny, video_only=False), load_transformer(tiny)

@pytest.fixture(scope='module')
def batch(models):
    "A masked, reference-guided sequence: a half-size reference, a box of regenerated target tokens."
    g = torch.Generator().manual_seed(0)
    C, (F, H, W) = models[0].config.in_channels, (3, 2, 4)
    keep = torch.ones(F, H, W); keep[1:, :, 1:3] = 0
    s = dict(target=torch.randn(C, F, H, W, generator=g), reference=torch.randn(C, F, 1, 2, generator=g), keep=keep,
             context=torch.randn(8, models[0].config.cross_attention_dim, generator=g), context_mask=torch.ones(8, dtype=torch.long))
    return masked_batch(models[1], s, 0.7, torch.randn(F * H * W, C, generator=g))

def predict(m, b, stg=None):
    with torch.no_grad(): return forward_video(m, b.tokens, b.timesteps, b.sigma, b.coords, b.context, b.context_mask, stg_blocks=stg)

def random_lora(m, seed=0):
    "`m` with a rank-4 LoRA whose A and B are drawn from `seed` (B non-zero, so it changes the prediction)."
    add_lora(m, 4)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if 'lora_' in n: p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return m


def test_no_audio_weights_and_video_count(models):
    full, vo = models
    assert audio_branch_loaded(full) and not audio_branch_loaded(vo)
    n_video = sum(p.numel() for n, p in full.named_parameters() if not is_audio_key(n))
    assert sum(p.numel() for p in vo.parameters()) == n_video < sum(p.numel() for p in full.parameters())
    assert set(vo.state_dict()) == {k for k in full.state_dict() if not is_audio_key(k)}
    full_sd = full.state_dict()
    assert all(torch.equal(v, full_sd[k]) for k, v in vo.state_dict().items())

@pytest.mark.parametrize('stg', [False, True])
def test_bit_identical_prediction(models, batch, stg):
    full, vo = models
    blocks = stg_blocks_for(vo) if stg else None
    a, b = predict(full, batch, blocks), predict(vo, batch, blocks)
    assert a.shape == batch.tokens.shape and torch.equal(a, b)
    if stg: assert not torch.equal(a, predict(full, batch))  # STG really perturbs

def test_bit_identical_with_lora(tiny, batch):
    full, vo = random_lora(load_transformer(tiny, video_only=False)), random_lora(load_transformer(tiny))
    assert not audio_branch_loaded(vo)
    a = predict(full, batch)
    assert torch.equal(a, predict(vo, batch))
    assert torch.equal(predict(full, batch, [0]), predict(vo, batch, [0]))
    assert not torch.equal(a, predict(load_transformer(tiny), batch))  # the LoRA does something

def test_layerwise_casting_fp8(tiny, batch):
    "fp8 storage with fp32 compute (diffusers' enable_layerwise_casting): stubs pass through, prediction still identical."
    full, vo = random_lora(load_transformer(tiny, video_only=False)), random_lora(load_transformer(tiny))
    for m in (full, vo): m.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)
    assert vo.transformer_blocks[0].ff.net[2].base_layer.weight.dtype == torch.float8_e4m3fn
    a, b = predict(full, batch), predict(vo, batch)
    assert torch.equal(a, b) and torch.isfinite(b).all()
    # the LoRA still trains through the fp8 base
    with torch.enable_grad():
        forward_video(vo, batch.tokens, batch.timesteps, batch.sigma, batch.coords, batch.context, batch.context_mask).square().mean().backward()
    grads = [p.grad for n, p in vo.named_parameters() if 'lora_A' in n]
    assert grads and all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)

@pytest.mark.parametrize('kind', ['block_level', 'leaf_level'])
def test_group_offload_runs(tiny, batch, kind):
    "diffusers' group offloading (CPU to CPU: what a CPU can check) hooks the stubbed model and keeps its prediction."
    vo = load_transformer(tiny)
    ref = predict(vo, batch)
    kw = dict(num_blocks_per_group=1) if kind == 'block_level' else {}
    vo.enable_group_offload(onload_device=torch.device('cpu'), offload_device=torch.device('cpu'), offload_type=kind, **kw)
    assert torch.equal(predict(vo, batch), ref)

def test_bf16_load_equals_from_pretrained(tiny):
    from diffusers import LTX2VideoTransformer3DModel
    ref = LTX2VideoTransformer3DModel.from_pretrained(tiny, subfolder='transformer', torch_dtype=torch.bfloat16).state_dict()
    vo = load_transformer(tiny, 'bf16')
    assert vo.dtype == torch.bfloat16 and all(torch.equal(v, ref[k]) for k, v in vo.state_dict().items())

def test_from_a_state_dict_reads_video_keys_only(models):
    "The reusable entry point: a config and any key → tensor mapping; audio keys are never looked up."
    full = models[0]
    asked = []
    class Source(dict):
        def __getitem__(self, k): asked.append(k); return super().__getitem__(k)
        def __contains__(self, k): asked.append(k); return super().__contains__(k)
    vo = video_only_transformer(dict(full.config), Source(full.state_dict()))
    assert asked and not any(is_audio_key(k) for k in asked) and not audio_branch_loaded(vo)
    with pytest.raises(ValueError, match='video weights are missing'):
        video_only_transformer(dict(full.config), {k: v for k, v in full.state_dict().items() if 'proj_out' not in k})

def test_isolation_is_required(models, batch):
    vo = models[1]
    cfg = vo.config
    with pytest.raises(RuntimeError, match='isolate_modalities=True'):
        vo(hidden_states=batch.tokens, audio_hidden_states=torch.zeros(1, 1, cfg.audio_in_channels), encoder_hidden_states=batch.context,
           audio_encoder_hidden_states=torch.zeros(1, 1, cfg.audio_cross_attention_dim), timestep=batch.timesteps * 1000,
           audio_timestep=batch.sigma * 1000, sigma=batch.sigma * 1000, audio_num_frames=1, video_coords=batch.coords,
           isolate_modalities=False)

def test_lora_from_video_only_loads_in_full_pipeline(tiny, batch, tmp_path):
    from diffusers import LTX2Pipeline
    vo = random_lora(load_transformer(tiny))
    f = save_lora(vo, tmp_path/'lora.safetensors', dict(trigger_phrase='x'))
    pipe = LTX2Pipeline.from_pretrained(tiny)
    pipe.load_lora_weights(str(f))
    assert audio_branch_loaded(pipe.transformer)
    torch.testing.assert_close(predict(pipe.transformer, batch), predict(vo, batch), rtol=0, atol=1e-6)
    # and back into a full model's peft adapter, bit for bit
    full = set_lora_state(add_lora(load_transformer(tiny, video_only=False), 4), load_lora_state(f))
    assert torch.equal(predict(full, batch), predict(vo, batch))

def test_lora_from_video_only_fuses_in_ltx_core(tiny, tmp_path):
    "Lightricks' ltx-core fuser (with its ComfyUI renaming map) consumes every A/B pair of the file."
    pytest.importorskip('ltx_core')
    from ltx_core.loader import LTXV_LORA_COMFY_RENAMING_MAP, LoraStateDictWithStrength, SafetensorsStateDictLoader, StateDict, apply_loras
    vo = random_lora(load_transformer(tiny))
    f = save_lora(vo, tmp_path/'lora.safetensors')
    lora = SafetensorsStateDictLoader().load(str(f), sd_ops=LTXV_LORA_COMFY_RENAMING_MAP)
    targets = {k.removesuffix('.lora_A.weight') for k in lora.sd if k.endswith('.lora_A.weight')}
    assert len(targets) == len(lora.sd) // 2 == 10 * vo.config.num_layers
    # the base weights ltx-core would fuse into: its names equal diffusers' (NOTES.md); take them from the full model
    # (in bf16: ltx-core fuses into bf16 or fp8 weights only)
    full = load_transformer(tiny, 'bf16', video_only=False)
    base = {f'{t}.weight': full.get_submodule(t).weight.detach() for t in targets}
    fused = apply_loras(StateDict(base, torch.device('cpu'), 0, {torch.bfloat16}), [LoraStateDictWithStrength(lora, 1.0)])
    changed = {k for k in base if not torch.equal(fused.sd[k], base[k])}
    assert changed == set(base)
    for t in targets:
        delta = lora.sd[f'{t}.lora_B.weight'] @ lora.sd[f'{t}.lora_A.weight']
        torch.testing.assert_close(fused.sd[f'{t}.weight'].float(), base[f'{t}.weight'].float() + delta, rtol=0, atol=2e-2)

def test_real_size_counts_match_ltx_core():
    "LTX-2.3's shipped config on the meta device: 18.99 B in all, 13.12 B video-only — ltx-core's own two models' counts."
    real = ltx23_transformer_config()
    n_all, n_video = transformer_parameters(real, video_only=False), transformer_parameters(real)
    assert (n_all, n_video) == (18_988_838_144, 13_124_316_288)
    assert transformer_weight_bytes(real, 'bf16') == 2 * n_video and transformer_weight_bytes(real, 'fp32', False) == 4 * n_all
    assert transformer_weight_bytes(real, 'nf4') < transformer_weight_bytes(real, 'fp8') == transformer_weight_bytes(real, 'int8') < 1.01 * n_video
    pytest.importorskip('ltx_core')
    from ltx_core.model.transformer.model_configurator import LTXModelConfigurator, LTXVideoOnlyModelConfigurator
    t = dict(dropout=0.0, attention_bias=True, num_vector_embeds=None, activation_fn='gelu-approximate', num_embeds_ada_norm=1000,
             use_linear_projection=False, only_cross_attention=False, cross_attention_norm=True, double_self_attention=False,
             upcast_attention=False, standardization_norm='rms_norm', norm_elementwise_affine=False, qk_norm='rms_norm',
             positional_embedding_type='rope', use_audio_video_cross_attention=True, share_ff=False, av_cross_ada_norm=True,
             use_middle_indices_grid=True, rope_type='split', apply_gated_attention=True, cross_attention_adaln=True,
             caption_proj_before_connector=True, num_layers=real['num_layers'], num_attention_heads=real['num_attention_heads'],
             attention_head_dim=real['attention_head_dim'], cross_attention_dim=real['cross_attention_dim'],
             audio_num_attention_heads=real['audio_num_attention_heads'], audio_attention_head_dim=real['audio_attention_head_dim'],
             audio_cross_attention_dim=real['audio_cross_attention_dim'])
    with torch.device('meta'):
        counts = [sum(p.numel() for p in c.from_config({'transformer': t}).parameters())
                  for c in (LTXModelConfigurator, LTXVideoOnlyModelConfigurator)]
    assert counts == [n_all, n_video]

def test_strip_audio_on_meta_keeps_video_names():
    from diffusers import LTX2VideoTransformer3DModel
    cfg = {**ltx23_transformer_config(), 'num_layers': 2}
    with torch.device('meta'): m = LTX2VideoTransformer3DModel.from_config(cfg)
    names = {n for n, _ in m.named_parameters()}
    strip_audio(m, device='meta')
    assert {n for n, _ in m.named_parameters()} == {n for n in names if not is_audio_key(n)}
