"""Trainer overhead: `ltx_nb.train.train`'s own step (`train_step` + `step_hooks`) vs a bare forward + backward of the same
LoRA-wrapped transformer on the same tokens, taking turns in one run. Target: overhead ≤ 10 %.

    python benchmarks/trainer_overhead.py            # 4 layers, inner 256, 2016 tokens (medium 16:9 halved, 89 frames)
    python benchmarks/trainer_overhead.py --quick    # seconds: 2 layers, inner 64, a few hundred tokens
"""
from __future__ import annotations
import argparse, contextlib, sys, tempfile
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from bench_common import CPU, QUICK, build_transformer, synthetic_item, bench_state, TrainStep, first_inputs, bare_step


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='tiny model and sequence, 2 turns (a smoke test)')
    ap.add_argument('--reps', type=int, default=None, help='timed turns of each (default 10; 2 with --quick)')
    ap.add_argument('--size', default=None, help='target WxH (default 384x224: medium 16:9 halved)')
    ap.add_argument('--frames', type=int, default=None, help='pixel frames (default 89)')
    ap.add_argument('--layers', type=int, default=None, help='transformer layers (default 4)')
    ap.add_argument('--profile', action='store_true', help='also print a torch profile of one train step')
    a = ap.parse_args(argv)
    import torch
    from ltx_nb.bench import interleaved, median, spread, throughput, markdown_table, machine_line
    from ltx_nb.train import peak_memory_mb
    size = dict(QUICK if a.quick else CPU)
    if a.quick: torch.set_num_threads(1)  # a smoke test: on a busy machine, tiny ops wait on each other's threads
    if a.layers: size['num_layers'] = a.layers
    W, H = map(int, (a.size or ('128x64' if a.quick else '384x224')).split('x'))
    frames, reps = a.frames or (9 if a.quick else 89), a.reps or (2 if a.quick else 10)
    inner = size['num_attention_heads'] * size['attention_head_dim']
    tr = build_transformer(size)
    item = synthetic_item((W, H), frames, 1, inner)
    with tempfile.TemporaryDirectory() as run_dir:
        st = bench_state(tr, Path(run_dir))
        step, params = TrainStep(st), st.params
        inputs = first_inputs(st, item)
        t = interleaved({'train step': lambda: step([item]),
                         'bare forward+backward': lambda: bare_step(tr, params, inputs, st.acc.autocast)},
                        reps=reps, warmup=1)
        if a.profile:
            from torch.profiler import profile, ProfilerActivity
            with profile(activities=[ProfilerActivity.CPU]) as prof: step([item])
            print(prof.key_averages().table(sort_by='cpu_time_total', row_limit=25))
    tokens = step.tokens_per_step
    n_params = sum(p.numel() for n, p in tr.named_parameters() if 'lora_' not in n)
    real, bare = median(t['train step']), median(t['bare forward+backward'])
    rows = [dict(variant=k, **{'s/step': median(v), 'spread': spread(v), 'fastest s': min(v), 'tokens/step': tokens,
                               'tokens/s': throughput(tokens, 1, median(v))['tokens_per_s'], 'vs bare': median(v) / bare})
            for k, v in t.items()]
    print(f"## Trainer overhead — {size['num_layers']} layers, inner {inner} ({n_params / 1e6:.1f} M parameters), LoRA r32, "
          f"{W}×{H}×{frames}, reference full: {tokens} tokens; median of {reps} interleaved turns\n")
    print(markdown_table(rows))
    n = len(step.times['batch'])  # the warm-up step is in the section times too: drop it
    parts = {k: median(v[1:] if n > 1 else v) for k, v in step.times.items()}
    total = sum(parts.values())
    print('\nWhere a train step goes (median seconds per section):\n')
    print(markdown_table([{'section': k, 's': v, 'share': f'{v / total:.1%}'} for k, v in parts.items()]))
    glue = total - parts['forward'] - parts['backward']
    print(f'\nglue around the model call (batch, gather+check, clip+AdamW, logging, hooks): {glue:.3g} s = {glue / total:.1%} of the step')
    print(f"\npeak memory (train's peak_memory_mb, whole process): {peak_memory_mb('cpu'):.0f} MB · {machine_line()}")
    over = real / bare - 1
    fast = min(t['train step']) / min(t['bare forward+backward']) - 1
    print(f"\ntrain step / bare forward+backward = {real / bare:.3f}× (overhead {over:+.1%} by medians, {fast:+.1%} by "
          f"fastest turns; target ≤ +10%: {'met' if over <= 0.10 else 'NOT met'} by medians)")


if __name__ == '__main__': main()
