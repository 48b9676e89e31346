"""Fidelity to the real LTX-2.3 and Lightricks' trainer (issue 10, parts 1-4): σ sampling at real token counts, exact
half-size references, the frame rate the model is told, and memory-sane caching. Tiny sizes; seconds each."""
import gc, json, shutil, weakref, zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ltx_nb.core import EMBEDDED_MODEL, RequestError, exact_reference_buckets, latent_grid, parse_request

# ---------------------------------------------------------------- 1. σ sampling

@pytest.mark.parametrize('tokens', [6912, 10_800])  # medium 1:1 and high 1:1 at 89 frames
def test_stretched_sigma_trains_the_low_noise_range(tokens):
    from ltx_nb.train import sample_sigma
    g = torch.Generator().manual_seed(0)
    st = np.array([sample_sigma(tokens, g) for _ in range(20_000)])
    g = torch.Generator().manual_seed(0)
    old = np.array([sample_sigma(tokens, g, 'shifted_logit_normal') for _ in range(20_000)])
    assert 0.05 < (st < 0.5).mean() < 0.20, (st < 0.5).mean()   # Lightricks' trainer: ≈ 9.6 % / 8.2 %
    assert (old < 0.5).mean() < 0.01                             # the old form: 0.14 % / 0 %
    assert st.min() >= 1e-3 and st.max() <= 1.0

def test_timestep_sampler_option_reaches_the_step():
    from ltx_nb.train import sample_sigma, step_batch, step_generator
    from ltx_nb.model import load_transformer
    assert parse_request(dict(training_data_url='x')).timestep_sampler == 'shifted_logit_normal_stretched'
    with pytest.raises(RequestError, match='timestep_sampler'): parse_request(dict(training_data_url='x', timestep_sampler='cosine'))
    tr = load_transformer(EMBEDDED_MODEL)
    C = tr.config.in_channels
    s = dict(target=torch.randn(C, 3, 4, 6), reference=torch.randn(C, 3, 2, 3), keep=torch.zeros(3, 4, 6),
             context=torch.randn(8, tr.config.cross_attention_dim), context_mask=torch.ones(8))
    for name in ('shifted_logit_normal_stretched', 'shifted_logit_normal', 'uniform'):
        r = parse_request(dict(training_data_url='x', timestep_sampler=name, seed=3))
        _, sigma = step_batch(tr, [s], r, 5)
        assert sigma == [sample_sigma(72, step_generator(3, 5), name)]  # one σ per item of the batch
    g = torch.Generator().manual_seed(0)
    u = np.array([sample_sigma(72, g, 'uniform') for _ in range(2000)])
    assert 0.45 < u.mean() < 0.55 and u.min() >= 1e-3

# ---------------------------------------------------------------- 2. half-size reference

def test_half_size_reference_is_exact_or_refused():
    from ltx_nb.dataset import reference_size
    from ltx_nb.core import bucket_size
    assert exact_reference_buckets(2) == ['low 1:1', 'medium 16:9', 'medium 1:1', 'medium 9:16', 'high 1:1']
    for b in exact_reference_buckets(2):
        W, H = bucket_size(*b.split())
        rw, rh = reference_size((W, H), 2)
        assert (rw, rh) == (W // 2, H // 2) and rw % 32 == rh % 32 == 0
        F, gh, gw = latent_grid(17, H, W)
        assert latent_grid(17, rh, rw) == (F, gh // 2, gw // 2)
    with pytest.raises(RequestError) as e:
        parse_request(dict(training_data_url='x', resolution='low', aspect_ratio='16:9', reference_downscale_factor=2))
    assert len(e.value.problems) == 1 and 'resolution/aspect_ratio' in e.value.problems[0]
    assert 'medium 16:9' in e.value.problems[0] and 'high 1:1' in e.value.problems[0]
    val = [dict(prompt='p', video_url='a.mp4', mask_url='m.png', reference_video_url='r.mp4')]
    with pytest.raises(RequestError) as e:  # validation uses the same factor
        parse_request(dict(training_data_url='x', reference_downscale_factor=2, validation=val, validation_resolution='high',
                           validation_aspect_ratio='16:9'))
    assert len(e.value.problems) == 1 and 'validation_resolution/validation_aspect_ratio' in e.value.problems[0]
    parse_request(dict(training_data_url='x', reference_downscale_factor=2, validation_aspect_ratio='16:9'))  # no validation: fine
    with pytest.raises(ValueError): reference_size((512, 288), 2)

def test_reference_positions_are_scaled_by_exactly_the_factor():
    from ltx_nb.model import load_transformer, sequence_coords, video_coords
    from ltx_nb.train import lora_metadata_for
    tr = load_transformer(EMBEDDED_MODEL)
    grid = latent_grid(17, 448, 768)  # medium 16:9: (3, 14, 24)
    ref = (grid[0], grid[1] // 2, grid[2] // 2)
    sc = sequence_coords(tr, ref, grid, 24)
    n_ref = int(np.prod(ref))
    assert torch.equal(sc[:, :, :n_ref], video_coords(tr, *ref, fps=24, scale=2.0))
    assert torch.equal(sc[:, 1:, :n_ref], video_coords(tr, *ref, fps=24)[:, 1:] * 2)
    assert sc[0, 1, :n_ref].max() == sc[0, 1, n_ref:].max() == grid[1] * 32  # both cover the target's rows exactly
    with pytest.raises(ValueError, match='not an exact'): sequence_coords(tr, (3, 5, 8), (3, 9, 16), 24)
    md = lora_metadata_for(parse_request(dict(training_data_url='x', model=EMBEDDED_MODEL, reference_downscale_factor=2)))
    assert md['reference_downscale_factor'] == '2' and int(md['reference_downscale_factor']) == 2

# ---------------------------------------------------------------- 3. frame rate

@pytest.fixture(scope='module')
def fps_data(tmp_path_factory)->Path:
    "One triplet whose target plays at 30 fps and whose reference plays at 25 fps."
    from ltx_nb.synth import make_triplets
    root = tmp_path_factory.mktemp('fps')
    make_triplets(root/'d30', n=1, frames=25, size=(64, 64), fps=30)
    make_triplets(root/'d25', n=1, frames=25, size=(64, 64), fps=25)
    start = next((root/'d30').rglob('*_start.*'))
    shutil.copy(next((root/'d25').rglob('*_start.*')), start)
    return root/'d30'

def _req(data, **kw):
    return parse_request(dict(training_data_url=str(data), model=EMBEDDED_MODEL, number_of_frames=17, resolution='low',
                              aspect_ratio='16:9', frame_rate=24, **kw))

def test_the_model_is_told_the_clip_fps(fps_data, tmp_path):
    from ltx_nb.dataset import check_dataset, write_debug_dataset, model_fps
    from ltx_nb.latents import cache_dataset
    from ltx_nb.model import load_transformer
    from ltx_nb.train import step_batch
    r = _req(fps_data)
    rep = check_dataset(r, tmp_path/'work', progress=False)
    item = rep.ok[0]
    assert item.fps == 30.0 == model_fps(item.target['fps'], 24, False)
    notes = ' | '.join(item.flags)
    assert 'not frame_rate 24' in notes and 'reference plays at 25' in notes, notes
    assert rep.rows()[0][4] == '30' and 'model fps' in str(rep).splitlines()[1]  # the report's column
    man = json.loads(zipfile.ZipFile(write_debug_dataset(rep, r, tmp_path/'debug.zip', progress=False)).read('manifest.json'))
    assert man['triplets'][0]['fps'] == 30.0
    s = cache_dataset(rep, r, tmp_path/'cache', progress=False)[0].load()
    assert float(s['fps']) == 30.0
    tr = load_transformer(EMBEDDED_MODEL)
    b, _ = step_batch(tr, [s], r, 0)
    n_ref, per_frame = b.n_ref, 9 * 16
    assert abs(float(b.coords[0, 0, n_ref + per_frame, 0]) - 1 / 30) < 1e-6   # latent frame 1 starts at pixel frame 1: 1/30 s
    assert abs(float(b.coords[0, 0, per_frame, 0]) - 1 / 30) < 1e-6           # the reference shares the target's rate
    on = _req(fps_data, auto_scale_input=True)
    rep_on = check_dataset(on, tmp_path/'work', progress=False)
    assert rep_on.ok[0].fps == 24.0 and not [f for f in rep_on.ok[0].flags if 'fps' in f]

def test_validation_follows_the_same_fps_rule(fps_data):
    from ltx_nb.dataset import fit_validation_entry, ValidationFit
    end, mask, start = (next(fps_data.rglob(f'*_{k}.*')) for k in ('end', 'mask', 'start'))
    val = [dict(prompt='p', video_url=str(end), mask_url=str(mask), reference_video_url=str(start))]
    kw = dict(validation=val, validation_number_of_frames=17, validation_resolution='low', validation_aspect_ratio='16:9', validation_frame_rate=24)
    assert fit_validation_entry(val[0], ValidationFit.from_request(_req(fps_data, **kw))).fps == 30.0
    assert fit_validation_entry(val[0], ValidationFit.from_request(_req(fps_data, auto_scale_input=True, **kw))).fps == 24.0

def test_variable_frame_rate_is_noted():
    from types import SimpleNamespace as NS
    from ltx_nb.dataset import fps_notes, variable_rate
    even, vfr = np.arange(30) / 24, np.cumsum([0] + [1/24] * 8 + [1/12] * 21)
    assert not variable_rate(even) and variable_rate(vfr)
    assert not variable_rate(np.round(np.arange(30) / 30, 3))  # millisecond-rounded timestamps (mkv, webm) are even
    notes = fps_notes(NS(fps=24.0, timestamps=vfr), NS(fps=24.0, timestamps=even), parse_request(dict(training_data_url='x', number_of_frames=17)))
    assert len(notes) == 1 and 'target has a variable frame rate' in notes[0]

# ---------------------------------------------------------------- 4. memory-sane caching

@pytest.fixture(scope='module')
def small_data(tmp_path_factory)->Path:
    from ltx_nb.synth import make_triplets
    d = tmp_path_factory.mktemp('small')
    make_triplets(d, n=1, frames=17, size=(64, 64))
    return d

def test_each_encoder_is_collected_before_the_next_loads(small_data, tmp_path, monkeypatch):
    import ltx_nb.model as M
    from ltx_nb.dataset import check_dataset
    from ltx_nb.latents import cache_dataset
    refs, seen, dtypes = {}, {}, {}
    load_vae, load_te = M.load_vae, M.load_text_encoder
    def spy_vae(model, dtype=None, device='cpu'):
        dtypes['vae'] = dtype
        v = load_vae(model, None, 'cpu'); refs['vae'] = weakref.ref(v); return v
    def spy_te(model, dtype=None, device='cpu', **kw):
        dtypes['te'] = dtype
        gc.collect(); seen['vae alive at text-encoder load'] = refs['vae']() is not None
        te = load_te(model, None, 'cpu'); refs['te'], refs['gemma'] = weakref.ref(te), weakref.ref(te.text_encoder); return te
    monkeypatch.setattr(M, 'load_vae', spy_vae); monkeypatch.setattr(M, 'load_text_encoder', spy_te)
    import ltx_nb.memory as MEM  # the text encoder's placement after loading: kept on the CPU here
    monkeypatch.setattr(MEM, 'apply_text_encoder_settings', lambda te, r, device: te)
    r = _req(small_data)
    # device 'cuda' only picks the dtype here (the spies load on the CPU): bf16 for both encoders
    cache_dataset(check_dataset(r, tmp_path/'work', progress=False), r, tmp_path/'cache', device='cuda', progress=False)
    gc.collect()
    assert seen == {'vae alive at text-encoder load': False}
    assert refs['vae']() is None and refs['te']() is None and refs['gemma']() is None
    assert dtypes == dict(vae=torch.bfloat16, te=torch.bfloat16)

def test_caching_dtype_and_stored_dtype(small_data, tmp_path):
    from ltx_nb.dataset import check_dataset
    from ltx_nb.latents import cache_dataset, latent_key, text_key
    r = _req(small_data)
    rep = check_dataset(r, tmp_path/'work', progress=False)
    s = cache_dataset(rep, r, tmp_path/'cache', progress=False)[0].load()
    assert s['target'].dtype == s['reference'].dtype == s['context'].dtype == torch.float32
    assert latent_key(rep.ok[0], r, r.model, torch.bfloat16) != latent_key(rep.ok[0], r, r.model, torch.float32)
    assert text_key('a', r.model, torch.bfloat16) != text_key('a', r.model)

def test_large_clips_use_tiled_framewise_encoding():
    from ltx_nb.latents import TILE_ABOVE, encode_clip
    from ltx_nb.model import load_vae, _synthetic_clip
    vae = load_vae(EMBEDDED_MODEL)
    clip = _synthetic_clip(25, 64, 64)
    whole = encode_clip(vae, clip)
    assert not vae.use_tiling and not vae.use_framewise_decoding
    tiled = encode_clip(vae, clip, tile_above=0)
    assert vae.use_tiling and vae.use_framewise_decoding and tiled.shape == whole.shape == (16, 4, 2, 2)
    assert torch.isfinite(tiled).all()
    assert 121 * 960 * 960 > TILE_ABOVE > 25 * 64 * 64  # the real high bucket at 121 frames is tiled
    encode_clip(vae, clip)
    assert not vae.use_tiling  # a small clip after a large one is encoded whole again

def test_lora_dtype_option(tmp_path):
    from ltx_nb.model import add_lora, load_transformer, load_lora_state, save_lora
    assert parse_request(dict(training_data_url='x')).lora_dtype == 'bf16'
    with pytest.raises(RequestError, match='lora_dtype'): parse_request(dict(training_data_url='x', lora_dtype='fp16'))
    tr = add_lora(load_transformer(EMBEDDED_MODEL), 4)
    for dt, want in (('bf16', torch.bfloat16), ('fp32', torch.float32), (None, torch.float32)):
        f = save_lora(tr, tmp_path/f'{dt}.safetensors', dtype=dt)
        assert {v.dtype for v in load_lora_state(f).values()} == {want}
