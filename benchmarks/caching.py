"""Caching: how close `cache_dataset` comes to the speed of decoding. Real-sized H.264 triplets (1920×1080 and
1280×720, 89 frames, fitted into medium 16:9) with the embedded tiny VAE; in one run, taking turns:

- the ceiling: decord decoding the same frames of the same files (reference, target, mask) at full size, one process;
- the loader: `ltx_nb.latents.fitted_triplets` with 1 and 2 worker processes (decode + fit + hand-over, no VAE);
- encode only: the VAE loaded and encoding the already fitted clips (what the main process does);
- caching: `cache_dataset` into an empty cache (text embeddings already cached) with 1 and 2 workers.

Ratios: loader / ceiling (goal ≥ 1.0 with one worker), 2-worker loader / 1-worker loader (goal ≥ 1.8), caching /
max(decode, encode) (goal ≤ 1.10).

    python benchmarks/caching.py                  # 2 triplets (1920×1080, 1280×720), 89 frames, medium 16:9
    python benchmarks/caching.py --quick          # seconds: 2 small triplets, 9 frames, low 16:9
    python benchmarks/caching.py --decode-paths   # also the media notebook's decode-path table on these sources
    python benchmarks/caching.py --loader-only --reps 6   # only the ceiling and the loader rows (no VAE): minutes
"""
from __future__ import annotations
import argparse, os, shutil, tempfile
from pathlib import Path
import numpy as np


def synthetic_clip(T:int, W:int, H:int, seed:int)->np.ndarray:
    "A textured, moving clip: uint8 (T, H, W, 3) (a drifting colour field with noise, so H.264 has work to do)."
    g = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    base = np.stack([128 + 100 * np.sin(x / (23 + 7 * c) + y / (31 + 5 * c) + c) for c in range(3)], -1)
    tex = g.integers(0, 40, (H // 8 + 1, W // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)[:H, :W].astype(np.float32)
    out = np.empty((T, H, W, 3), np.uint8)
    for t in range(T): out[t] = np.clip(np.roll(base, 3 * t, axis=1) + np.roll(tex, 2 * t, axis=0), 0, 255)
    return out


def moving_mask(T:int, W:int, H:int)->np.ndarray:
    "A white box crossing a black frame: bool (T, H, W)."
    m = np.zeros((T, H, W), bool)
    for t in range(T):
        x0 = W // 4 + (W // 2) * t // max(1, T - 1) - W // 8
        m[t, H // 4:3 * H // 4, max(0, x0):x0 + W // 4] = True
    return m


def source_set(sizes:list, frames:int)->Path:
    "One triplet per source size (reference, target and a video mask, H.264), made once into the cache."
    from ltx_nb.core import cache_dir
    from ltx_nb.media import write_video
    d = cache_dir('bench', 'caching-' + '-'.join(f'{w}x{h}' for w, h in sizes) + f'-{frames}')
    if not (d/'.done').exists():
        for k, (w, h) in enumerate(sizes):
            write_video(d/f'clip{k:02d}_start.mp4', synthetic_clip(frames, w, h, 2 * k), crf=20)
            write_video(d/f'clip{k:02d}_end.mp4', synthetic_clip(frames, w, h, 2 * k + 1), crf=20)
            write_video(d/f'clip{k:02d}_mask.mp4', moving_mask(frames, w, h), crf=20)
            (d/f'clip{k:02d}.txt').write_text(f'a {w}x{h} test clip')
        (d/'.done').touch()
    return d


def decode_full(videos:list, n:int)->int:
    "The ceiling: decord decodes the first `n` frames of every video at full size; returns the triplet frames."
    import decord
    for v in videos:
        for p in v: decord.VideoReader(p).get_batch(list(range(n))).asnumpy()
    return n * len(videos)


def load_all(items, r, workers:int)->int:
    "The loader alone: every triplet decoded and fitted by `workers` processes and handed to this one."
    from ltx_nb.latents import fitted_triplets
    return sum(len(d['target']) for _, d in fitted_triplets(items, r, workers))


def encode_all(clips:list, r)->int:
    "Encode only: the VAE loaded, then target and reference of every triplet encoded as caching does (`encode_clip`: tiled above `TILE_ABOVE`)."
    from ltx_nb.model import load_vae
    from ltx_nb.latents import encode_clip
    vae = load_vae(r.model, None, 'cpu')
    for d in clips: encode_clip(vae, d['target']); encode_clip(vae, d['reference'])
    return sum(len(d['target']) for d in clips)


def cache_all(report, r, workers:int, text:Path)->int:
    "`cache_dataset` into an empty latent cache whose text embeddings are already there."
    from ltx_nb.latents import cache_dataset
    with tempfile.TemporaryDirectory() as d:
        shutil.copytree(text, Path(d)/'text')
        return len(cache_dataset(report, r, Path(d), progress=False, num_workers=workers)) * r.number_of_frames


def cpu_seconds()->float:
    "User + system CPU seconds of this process and of its finished children (the loader's workers, once joined)."
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed_cpu(fns:dict)->tuple[dict, dict]:
    "Each callable wrapped to add the CPU seconds it spent (all processes) to a list of its own."
    cpu = {k: [] for k in fns}
    def wrap(k, f):
        def g():
            c0 = cpu_seconds(); out = f(); cpu[k].append(cpu_seconds() - c0); return out
        return g
    return {k: wrap(k, f) for k, f in fns.items()}, cpu


def profile_caching(report, r, workers:int, text:Path, top:int=14)->str:
    "cProfile of one `cache_dataset` pass in the main process: where its wall time goes (encode, waiting on workers, writing)."
    import cProfile, io, pstats
    pr = cProfile.Profile(); pr.enable()
    cache_all(report, r, workers, text)
    pr.disable()
    out = io.StringIO()
    pstats.Stats(pr, stream=out).sort_stats('cumulative').print_stats(top)
    return out.getvalue()


def decode_paths(paths:list, size:tuple, n:int, reps:int)->list[dict]:
    "The media notebook's table: full-size decode, the decoder's scaler, full decode + `resize_frames`, frames/s."
    import decord
    from ltx_nb.media import probe_video, fit_geometry, resize_frames, decode_path
    from ltx_nb.bench import interleaved, median
    rows = []
    for p in paths:
        i = probe_video(p); f = fit_geometry(i.width, i.height, *size); idx = list(range(n))
        full = lambda: decord.VideoReader(p).get_batch(idx).asnumpy()
        fns = {'full': full, 'scaler': lambda: decord.VideoReader(p, width=f.scaled_w, height=f.scaled_h).get_batch(idx).asnumpy(),
               'resize': lambda: resize_frames(full(), f.scaled_w, f.scaled_h)}
        m = {k: median(v) for k, v in interleaved(fns, reps=reps, warmup=1).items()}
        rows.append({'source': f'{i.width}×{i.height}', 'scale': round(f.scale, 3), 'full-size decode f/s': n / m['full'],
                     "decoder's scaler f/s": n / m['scaler'], 'full + resize_frames f/s': n / m['resize'],
                     'resize / scaler speed': m['scaler'] / m['resize'], 'chosen': decode_path(f)})
    return rows


def report_table(t:dict, cpu:dict, total:int, sizes, frames:int, bucket:str, size, reps:int, load0, load1)->str:
    "The markdown table, the machine line and the ratios against the goals (the rows that ran)."
    from ltx_nb.bench import median, spread, markdown_table, machine_line
    m = {k: median(v) for k, v in t.items()}
    c = {k: median(cpu[k][-len(t[k]):]) for k in m}
    ceil, enc = m['decord full size (ceiling)'], m.get('encode only (VAE load + encode)')
    def vs(k):
        if k.startswith('loader'): return f"{ceil / m[k]:.2f}× ceiling"
        if k.startswith('caching'):
            dec = m['loader, ' + k.split(', ')[1]]
            return f"{m[k] / max(dec, enc):.2f}× max(decode {dec:.1f} s, encode {enc:.1f} s)"
        return '—'
    rows = [{'pipeline': k, 's/pass': v, 'spread': spread(t[k]), 'CPU s (all processes)': c[k], 'cores busy': c[k] / v,
             'frames/s': total / v, 'ratio': vs(k)} for k, v in m.items()]
    (W, H), cores = size, len(os.sched_getaffinity(0))
    out = [f"## Caching — {len(sizes)} triplets ({', '.join(f'{w}×{h}' for w, h in sizes)}; reference, target, video mask), "
           f"{frames} frames each into {bucket} 16:9 ({W}×{H}), tiny VAE on the CPU; {total} triplet frames per pass; "
           f"median of {reps} interleaved turns\n", markdown_table(rows),
           f"\n{machine_line()} · load average {load0[0]:.1f} before, {load1[0]:.1f} after (a shared machine: ratios only)"]
    one, two = ceil / m['loader, 1 worker'], m['loader, 1 worker'] / m['loader, 2 workers']
    line = f"\nloader / ceiling: {one:.2f}× with 1 worker (goal ≥ 1.0); 2 workers / 1 worker: {two:.2f}× (goal ≥ 1.8"
    line += f"; at most {cores / c['loader, 1 worker'] * m['loader, 1 worker']:.2f}× here: one worker keeps {c['loader, 1 worker'] / m['loader, 1 worker']:.2f} of {cores} cores busy)"
    if enc is not None:
        c1 = m['caching, 1 worker'] / max(m['loader, 1 worker'], enc)
        c2 = m['caching, 2 workers'] / max(m['loader, 2 workers'], enc)
        line += f"; caching / max(decode, encode): {c1:.2f}× with 1 worker, {c2:.2f}× with 2 (goal ≤ 1.10)"
        line += (f"\n\nCPU work: caching, 1 worker {c['caching, 1 worker']:.1f} CPU s vs decode {c['loader, 1 worker']:.1f} + encode "
                 f"{c['encode only (VAE load + encode)']:.1f} CPU s; with {cores} cores no pass can take less than its CPU s / {cores}")
    return '\n'.join(out + [line])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='2 small triplets, 9 frames, 1 turn (a smoke test)')
    ap.add_argument('--reps', type=int, default=None, help='timed turns of each (default 2; 1 with --quick)')
    ap.add_argument('--decode-paths', action='store_true', help="also time the decode paths of media's decode_path")
    ap.add_argument('--profile', action='store_true', help='also cProfile one caching pass (1 worker) in the main process')
    ap.add_argument('--loader-only', action='store_true', help='only the ceiling and the loader rows (no VAE)')
    a = ap.parse_args(argv)
    from ltx_nb.core import parse_request, EMBEDDED_MODEL, media_kind
    from ltx_nb.dataset import check_dataset
    from ltx_nb.latents import encode_prompts, fitted_triplets
    from ltx_nb.bench import interleaved
    reps = a.reps or (1 if a.quick else 2)
    sizes, frames, bucket = ([(320, 180), (256, 144)], 9, 'low') if a.quick else ([(1920, 1080), (1280, 720)], 89, 'medium')
    data = source_set(sizes, frames)
    r = parse_request(dict(training_data_url=str(data), resolution=bucket, aspect_ratio='16:9', number_of_frames=frames,
                           model=EMBEDDED_MODEL))
    report = check_dataset(r, progress=False).raise_for_status()
    items = report.ok
    videos = [[i.paths[k] for k in ('reference', 'target', 'mask') if media_kind(i.paths[k]) == 'video'] for i in items]
    clips = [d for _, d in fitted_triplets(items, r, 0)]
    from ltx_nb.model import load_vae
    load_vae(r.model, None, 'cpu')  # diffusers' first import and the embedded model's build are not the pipeline's cost
    text = Path(tempfile.mkdtemp())/'cache'
    encode_prompts([i.caption for i in items], r.model, text)
    fns = {'decord full size (ceiling)': lambda: decode_full(videos, frames),
           'loader, 1 worker': lambda: load_all(items, r, 1), 'loader, 2 workers': lambda: load_all(items, r, 2),
           'encode only (VAE load + encode)': lambda: encode_all(clips, r),
           'caching, 1 worker': lambda: cache_all(report, r, 1, text/'text'),
           'caching, 2 workers': lambda: cache_all(report, r, 2, text/'text')}
    if a.loader_only: fns = {k: f for k, f in fns.items() if k.startswith(('decord', 'loader'))}
    fns, cpu = timed_cpu(fns)
    load0 = os.getloadavg()
    t = interleaved(fns, reps=reps, warmup=0 if a.quick else 1)
    load1 = os.getloadavg()
    print(report_table(t, cpu, len(items) * frames, sizes, frames, bucket, r.size, reps, load0, load1))
    if a.profile:
        print('\n### Profile of one caching pass (1 worker), main process\n')
        print('```\n' + profile_caching(report, r, 1, text/'text') + '```')
    if a.decode_paths:
        from ltx_nb.bench import markdown_table
        W, H = r.size
        print(f'\n### Decode paths — {frames} frames into {W}×{H}, one process\n')
        print(markdown_table(decode_paths([v[1] for v in videos], r.size, frames, reps)))
    shutil.rmtree(text.parent, ignore_errors=True)


if __name__ == '__main__': main()
