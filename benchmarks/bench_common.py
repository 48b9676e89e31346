"""What the benchmark scripts share: a random LTX-2.3 transformer of any size, a synthetic cached sample, and one
training step made of the same calls, in the same order, as the loop in `ltx_nb.train.train`.

Not part of the package: the counters live in `ltx_nb.bench` (nbs/13_performance.ipynb).
"""
from __future__ import annotations
import io, time
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


def synthetic_sample(size:tuple[int,int], # target bucket (width, height)
                     frames:int=89, factor:int=1, # pixel frames; reference_downscale_factor
                     context_dim:int=256, # the transformer's inner dim (the connectors' output width)
                     device='cpu', seed:int=0, regen:float=0.4, # fraction of target tokens regenerated (a centred box)
                     context_tokens:int=CONTEXT_TOKENS,
                    )->dict:
    "A cached sample as `CachedSample.load` returns it: random latents, a centred box to regenerate, a text context."
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
             context=torch.randn(context_tokens, context_dim, generator=g), mask=torch.ones(context_tokens, dtype=torch.long))
    return {k: v.to(device) for k, v in s.items()}


def attach_lora(tr, rank:int=32, gradient_checkpointing:bool=False)->list:
    "What `train` does to the loaded transformer: freeze it, add the LoRA, fp32 trainable weights; returns them."
    from ltx_nb.model import add_lora
    tr.requires_grad_(False)
    add_lora(tr, rank)
    params = [p for n, p in tr.named_parameters() if 'lora_' in n]
    for p in params: p.data = p.data.float(); p.requires_grad_(True)
    if gradient_checkpointing: tr.enable_gradient_checkpointing()
    tr.train()
    return params


class TrainStep:
    "One step of `train`'s loop, call for call (less its Ctrl-C flag check): pick, σ, noise, batch, forward, gather, check, backward, clip, AdamW, log."
    SECTIONS = ('batch', 'forward', 'gather+check', 'backward', 'clip+AdamW', 'logging')

    def __init__(self, tr, params:list, run_dir:Path, device='cpu', mixed_precision='no', total:int=10_000,
                 lr:float=2e-4, seed:int=42, fps:int=24, sync=None):
        from accelerate import Accelerator
        from tqdm.auto import tqdm
        from ltx_nb.core import Request
        from ltx_nb.train import make_optimizer, warmup_schedule, RunLog
        self.tr, self.params, self.sync = tr, params, sync or (lambda: None)
        self.r = Request(training_data_url='.', learning_rate=lr, seed=seed, frame_rate=fps, number_of_steps=total)
        self.acc = Accelerator(mixed_precision=mixed_precision, cpu=device == 'cpu')
        self.opt = make_optimizer(params, self.r, device)
        self.sched = warmup_schedule(self.opt, self.r.warmup_steps)
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        self.log = RunLog(Path(run_dir), total)
        self.bar = tqdm(total=total, desc='training', file=io.StringIO(), dynamic_ncols=True)  # formatted, not shown
        self.step, self.ema, self.tokens_per_step = 0, None, 0
        self.times = {k: [] for k in self.SECTIONS}

    def _mark(self, name:str, t0:float)->float:
        self.sync(); t = time.perf_counter(); self.times[name].append(t - t0); return t

    def __call__(self, samples:list[dict]):
        "Run the next step on `samples` (as train's `samples` list); returns the loss."
        import torch
        from ltx_nb.train import step_batch, step_loss
        r, acc, tr, step, rank, world, main = self.r, self.acc, self.tr, self.step, 0, 1, True
        t0 = t = time.perf_counter()
        b, sigma = step_batch(tr, samples, r, step, rank, world, acc.device)
        t = self._mark('batch', t)
        with acc.autocast(): loss = step_loss(tr, b, r.frame_rate)
        t = self._mark('forward', t)
        losses = acc.gather(loss.detach().float().reshape(1))
        if not torch.isfinite(losses).all(): raise RuntimeError(f'loss is {losses.tolist()} at step {step + 1}')
        t = self._mark('gather+check', t)
        loss.backward()
        t = self._mark('backward', t)
        if r.max_grad_norm: torch.nn.utils.clip_grad_norm_(self.params, r.max_grad_norm)
        self.opt.step(); self.sched.step(); self.opt.zero_grad(set_to_none=True)
        loss_v = float(losses.mean())
        t = self._mark('clip+AdamW', t)
        dt = time.perf_counter() - t0
        self.ema = dt if self.ema is None else 0.9 * self.ema + 0.1 * dt
        self.tokens_per_step = int(b.tokens.shape[1]) * world
        self.log.metric(step=step + 1, loss=loss_v, sigma=sigma, lr=self.sched.get_last_lr()[0], s_per_step=dt,
                        tokens=self.tokens_per_step)
        self.bar.update(1); self.bar.set_postfix(loss=f'{loss_v:.4f}', s_step=f'{self.ema:.2f}')
        n = step + 1
        if main and (n % 10 == 0 or n == r.number_of_steps):
            self.log.update(step=n, loss=loss_v, s_per_step=self.ema, eta_s=self.ema * (r.number_of_steps - n))
        acc.wait_for_everyone()
        self._mark('logging', t)
        self.step += 1
        return loss_v


def model_inputs(tr, b, fps:int=24)->dict:
    "The keyword arguments `forward_video` gives the transformer for batch `b`, built once (for the bare step)."
    import torch
    cfg, dev, dt = tr.config, b.tokens.device, tr.dtype
    scale, sigma = cfg.timestep_scale_multiplier, b.sigma.float()
    return dict(hidden_states=b.tokens.to(dt), audio_hidden_states=torch.zeros(1, 1, cfg.audio_in_channels, device=dev, dtype=dt),
                encoder_hidden_states=b.context.to(dt), audio_encoder_hidden_states=torch.zeros(1, 1, cfg.audio_cross_attention_dim, device=dev, dtype=dt),
                encoder_attention_mask=b.context_mask, audio_encoder_attention_mask=torch.ones(1, 1, device=dev),
                timestep=b.timesteps.float() * scale, audio_timestep=sigma * scale, sigma=sigma * scale, audio_num_frames=1,
                video_coords=b.coords, fps=fps, isolate_modalities=True, use_cross_timestep=True, return_dict=False)


def bare_step(tr, params:list, inputs:dict, autocast):
    "The model's own work: one forward and backward of the LoRA-wrapped transformer on prebuilt inputs."
    with autocast(): out = tr(**inputs)[0]
    out.float().mean().backward()
    for p in params: p.grad = None


def first_batch(tr, sample:dict, fps:int=24, seed:int=42):
    "The masked batch `train` builds for `sample` at step 0."
    import torch
    from ltx_nb.train import step_generator, sample_sigma, masked_batch
    g = step_generator(seed, 0)
    n = int(sample['keep'].numel())
    sigma = sample_sigma(n, g)
    return masked_batch(tr, sample, sigma, torch.randn(n, sample['target'].shape[0], generator=g).to(sample['target'].device), fps)
