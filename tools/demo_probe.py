"""What the demo's figures are bounded by, measured with the demo's own fitting, VAE, sampler and metric.

    python tools/demo_probe.py ceiling            # region PSNR of the validation sources encoded and decoded by the VAE
    python tools/demo_probe.py best [--steps N]   # region PSNR of the best latents the decoder can be given: the
                                                  # regenerated tokens optimised (Adam) to decode to the source
    python tools/demo_probe.py sampler RUN_DIR    # region PSNR of a run's LoRA (and the bare base) per sampler setting
    python tools/demo_probe.py copy [MODEL]       # the base's masked loss on the demo's items per kind of reference
    python tools/demo_probe.py learn [MODEL] [--full] [--scratch] [--steps N] [--lr X]   # learning-check ratios while
                                                  # a LoRA (--full: every weight; --scratch: from a random init of
                                                  # MODEL's config, every weight) learns the demo's items

`ceiling` is the round trip: the source's own latents decoded, composited like the sampler's (kept pixels exact).
It is not the decoder's best input, so a LoRA can beat it. `best` estimates the decoder's best: starting from the
round trip, gradient descent moves only the tokens the sampler regenerates (the kept ones stay the source's, as in
`sample_masked`) to make the decode match the source in the region. A sampler could only beat it by finding latents
the optimiser missed, so it is the practical limit of what any LoRA on this VAE can show (an estimate, not a proof).
Region PSNR is
`ltx_nb.metrics.validation_metrics`, the function the validation callback (and so `demo_figures`) uses.
"""
import dataclasses, json, sys, time
from pathlib import Path
import numpy as np

def demo_request(run_dir=None):
    "The demo's request: a run's own, or data_samples/request.json with the demo's overrides."
    from ltx_nb.core import load_request
    from ltx_nb.rundir import read_request
    if run_dir: return read_request(run_dir)
    from ltx_nb.cli import DEMO_OVERRIDES
    from ltx_nb.runner import demo_request_path
    return load_request(demo_request_path(), DEMO_OVERRIDES)

def region_psnr(result, inp)->float:
    "The validation callback's region PSNR of one result against its source."
    from ltx_nb.metrics import validation_metrics
    return validation_metrics(result, inp.source, inp.white, True)['psnr_region']

def ceiling(r)->list[dict]:
    "Per entry: the VAE round trip's region PSNR, a flat fill with the region's mean colour, and the coverage."
    import torch
    from ltx_nb.model import load_vae, encode_video, decode_latents
    from ltx_nb.validation import Validator
    v, vae = Validator(r, is_main=True), load_vae(r.model, torch.float32, 'cpu')
    out = []
    for k in range(len(r.validation)):
        inp = v.entry(k)
        w = np.asarray(inp.white)[..., None]
        rec = np.where(w, decode_latents(vae, encode_video(vae, inp.source)).numpy(), inp.source)
        mean = np.asarray(inp.source)[np.asarray(inp.white)].mean(0).round().astype(np.uint8)
        flat = np.where(w, mean, inp.source)
        out.append(dict(entry=k, name=inp.name, vae_roundtrip_db=round(region_psnr(rec, inp), 2),
                        mean_fill_db=round(region_psnr(flat, inp), 2), coverage=round(float(w.mean()), 3),
                        region_std=round(float(np.asarray(inp.source)[np.asarray(inp.white)].std(0).mean()), 1)))
    return out

def best_latents(r, steps:int=150, lr:float=0.05)->list[dict]:
    "Per entry: region PSNR of the decoder's output (composited) for latents optimised to reproduce the source."
    import torch
    from diffusers import LTX2Pipeline
    from ltx_nb.model import load_vae, encode_video
    from ltx_nb.masks import latent_keep_mask
    from ltx_nb.validation import Validator
    v, vae = Validator(r, is_main=True), load_vae(r.model, torch.float32, 'cpu').requires_grad_(False)
    out = []
    for k in range(len(r.validation)):
        inp, t0 = v.entry(k), time.time()
        w = np.asarray(inp.white)
        z0 = encode_video(vae, inp.source)
        regen = torch.from_numpy(latent_keep_mask(w, r.mask_dilation) == 0)[None]       # (1, F', h, w)
        target = torch.as_tensor(np.asarray(inp.source)).permute(3, 0, 1, 2)[None].float()/127.5 - 1
        sel = torch.from_numpy(w)[None, None].expand_as(target)
        dz = torch.zeros_like(z0, requires_grad=True)
        opt = torch.optim.Adam([dz], lr=lr)
        def decode(z):
            z = LTX2Pipeline._denormalize_latents(z[None], vae.latents_mean, vae.latents_std, vae.config.scaling_factor)
            return vae.decode(z, None, return_dict=False)[0]
        def composited(x):
            x = ((x.detach().clamp(-1, 1) + 1)*127.5).round().to(torch.uint8)[0].permute(1, 2, 3, 0).numpy()
            return np.where(w[..., None], x, inp.source)
        first, best = None, -1.0
        for i in range(steps + 1):
            x = decode(z0 + dz*regen)
            db = region_psnr(composited(x), inp)
            first = db if first is None else first
            best = max(best, db)
            if i == steps: break
            loss = ((x.clamp(-1, 1) - target)[sel]**2).mean()
            opt.zero_grad(); loss.backward(); opt.step()
        out.append(dict(entry=k, name=inp.name, roundtrip_db=round(first, 2), best_db=round(best, 2), steps=steps,
                        seconds=round(time.time() - t0)))
        print(out[-1], flush=True)
    return out

SETTINGS = dict(  # name -> validation overrides (the request's own first)
    request={}, cfg1_stg0=dict(validation_guidance_scale=1.0, stg_scale=0.0),
    cfg1_stg0_20steps=dict(validation_guidance_scale=1.0, stg_scale=0.0, validation_num_inference_steps=20),
    cfg3_stg0=dict(stg_scale=0.0), cfg1_stg1=dict(validation_guidance_scale=1.0), steps20=dict(validation_num_inference_steps=20))

def sampler(run_dir, names=None, base_too:bool=False)->list[dict]:
    "Region PSNR per entry of the run's final LoRA (and of the bare base), for each sampler setting."
    import torch
    from ltx_nb.model import load_transformer, add_lora, load_lora_state, set_lora_state, load_vae, load_scheduler
    from ltx_nb.latents import encode_prompts, load_tensors
    from ltx_nb.validation import Validator, validation_prompts
    r = demo_request(run_dir)
    base = load_transformer(r.model, torch.float32, 'cpu').requires_grad_(False).eval()
    tr = add_lora(load_transformer(r.model, torch.float32, 'cpu').requires_grad_(False), r.rank).eval()
    set_lora_state(tr, load_lora_state(Path(run_dir)/'lora.safetensors'))
    vae, sch = load_vae(r.model, torch.float32, 'cpu'), load_scheduler(r.model)
    embeds = [load_tensors(f) for f in encode_prompts(validation_prompts(r), r.model)]
    rows = []
    for name in names or SETTINGS:
        v = Validator(dataclasses.replace(r, **SETTINGS[name]), is_main=True); v.scheduler = sch
        for who, model in (('lora', tr), ('base', base))[:2 if base_too else 1]:
            t0 = time.time()
            res = [region_psnr(v._sample(k, v.entry(k), model, vae, (embeds[k], embeds[-1])), v.entry(k)) for k in range(len(r.validation))]
            rows.append(dict(setting=name, model=who, psnr=[round(x, 2) for x in res], s=round(time.time() - t0, 1)))
            print(json.dumps(rows[-1]), flush=True)
    return rows

def demo_items(r)->list[dict]:
    "The demo's cached training items, as the trainer and the learning check load them."
    from ltx_nb.dataset import check_dataset
    from ltx_nb.latents import cache_dataset
    return [c.load() for c in cache_dataset(check_dataset(r, progress=False), r, progress=False)]

def copy_losses(model=None)->dict:
    """The bare base's masked loss on the demo's items (the learning check's σ and noise) with no reference, the item's
    own, the next item's, and the target's own latents as an oracle reference: how much the base already takes from a
    clean token at its own position."""
    from ltx_nb.model import load_transformer
    from ltx_nb.train import masked_eval_loss
    r = demo_request(); items = demo_items(r)
    tr = load_transformer(model or r.model).float().eval()
    oracle = [{**s, 'reference': s['target']} for s in items]
    losses = dict(none=masked_eval_loss(tr, items, drop_reference=True), own=masked_eval_loss(tr, items),
                  mismatched=masked_eval_loss(tr, items, mismatched=True), oracle=masked_eval_loss(tr, oracle))
    return {k: round(v, 4) for k, v in losses.items()}

def learn(model=None, full:bool=False, steps:int=500, lr:float|None=None, rank:int=16, every:int=100, scratch:bool=False)->list[dict]:
    """The learning check's ratios every `every` steps while a rank-`rank` LoRA (or, `full`, every weight of the base)
    trains on the demo's items with the trainer's own draws and loss (AdamW, 20 warm-up steps, cosine, clip 1)."""
    import torch
    from ltx_nb.model import load_transformer, add_lora
    from ltx_nb.train import step_batch, step_loss, masked_eval_loss
    torch.manual_seed(0)
    r = demo_request(); items = demo_items(r)
    tr = load_transformer(model or r.model).float()
    if scratch:  # the same architecture from a seeded random init: what the base's training does to learnability
        from diffusers import LTX2VideoTransformer3DModel
        torch.manual_seed(0); tr, full = LTX2VideoTransformer3DModel.from_config(tr.config).float(), True
    if full: tr.requires_grad_(True)
    else: add_lora(tr.requires_grad_(False), rank)
    params = [p for p in tr.parameters() if p.requires_grad]
    lr = lr or (1e-3 if full else 4e-3)
    def ratios():
        tr.eval(); t, m = masked_eval_loss(tr, items), masked_eval_loss(tr, items, mismatched=True); tr.train()
        return t, m
    untrained, _ = ratios()
    opt, rows, hist, t0 = torch.optim.AdamW(params, lr=lr, weight_decay=0.0), [], [], time.perf_counter()
    for step in range(steps):
        for pg in opt.param_groups: pg['lr'] = lr*min(1, (step + 1)/20)*0.5*(1 + np.cos(np.pi*step/steps))
        loss = step_loss(tr, step_batch(tr, items, r, step)[0])
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step()
        hist.append(loss.item())
        if (step + 1) % every == 0:
            t, m = ratios()
            rows.append(dict(step=step + 1, loss=round(float(np.mean(hist[-every:])), 4), trained_vs_untrained=round(t/untrained, 3),
                             trained_vs_mismatched=round(t/m, 3), s=round(time.perf_counter() - t0)))
            print(json.dumps(rows[-1]), flush=True)
    return rows

def _opt(name, default, kind=str):
    return kind(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default

if __name__ == '__main__':
    what = sys.argv[1] if len(sys.argv) > 1 else 'ceiling'
    if what == 'ceiling': print(json.dumps(ceiling(demo_request(sys.argv[2] if len(sys.argv) > 2 else None)), indent=1))
    elif what == 'best': print(json.dumps(best_latents(demo_request(), _opt('--steps', 150, int))))
    elif what == 'sampler': sampler(sys.argv[2], sys.argv[3].split(',') if len(sys.argv) > 3 else None, '--base' in sys.argv)
    elif what == 'copy': print(json.dumps(copy_losses(sys.argv[2] if len(sys.argv) > 2 else None)))
    elif what == 'learn':
        model = sys.argv[2] if len(sys.argv) > 2 and not sys.argv[2].startswith('--') else None
        learn(model, '--full' in sys.argv, _opt('--steps', 500, int), _opt('--lr', None, float), scratch='--scratch' in sys.argv)
    else: sys.exit(__doc__)
