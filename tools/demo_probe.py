"""What the demo's figures are bounded by, measured with the demo's own fitting, VAE, sampler and metric.

    python tools/demo_probe.py ceiling            # region PSNR of the validation sources encoded and decoded by the VAE
    python tools/demo_probe.py sampler RUN_DIR    # region PSNR of a run's LoRA (and the bare base) per sampler setting

`ceiling` is the most a perfect LoRA can reach: the sampler's best possible latents are the source's own, so its
result is at best their decode, composited like the sampler's (kept pixels exact). Region PSNR is
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

if __name__ == '__main__':
    what = sys.argv[1] if len(sys.argv) > 1 else 'ceiling'
    if what == 'ceiling': print(json.dumps(ceiling(demo_request(sys.argv[2] if len(sys.argv) > 2 else None)), indent=1))
    elif what == 'sampler': sampler(sys.argv[2], sys.argv[3].split(',') if len(sys.argv) > 3 else None, '--base' in sys.argv)
    else: sys.exit(__doc__)
