"""GPU step at LTX-2.3's real size: the video-only transformer as `train` loads it (real config, random weights, bf16;
`--full-audio` for the whole audio-video model, the "before" of issue 17), a LoRA of rank 32,
one masked v2v training step as `train` runs it on CUDA (bf16 autocast, gradient checkpointing, fused AdamW) at
medium 768×448×89 and 768×768×89 with the reference at full and at half size: s/step, peak GPU memory, tokens/s,
model-FLOPs utilisation against the card's peak, and what a step costs at a GPU-hour price next to the hosted
trainer's $0.0055 and peers' published 4.1 s / 8.9 s per step. Without CUDA it prints "skipped: no CUDA" and exits 0.

    python benchmarks/gpu_step.py                       # needs about 50 GB of GPU memory (13.1 B parameters in bf16)
    python benchmarks/gpu_step.py --full-audio          # the audio branch loaded too (19.0 B): peak memory and s/step before
    python benchmarks/gpu_step.py --usd-per-hour 3.00   # another price
    python benchmarks/gpu_step.py --quick               # 2 real-width layers, tiny sequences (a smoke test)
    python benchmarks/gpu_step.py --quick --device cpu  # the same code path on the CPU, to catch shape errors
    python benchmarks/gpu_step.py --presets             # a row per VRAM preset (24/32/48/80 GB), full and half reference,
                                                        # each under a memory cap of its budget
    python benchmarks/gpu_step.py --presets --dry-run   # the preset runs it would make (any machine)

Presets: each preset's transformer knobs (`ltx_nb.memory.PRESETS`: base precision, block offload) are applied by
`ltx_nb.memory.apply_memory_settings` to the video-only transformer built on the CPU, and the process is capped with
`torch.cuda.set_per_process_memory_fraction(budget / card)`, so one large card shows what a 24/32/48 GB card gets. The
text-encoder knobs act during caching, not in a step, and are listed only. A case that runs out of memory under its
cap gets a row that says so.

FLOPs: one forward is counted by torch's FlopCounterMode (matrix products and attention); a step is 3 × that
(forward + a backward worth two forwards, the convention behind 6·params·tokens). Checkpointing's recomputed forward
is not counted. MFU = step FLOPs / s per step / the card's dense bf16 peak (`ltx_nb.bench.PEAK_TFLOPS`).
"""
from __future__ import annotations
import argparse, sys, tempfile
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from bench_common import REAL, build_transformer, synthetic_item, bench_state, TrainStep, first_inputs

CASES = [((768, 448), 1), ((768, 448), 2), ((768, 768), 1), ((768, 768), 2)]
QUICK_CASES = [((256, 128), 1), ((256, 128), 2)]
PRESET_CASES = [((768, 448), 1), ((768, 448), 2)]  # issue 11's table: 768×448×89, reference full and half


def preset_runs(card_gb:float, # the card's memory in GB (2³⁰ bytes)
                presets=('24', '32', '48', '80'), cases=PRESET_CASES)->list[dict]:
    "One run per preset: its knobs, the memory cap (fraction of the card) equal to its budget, and its cases."
    from ltx_nb.memory import PRESETS
    return [dict(preset=p, cap_gb=float(p), fraction=min(1.0, float(p) / card_gb), cases=list(cases), **PRESETS[p])
            for p in presets]


def preset_case_name(wh:tuple, f:int, frames:int)->str:
    return f"{wh[0]}×{wh[1]}×{frames}, ref {'full' if f == 1 else 'half'}"


def run_presets(a, size:dict, frames:int, reps:int, ctx:int, peak:float|None)->list[dict]:
    "Time every preset's cases under its memory cap (CUDA only); a case that runs out of memory says so."
    import gc, torch
    from ltx_nb.core import Request
    from ltx_nb.memory import apply_memory_settings
    from ltx_nb.bench import interleaved, median, throughput, step_tokens, count_flops, mfu, cost_per_step
    from ltx_nb.train import peak_memory_mb
    card = torch.cuda.get_device_properties(a.device).total_memory / 2**30
    inner, rows = size['num_attention_heads'] * size['attention_head_dim'], []
    for run in preset_runs(card):
        gc.collect(); torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction(run['fraction'], a.device)
        r = Request(training_data_url='.', vram=run['preset'], device=a.device)
        tr = apply_memory_settings(build_transformer(size, 'cpu', torch.bfloat16, video_only=True), r, a.device)
        with tempfile.TemporaryDirectory() as run_dir:
            st = bench_state(tr, Path(run_dir), a.device, gradient_checkpointing=True)
            step = TrainStep(st, sync=torch.cuda.synchronize)
            for wh, f in run['cases']:
                k, n = preset_case_name(wh, f, frames), step_tokens(wh, frames, f)
                row = dict(preset=run['preset'], case=k, base=run['base_precision'], offload=run['offload'],
                           **{'text encoder': run['text_encoder_precision'], 'cap GB': run['cap_gb']})
                try:
                    item = [synthetic_item(wh, frames, f, inner, a.device, context_tokens=ctx)]
                    torch.cuda.reset_peak_memory_stats(a.device); step(item)
                    s = median(interleaved({k: lambda: step(item)}, reps=reps, warmup=0, sync=torch.cuda.synchronize)[k])
                    row.update({'s/step': s, 'peak GB': peak_memory_mb(a.device) / 1024,
                                'tokens/s': throughput(n['total'], 1, s)['tokens_per_s']})
                    inputs = first_inputs(st, item[0])
                    with torch.no_grad(), st.acc.autocast(): fl = 3 * count_flops(lambda: tr(**inputs))
                    u = mfu(fl, s, peak)
                    row.update({'MFU': f'{u:.0%}' if u is not None else '—',
                                f'$/step at ${a.usd_per_hour:.2f}/h': cost_per_step(s, a.usd_per_hour)})
                except torch.OutOfMemoryError: row['s/step'] = f"out of memory under the {run['cap_gb']:g} GB cap"
                rows.append(row)
        del tr, st, step
    torch.cuda.set_per_process_memory_fraction(1.0, a.device)
    return rows


def main(argv=None)->int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='2 real-width layers, tiny sequences, 1 turn')
    ap.add_argument('--device', default='cuda', help="'cuda' (default), 'cuda:N', or 'cpu' to check the code path")
    ap.add_argument('--layers', type=int, default=None, help='transformer layers (default 48; 2 with --quick)')
    ap.add_argument('--frames', type=int, default=None, help='pixel frames (default 89; 9 with --quick)')
    ap.add_argument('--reps', type=int, default=None, help='timed turns of each case (default 3; 1 with --quick)')
    ap.add_argument('--usd-per-hour', type=float, default=2.50, help='GPU-hour price for the cost column (default $2.50, an H100)')
    ap.add_argument('--full-audio', action='store_true', help='load the audio branch too (the model before issue 17)')
    ap.add_argument('--peak-tflops', type=float, default=None, help="the card's dense bf16 peak, if not in PEAK_TFLOPS")
    ap.add_argument('--presets', action='store_true', help='a row per VRAM preset under a memory cap of its budget')
    ap.add_argument('--dry-run', action='store_true', help='with --presets: list the runs (knobs, caps, cases) and stop')
    ap.add_argument('--card-gb', type=float, default=80.0, help='with --dry-run: the card size the caps are fractions of')
    a = ap.parse_args(argv)
    if a.presets and a.dry_run:
        from ltx_nb.bench import markdown_table
        frames = a.frames or 89
        print(markdown_table([dict(preset=run['preset'], base=run['base_precision'], offload=run['offload'],
                                   **{'text encoder': run['text_encoder_precision'], 'cap GB': run['cap_gb'],
                                      'memory fraction': round(run['fraction'], 3),
                                      'cases': '; '.join(preset_case_name(wh, f, frames) for wh, f in run['cases'])})
                              for run in preset_runs(a.card_gb)]))
        return 0
    import torch
    from ltx_nb.bench import (interleaved, median, spread, throughput, markdown_table, machine_line, count_flops, mfu,
                              peak_tflops, cost_per_step, step_tokens, HOSTED_USD_PER_STEP, PEER_S_PER_STEP)
    from ltx_nb.train import peak_memory_mb
    cuda = a.device.startswith('cuda')
    if cuda and not torch.cuda.is_available():
        print('skipped: no CUDA — run `python benchmarks/gpu_step.py` on a machine with an NVIDIA GPU '
              '(about 60 GB of GPU memory for the real size; --quick for a 2-layer slice)')
        return 0
    size = dict(REAL, num_layers=a.layers or (2 if a.quick else REAL['num_layers']))
    cases, frames = (QUICK_CASES, a.frames or 9) if a.quick else (CASES, a.frames or 89)
    reps, ctx = a.reps or (1 if a.quick else 3), 64 if a.quick and not cuda else 1024
    if a.presets:
        if not cuda: print('skipped: --presets needs CUDA (memory caps); --presets --dry-run lists the runs'); return 0
        print(f"## VRAM presets at LTX-2.3's real size, each under a memory cap of its budget — {torch.cuda.get_device_name(a.device)}, "
              f"median of {reps} turns\n")
        print(markdown_table(run_presets(a, size, frames, reps, ctx, a.peak_tflops or peak_tflops(torch.cuda.get_device_name(a.device)))))
        print(f'\n{machine_line()}')
        return 0
    inner = size['num_attention_heads'] * size['attention_head_dim']
    sync = torch.cuda.synchronize if cuda else None
    name = torch.cuda.get_device_name(a.device) if cuda else 'CPU'
    peak = a.peak_tflops or (peak_tflops(name) if cuda else None)
    dtype = torch.bfloat16 if cuda else torch.float32  # CPUs without bf16 units crawl in bf16
    tr = build_transformer(size, a.device, dtype, video_only=not a.full_audio)
    n_params = sum(p.numel() for p in tr.parameters())
    items, peaks, flops = {}, {}, {}
    with tempfile.TemporaryDirectory() as run_dir:  # train's CUDA defaults: bf16 autocast, checkpointing on, fused AdamW
        st = bench_state(tr, Path(run_dir), a.device, gradient_checkpointing=True)
        step = TrainStep(st, sync=sync)
        for (wh, f) in cases:  # one warm-up step each, alone, for its peak memory; then the model FLOPs of a forward
            k = f"{wh[0]}×{wh[1]}×{frames}, ref {'full' if f == 1 else 'half'}"
            items[k] = [synthetic_item(wh, frames, f, inner, a.device, context_tokens=ctx)]
            if cuda: torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats(a.device)
            step(items[k])
            peaks[k] = peak_memory_mb(a.device) if cuda else None
            inputs = first_inputs(st, items[k][0])
            with torch.no_grad(), st.acc.autocast(): flops[k] = 3 * count_flops(lambda: tr(**inputs))
            del inputs
        t = interleaved({k: (lambda s=s: step(s)) for k, s in items.items()}, reps=reps, warmup=0, sync=sync)
    rows = []
    for (wh, f), (k, v) in zip(cases, t.items()):
        s, n = median(v), step_tokens(wh, frames, f)
        u = mfu(flops[k], s, peak)
        rows.append({'case': k, 'tokens (ref+target)': f"{n['reference']}+{n['target']}", 's/step': s, 'spread': spread(v),
                     'tokens/s': throughput(n['total'], 1, s)['tokens_per_s'],
                     'peak GB': peaks[k] / 1024 if peaks[k] else None, 'TFLOP/step': flops[k] / 1e12,
                     'MFU': f'{u:.0%}' if u is not None else '—', f'$/step at ${a.usd_per_hour:.2f}/h': cost_per_step(s, a.usd_per_hour),
                     'hosted $ / ours': HOSTED_USD_PER_STEP / cost_per_step(s, a.usd_per_hour)})
    for k, s in PEER_S_PER_STEP.items():
        rows.append({'case': k, 's/step': s, f'$/step at ${a.usd_per_hour:.2f}/h': cost_per_step(s, a.usd_per_hour),
                     'hosted $ / ours': HOSTED_USD_PER_STEP / cost_per_step(s, a.usd_per_hour)})
    rows.append({'case': 'hosted trainer', f'$/step at ${a.usd_per_hour:.2f}/h': HOSTED_USD_PER_STEP, 'hosted $ / ours': 1.0})
    print(f"## One masked v2v LoRA step at LTX-2.3's real width — {size['num_layers']} layers ({n_params / 1e9:.2f} B "
          f"parameters, {'bf16' if cuda else 'fp32'}, audio branch {'loaded' if a.full_audio else 'not loaded'}), LoRA r32, {'bf16 autocast, ' if cuda else ''}gradient checkpointing, "
          f"{'fused ' if cuda else ''}AdamW; {name} "
          f"(peak {peak or '?'} TFLOP/s); median of {reps} interleaved turns\n")
    print(markdown_table(rows))
    print(f'\n{machine_line()}')
    k0 = next(iter(t))
    s0 = median(t[k0])
    c0 = cost_per_step(s0, a.usd_per_hour)
    print(f'\n{k0}: {s0:.2f} s/step = ${c0:.4f} at ${a.usd_per_hour:.2f}/h; hosted ${HOSTED_USD_PER_STEP} / ours = '
          f"{HOSTED_USD_PER_STEP / c0:.1f}×; peers' full fine-tune: 4.1 s/step at 832×480×49")
    return 0


if __name__ == '__main__': sys.exit(main())
