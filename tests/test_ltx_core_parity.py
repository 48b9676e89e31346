"""Parity with Lightricks' own implementation (ltx-core 1.0.0, installed by `make setup` with --no-deps) on the tiny model,
on the CPU, and Lightricks' single-file checkpoints end to end: check → train → sample from a single file gives what the
diffusers folder gives."""
import copy, json, os, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import STEPS

try:
    import ltx_core  # noqa: F401
    HAVE_LTX_CORE = True
except ImportError: HAVE_LTX_CORE = False
needs_ltx_core = pytest.mark.skipif(not HAVE_LTX_CORE, reason="ltx-core is not importable (make setup installs it: "
                                    "pip install --no-deps ltx-core==1.0.0 einops)")

from ltx_nb.core import EMBEDDED_MODEL
from ltx_nb import ltx_format as lf
from ltx_nb.model import add_lora, embedded_model_dir, forward_video, load_transformer, save_lora
from ltx_nb.train import masked_batch

TOL = 1e-4

pytestmark = pytest.mark.usefixtures('one_torch_thread')  # runs compared bit for bit need identical float reductions

@pytest.fixture(scope='module')
def tiny():
    return load_transformer(EMBEDDED_MODEL, video_only=False).eval()  # all keys, for ltx-core's audio-video LTXModel

def batch(tr, ref_grid=(3, 2, 2), grid=(3, 4, 4), sigma=0.7, seed=0):
    "A masked, reference-guided batch (reference + kept + noised tokens, per-token timesteps, our positions)."
    g = torch.Generator().manual_seed(seed)
    C, D = tr.config.in_channels, tr.config.cross_attention_dim
    s = dict(target=torch.randn(C, *grid, generator=g), reference=torch.randn(C, *ref_grid, generator=g),
             keep=(torch.rand(*grid, generator=g) > 0.5).float(), context=torch.randn(8, D, generator=g),
             context_mask=torch.tensor([0, 0, 1, 1, 1, 1, 1, 1]))
    return masked_batch(tr, s, sigma, torch.randn(grid[0]*grid[1]*grid[2], C, generator=g), fps=24.0)

def run_both(ours_model, core_model, b):
    with torch.no_grad():
        ours = forward_video(ours_model, b.tokens, b.timesteps, b.sigma, b.coords, b.context, b.context_mask)
        theirs = lf.ltx_core_forward(core_model, b.tokens, b.timesteps, b.sigma, b.coords, b.context, b.context_mask)
    return ours, theirs

@needs_ltx_core
@pytest.mark.parametrize('sigma', [0.05, 0.7, 1.0])
def test_ltx_core_training_forward_matches(tiny, sigma):
    core = lf.ltx_core_transformer(tiny)
    b = batch(tiny, sigma=sigma)
    assert (b.timesteps == 0).any() and (b.timesteps > 0).any() and b.n_ref == 12
    ours, theirs = run_both(tiny, core, b)
    assert (ours - theirs).abs().max().item() <= TOL

@needs_ltx_core
def test_ltx_core_uses_the_mapped_weights(tiny):
    "A changed weight on our side changes the comparison: the parity is not vacuous."
    core = lf.ltx_core_transformer(tiny)
    other = copy.deepcopy(tiny)
    with torch.no_grad(): other.transformer_blocks[0].attn1.to_v.weight.mul_(1.5)
    ours, theirs = run_both(other, core, batch(tiny))
    assert (ours - theirs).abs().max().item() > 1e-3

@needs_ltx_core
@pytest.mark.parametrize('factor,ref_grid', [(1, (3, 4, 4)), (2, (3, 2, 2))])
def test_ltx_core_reference_positions(tiny, factor, ref_grid):
    "Our reference positions equal ltx-core's `VideoConditionByReferenceLatent` (factors 1 and 2, target 3×4×4)."
    from ltx_core.components.patchifiers import VideoLatentPatchifier
    from ltx_core.conditioning.types.reference_video_cond import VideoConditionByReferenceLatent
    from ltx_core.tools import VideoLatentTools
    from ltx_core.types import VideoLatentShape
    grid = (3, 4, 4)
    tools = VideoLatentTools(VideoLatentPatchifier(patch_size=1), VideoLatentShape(1, 16, *grid), fps=24.0)
    state = tools.create_initial_state('cpu', torch.float32)
    out = VideoConditionByReferenceLatent(torch.zeros(1, 16, *ref_grid), downscale_factor=factor).apply_to(state, tools)
    n = state.latent.shape[1]
    b = batch(tiny, ref_grid=ref_grid, grid=grid)
    assert torch.equal(b.coords[:, :, :b.n_ref].float(), out.positions[:, :, n:].float())
    assert torch.equal(b.coords[:, :, b.n_ref:].float(), state.positions.float())

@needs_ltx_core
def test_ltx_core_lora_fuser_matches_peft(tiny, tmp_path):
    "A `save_lora` file fused by ltx-core's loader + fuser (ComfyUI renaming map) gives our peft LoRA's outputs."
    rounded = copy.deepcopy(tiny)  # ltx-core fuses into bf16 (or fp8) weights only: both sides share the bf16 rounding
    with torch.no_grad():
        for p in rounded.parameters(): p.copy_(p.to(torch.bfloat16).float())
    torch.manual_seed(0)
    peft = add_lora(copy.deepcopy(rounded), 4).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for n, p in peft.named_parameters():
            if 'lora_B' in n: p.copy_(0.05 * torch.randn(p.shape, generator=g))
    fused = lf.ltx_core_fuse_lora(lf.ltx_core_transformer(rounded), save_lora(peft, tmp_path/'lora.safetensors'))
    b = batch(tiny)
    ours, theirs = run_both(peft, fused, b)
    base, _ = run_both(rounded, fused, b)
    assert (ours - theirs).abs().max().item() <= TOL
    assert (ours - base).abs().max().item() > 1e-2     # the LoRA does change the output

@needs_ltx_core
def test_ltx_core_latent_normalisation(tmp_path):
    "ltx-core's per-channel statistics (from our single file's `vae.per_channel_statistics.*`) give our normalised latents."
    from ltx_core.model.video_vae.ops import PerChannelStatistics
    from ltx_nb.model import _synthetic_clip, encode_video, load_vae
    vae = load_vae(EMBEDDED_MODEL)
    f = lf.write_single_file(embedded_model_dir(), tmp_path/'tiny.safetensors')
    _, stats_sd = lf.read_single_file(f, lambda k: k.startswith('vae.per_channel_statistics.'))
    stats = PerChannelStatistics(latent_channels=vae.config.latent_channels)
    stats.load_state_dict({k.removeprefix('vae.per_channel_statistics.'): v for k, v in stats_sd.items()})
    clip = _synthetic_clip(frames=9, height=64, width=64)
    with torch.no_grad():
        raw = vae.encode(torch.from_numpy(clip).permute(3, 0, 1, 2)[None].float() / 127.5 - 1).latent_dist.mode()
    assert (stats.normalize(raw)[0] - encode_video(vae, clip)).abs().max().item() <= 1e-5

# ---------------------------------------------------------------- single-file checkpoints

def test_single_file_round_trip(tmp_path):
    "Written in Lightricks' layout and loaded back through diffusers' converters: every tensor equal, configs derived."
    from ltx_nb.model import load_scheduler, load_text_encoder, load_vae
    f = lf.write_single_file(embedded_model_dir(), tmp_path/'tiny.safetensors')
    gemma = lf.write_gemma_folder(embedded_model_dir(), tmp_path/'gemma')
    shapes = lf.single_file_shapes(f)
    assert all(k.startswith(('model.diffusion_model.', 'vae.encoder.', 'vae.decoder.', 'vae.per_channel_statistics.',
                             'text_embedding_projection.')) for k in shapes)
    meta, _ = lf.read_single_file(f)
    assert meta['transformer']['rope_type'] == 'split' and meta['transformer']['caption_proj_before_connector']
    for load in (load_transformer, lambda m: load_transformer(m, video_only=False), load_vae):  # video-only, whole, VAE
        a, b = load(EMBEDDED_MODEL).state_dict(), load(f).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    te_a, te_b = load_text_encoder(EMBEDDED_MODEL), load_text_encoder(f, text_encoder=gemma)
    ca, ma = te_a.encode('a red car')[0], te_a.encode('a red car')[2]
    cb, mb = te_b.encode('a red car')[0], te_b.encode('a red car')[2]
    assert torch.equal(ca, cb) and torch.equal(ma, mb)
    assert load_scheduler(f).config.shift_terminal == load_scheduler(EMBEDDED_MODEL).config.shift_terminal
    rng = torch.get_rng_state()  # loading leaves torch's generator alone (training seeds it before caching)
    load_vae(f); load_text_encoder(f, text_encoder=gemma); load_transformer(f); load_transformer(f, video_only=False)
    assert torch.equal(rng, torch.get_rng_state())
    from ltx_nb.core import RequestError
    with pytest.raises(RequestError, match='text_encoder'): load_text_encoder(f)

def test_single_file_config_from_lightricks_section_only(tmp_path):
    "A file with only Lightricks' own metadata section still loads the tiny transformer (shape facts from the tensors)."
    from safetensors import safe_open
    from safetensors.torch import save_file
    f = lf.write_single_file(embedded_model_dir(), tmp_path/'tiny.safetensors')
    with safe_open(str(f), 'pt') as s:
        meta = json.loads(s.metadata()['config']); tensors = {k: s.get_tensor(k) for k in s.keys()}
    meta.pop('ltx_nb')
    g = tmp_path/'lightricks-only.safetensors'
    save_file(tensors, str(g), metadata={'config': json.dumps(meta)})
    a, b = lf.load_single_file_transformer(f).state_dict(), lf.load_single_file_transformer(g).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ca = lf.load_single_file_connectors(f).config
    cb = lf.load_single_file_connectors(g).config
    assert {k: ca[k] for k in ca if not k.startswith('_')} == {k: cb[k] for k in cb if not k.startswith('_')}

def test_request_needs_text_encoder_with_single_file():
    from ltx_nb.core import RequestError, parse_request
    with pytest.raises(RequestError, match='text_encoder'):
        parse_request(dict(training_data_url='x.zip', model='ltx-2.3-22b-dev.safetensors'))

BIN = Path(sys.executable).parent

def env()->dict:
    return {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', 'HF_HUB_OFFLINE': '1', 'TOKENIZERS_PARALLELISM': 'false'}

def ltx_nb(*args, cwd=None):
    return subprocess.run([str(BIN/'ltx-nb'), *map(str, args)], capture_output=True, text=True, timeout=900, env=env(), cwd=cwd)

def ltx_nb_here(*args)->int:
    "The same `ltx-nb` command in this process (one torch thread: the module's `one_torch_thread`, as `env()` gives the subprocesses)."
    from ltx_nb.cli import main
    return main(list(map(str, args)))

def test_single_file_check_train_sample_equals_folder(tmp_path):
    """check → train (a short run: `STEPS`) → sample from the single file + Gemma folder, each a fresh `ltx-nb` process as a
    user runs them, equals the same commands on the diffusers folder (run in this process: the reference side)."""
    from safetensors.torch import load_file
    from ltx_nb.synth import make_triplets, triplet_files
    data = tmp_path/'data'; make_triplets(data, n=2, frames=9)
    single = lf.write_single_file(embedded_model_dir(), tmp_path/'ltx-2.3-tiny.safetensors')
    gemma = lf.write_gemma_folder(embedded_model_dir(), tmp_path/'gemma')
    base = dict(training_data_url=str(data), number_of_frames=9, resolution='low', aspect_ratio='16:9', number_of_steps=STEPS,
                rank=8, learning_rate=1e-3, warmup_steps=5, checkpoint_interval=0, validation_interval=0, seed=3)
    runs = {'folder': dict(model=str(embedded_model_dir())), 'single': dict(model=str(single), text_encoder=str(gemma))}
    frames, loras = {}, {}
    for name, extra in runs.items():
        req = tmp_path/f'{name}.json'; req.write_text(json.dumps(dict(base, **extra)))
        loras[name] = tmp_path/f'run-{name}'/'lora.safetensors'
        files = triplet_files(0)
        out = tmp_path/f'{name}.npz'
        te = ['--text-encoder', gemma] if name == 'single' else []
        commands = [('check', req), ('run', req, '--run-dir', tmp_path/f'run-{name}', '--quiet'),
                    ('sample', '--model', extra['model'], *te, '--lora', loras[name], '--video', data/files['end'],
                     '--mask', data/files['mask'], '--reference', data/files['start'], '--prompt', 'stripes', '--steps', '2',
                     '--seed', '5', '--number-of-frames', '9', '--resolution', 'low', '--aspect-ratio', '16:9', '--quiet',
                     '--out', out)]
        for cmd in commands:
            if name == 'folder': assert ltx_nb_here(*cmd) == 0, cmd[0]
            else:
                r = ltx_nb(*cmd); assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
        frames[name] = np.load(out)['frames']
    a, b = load_file(str(loras['folder'])), load_file(str(loras['single']))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)   # same LoRA tensors (metadata names the model)
    assert np.array_equal(frames['folder'], frames['single'])
