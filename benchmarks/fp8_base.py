"""fp8-stored base vs fp32 on the CPU: a LoRA trained on a tiny LTX-2.3 transformer (2.3's architecture flags, random
weights, width 64, 2 blocks) whose frozen base is stored either in fp32 or in fp8 through `ltx_nb.memory.apply_memory_settings`
(diffusers' layerwise casting, compute in fp32), the same seed, item and σ draws: steps/s and the loss, side by side, plus
the base's stored bytes. The step is the trainer's own: `ltx_nb.train.prebuilt_state` builds train's `TrainState`
(LoRA, AdamW, schedule) and `ltx_nb.train.train_step` runs it — this script has no optimizer code of its own.

    python benchmarks/fp8_base.py           # 200 steps each
    python benchmarks/fp8_base.py --quick   # 5 steps each (a smoke test)
"""
from __future__ import annotations
import argparse, sys, tempfile, time


def run(precision:str|None, steps:int, width:int, layers:int)->dict:
    "Train one variant with train's own step; returns its row."
    import numpy as np
    from ltx_nb.core import parse_request
    from ltx_nb.memory import small_transformer, small_item, apply_memory_settings
    from ltx_nb.train import prebuilt_state, train_step
    r = parse_request(dict(training_data_url='.', rank=8, learning_rate=1e-2, number_of_steps=max(100, steps),
                           **({'base_precision': precision} if precision else {})))
    tr = apply_memory_settings(small_transformer(width, layers, rank=0), r, 'cpu')
    base = sum(p.numel() * p.element_size() for p in tr.parameters())
    with tempfile.TemporaryDirectory() as d:
        st = prebuilt_state(tr, r, d, [small_item(tr)])
        t0 = time.perf_counter()
        losses = [train_step(st) for _ in range(steps)]
        wall = time.perf_counter() - t0
    tail = min(10, steps)
    return {'base storage': precision or 'fp32', 'base bytes': base, 'steps': steps, 'steps/s': steps / wall,
            'loss at step 1': losses[0], f'mean loss, last {tail} steps': float(np.mean(losses[-tail:]))}


def main(argv=None)->int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='5 steps each')
    ap.add_argument('--steps', type=int, default=None, help='steps per variant (default 200; 5 with --quick)')
    ap.add_argument('--width', type=int, default=64); ap.add_argument('--layers', type=int, default=2)
    a = ap.parse_args(argv)
    from ltx_nb.bench import markdown_table, machine_line
    steps = a.steps or (5 if a.quick else 200)
    rows = [run(p, steps, a.width, a.layers) for p in (None, 'fp8')]
    print(f'## fp8-stored base vs fp32, tiny LTX-2.3 transformer (width {a.width}, {a.layers} blocks), LoRA r8, CPU\n')
    print(markdown_table(rows))
    print(f'\n{machine_line()}')
    f32, f8 = rows
    last = next(k for k in f32 if k.startswith('mean loss'))
    print(f"\nfp8 / fp32: steps/s {f8['steps/s'] / f32['steps/s']:.2f}×, final loss {f8[last] / f32[last]:.3f}×, "
          f"base bytes {f8['base bytes'] / f32['base bytes']:.2f}×")
    return 0


if __name__ == '__main__': sys.exit(main())
