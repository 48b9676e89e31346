"""What the benchmark scripts share: a random LTX-2.3 transformer of any size, a synthetic cached item, and `train`'s
own state and step (`ltx_nb.train.train_step` + `step_hooks`) around them, timed part by part.

Not part of the package: the counters live in `ltx_nb.bench` (nbs/19_performance.ipynb).
"""
from __future__ import annotations
import io, time
from collections import defaultdict
from pathlib import Path

# LTX-2.3's architecture flags (NOTES.md); everything else of the real size is diffusers' default config.
LTX23_FLAGS = dict(gated_attn=True, audio_gated_attn=True, cross_attn_mod=True, audio_cross_attn_mod=True,
                   use_prompt_embeddings=False, perturbed_attn=True, rope_type='split')
REAL = dict(num_layers=48, num_attention_heads=32, attention_head_dim=128,       # 19.0 B parameters
            audio_num_attention_heads=32, audio_attention_head_dim=64, caption_channels=3840)
CPU = dict(num_layers=4, num_attention_heads=4, attention_head_dim=64,           # inner 256: the model dominates
           audio_num_attention_heads=2, audio_attention_head_dim=32, caption_channels=3840)
QUICK = dict(num_layers=2, num_attention_heads=2, attention_head_dim=32,          # smoke tests only
             audio_num_attention_heads=2, audio_attention_head_dim=16, caption_channels=3840)
LATENT_CHANNELS = 128  # the real VAE's latent channels
CONTEXT_TOKENS = 1024  # the pipelines' text length after the connectors (registers fill the padding)


def build_transformer(size:dict, # REAL, CPU, QUICK or any layers/heads override of them
                      device='cpu', dtype=None, seed:int=0,
                      video_only:bool=False, # the audio branch stubbed, as `ltx_nb.model.load_transformer` loads it
                     ):
    "A random `LTX2VideoTransformer3DModel` of `size` with 2.3's flags, created directly on `device` in `dtype`."
    import torch
    from diffusers import LTX2VideoTransformer3DModel
    dtype = dtype or torch.float32
    inner = size['num_attention_heads'] * size['attention_head_dim']
    audio_inner = size['audio_num_attention_heads'] * size['audio_attention_head_dim']
    cfg = dict(in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS, cross_attention_dim=inner,
               audio_cross_attention_dim=audio_inner, **size, **LTX23_FLAGS)
    if video_only:  # the loader's path: meta device, stubs, then only the video weights are materialised (random here)
        from ltx_nb.model import strip_audio
        old = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            with torch.device('meta'): m = LTX2VideoTransformer3DModel.from_config(cfg)
        finally: torch.set_default_dtype(old)
        m = strip_audio(m, dtype, device).to_empty(device=device)
        g = torch.Generator(device).manual_seed(seed)
        with torch.no_grad():
            for p in m.parameters(): p.normal_(0, 0.02, generator=g)
        return m
    old = torch.get_default_dtype()
    torch.manual_seed(seed)
    torch.set_default_dtype(dtype)  # the real size only fits on one GPU if it is never materialised in fp32
    try:
        with torch.device(device): m = LTX2VideoTransformer3DModel(**cfg)
    finally: torch.set_default_dtype(old)
    return m


def synthetic_item(size:tuple[int,int], # target bucket (width, height)
                     frames:int=89, factor:int=1, # pixel frames; reference_downscale_factor
                     context_dim:int=256, # the transformer's inner dim (the connectors' output width)
                     device='cpu', seed:int=0, regen:float=0.4, # fraction of target tokens regenerated (a centred box)
                     context_tokens:int=CONTEXT_TOKENS,
                    )->dict:
    "A cached item as `CachedItem.load` returns it: random latents, a centred box to regenerate, a text context."
    import torch
    from ltx_nb.bench import step_tokens
    t = step_tokens(size, frames, factor)
    (F, H, W), rg = t['target_grid'], t['reference_grid']
    g = torch.Generator().manual_seed(seed)
    keep = torch.ones(F, H, W)
    bh, bw = max(1, round(H * regen ** 0.5)), max(1, round(W * regen ** 0.5))
    keep[:, (H - bh) // 2:(H - bh) // 2 + bh, (W - bw) // 2:(W - bw) // 2 + bw] = 0
    s = dict(target=torch.randn(LATENT_CHANNELS, F, H, W, generator=g),
             reference=torch.randn(LATENT_CHANNELS, *rg, generator=g), keep=keep,
             context=torch.randn(context_tokens, context_dim, generator=g), context_mask=torch.ones(context_tokens, dtype=torch.long))
    return {k: v.to(device) for k, v in s.items()}


def bench_state(tr, # a transformer from `build_transformer` (gets train's LoRA)
                run_dir:Path, device='cpu', total:int=10_000, lr:float=2e-4, seed:int=42, fps:int=24, rank:int=32,
                gradient_checkpointing:bool=False):
    "`train`'s `TrainState` for a prebuilt transformer: its stages attach the LoRA and build optimizer and schedule."
    from ltx_nb.core import Request
    from ltx_nb.train import prebuilt_state, make_bar
    r = Request(training_data_url='.', learning_rate=lr, seed=seed, frame_rate=fps, number_of_steps=total, rank=rank,
                device=device, checkpoint_interval=0, validation_interval=0)
    st = prebuilt_state(tr, r, run_dir, gradient_checkpointing=gradient_checkpointing)
    st.bar = make_bar(st, file=io.StringIO())  # formatted, not shown
    return st


class TrainStep:
    "`train`'s own step and hooks on the given items, with the seconds of each part (`train_step`'s marks, then hooks)."
    def __init__(self, st, sync=None):
        self.st, self.sync, self.times = st, sync or (lambda: None), defaultdict(list)

    def __call__(self, items:list[dict]):
        "Run the next step on `items` (as train's `st.items`); returns the loss."
        from ltx_nb.train import train_step, step_hooks
        self.st.items, last = items, [time.perf_counter()]
        def mark(name):
            self.sync(); t = time.perf_counter(); self.times[name].append(t - last[0]); last[0] = t
        train_step(self.st, mark); step_hooks(self.st); mark('hooks')
        return self.st.loss

    @property
    def tokens_per_step(self)->int: return self.st.tokens_per_step


def first_inputs(st, item:dict)->dict:
    "The transformer's keyword arguments for `item` at step 0, as `train` builds them (for the bare step)."
    from ltx_nb.model import transformer_inputs
    from ltx_nb.train import step_batch
    b, _ = step_batch(st.transformer, [item], st.r, 0, device=item['target'].device)
    return transformer_inputs(st.transformer, b.tokens, b.timesteps, b.sigma, b.coords, b.context, b.context_mask,
                              fps=st.r.frame_rate)


def bare_step(tr, params:list, inputs:dict, autocast):
    "The model's own work: one forward and backward of the LoRA-wrapped transformer on prebuilt inputs (no optimizer)."
    import torch
    with autocast(): out = tr(**inputs)[0]
    torch.autograd.grad(out.float().mean(), params)
