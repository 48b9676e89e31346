"""Token budget: the reference/target token split of every resolution bucket at 89 frames, reference at full size vs
`reference_downscale_factor` 2 (arithmetic from `latent_grid` + `reference_size`), and the measured train-step time
of both on the CPU-sized model at one bucket scaled down, taking turns in one run.

    python benchmarks/token_budget.py            # 384×256×89 (about medium 16:9 halved; its half is exact) on the 4-layer, inner-256 model
    python benchmarks/token_budget.py --quick    # seconds: a tiny model and sequence
"""
from __future__ import annotations
import argparse, sys, tempfile
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from bench_common import CPU, QUICK, build_transformer, synthetic_item, bench_state, TrainStep


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='tiny model and sequence, 2 turns (a smoke test)')
    ap.add_argument('--reps', type=int, default=None, help='timed turns of each (default 8; 2 with --quick)')
    ap.add_argument('--frames', type=int, default=89, help='pixel frames of the token table (default 89)')
    a = ap.parse_args(argv)
    from ltx_nb.bench import budget_rows, step_tokens, interleaved, median, spread, throughput, markdown_table, machine_line
    print(f'## Token budget per bucket at {a.frames} frames (reference full vs reference_downscale_factor 2)\n')
    print(markdown_table(budget_rows(a.frames)))
    size = QUICK if a.quick else CPU
    if a.quick:
        import torch; torch.set_num_threads(1)  # a smoke test: on a busy machine, tiny ops wait on each other's threads
    W, H = (128, 64) if a.quick else (384, 256)  # about medium 16:9 (768×448) halved, with an exact half (192×128)
    frames, reps = (9 if a.quick else 89), a.reps or (2 if a.quick else 8)
    inner = size['num_attention_heads'] * size['attention_head_dim']
    tr = build_transformer(size)
    items = {f: [synthetic_item((W, H), frames, f, inner)] for f in (1, 2)}
    with tempfile.TemporaryDirectory() as run_dir:
        step = TrainStep(bench_state(tr, Path(run_dir)))
        t = interleaved({'reference full': lambda: step(items[1]), 'reference half': lambda: step(items[2])},
                        reps=reps, warmup=1)
    full = median(t['reference full'])
    rows = []
    for (name, v), f in zip(t.items(), (1, 2)):
        n = step_tokens((W, H), frames, f)
        rows.append({'reference': name, 'reference tokens': n['reference'], 'target tokens': n['target'],
                     'tokens/step': n['total'], 's/step': median(v), 'spread': spread(v), 'fastest s': min(v),
                     'tokens/s': throughput(n['total'], 1, median(v))['tokens_per_s'], 'vs full': median(v) / full})
    print(f"\n## Measured train step, {W}×{H}×{frames}, {size['num_layers']} layers, inner {inner}, LoRA r32; "
          f"median of {reps} interleaved turns\n")
    print(markdown_table(rows))
    print(f'\n{machine_line()}')
    half = median(t['reference half'])
    print(f"\nreference half / full: {rows[1]['tokens/step'] / rows[0]['tokens/step']:.2f}× the tokens, "
          f"{half / full:.2f}× the step time by medians ({full / half:.2f}× faster), "
          f"{min(t['reference half']) / min(t['reference full']):.2f}× by fastest turns")


if __name__ == '__main__': main()
