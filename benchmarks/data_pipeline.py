"""Data pipeline: fitted, mask-normalised triplet frames per second through our loader (`load_triplet` on checked
triplets) vs plain decord decoding of the same files at full size (the ceiling), in one process and in a pool of
worker processes, taking turns in one run.

A "frame" is one training frame of a triplet: the target frame with its reference frame and its mask. The ceiling
decodes the same frames of the same video files (reference, target and a video mask), unscaled. Workers return only
a frame count, so neither side pays for shipping pixels back.

    python benchmarks/data_pipeline.py            # 4 triplets of 854×480×97 made by make_triplets, bucket medium 16:9
    python benchmarks/data_pipeline.py --quick    # seconds: 2 small triplets, bucket low 16:9, 17 frames
"""
from __future__ import annotations
import argparse, sys
from concurrent.futures import ProcessPoolExecutor
import multiprocessing as mp
from pathlib import Path


def decode_full(paths:list[str], n:int)->int:
    "The ceiling: decord decodes the first `n` frames of each video at its own size; returns the triplet's frames."
    import decord
    for p in paths: decord.VideoReader(p).get_batch(list(range(n))).asnumpy()
    return n


def decode_fitted(paths_fits:list, n:int)->int:
    "decord decoding straight to each clip's scaled size (what the loader's decode costs without the rest)."
    import decord
    for p, (w, h) in paths_fits: decord.VideoReader(p, width=w, height=h).get_batch(list(range(n))).asnumpy()
    return n


def load(item, r)->int:
    "Our loader: probe, plan, decode, fit, load the mask and pool it to the latent keep-mask."
    from ltx_nb.dataset import load_triplet
    ft = load_triplet(item, r)
    return len(ft.target)


def sample_set(n:int, size:tuple[int,int], frames:int)->Path:
    "The synthetic triplets, made once into the cache (make_triplets is deterministic)."
    from ltx_nb.core import cache_dir
    from ltx_nb.synth import make_triplets
    d = cache_dir('bench', f'triplets-{n}-{size[0]}x{size[1]}-{frames}')
    if not (d/'.done').exists():
        make_triplets(d, n, frames, size)
        (d/'.done').touch()
    return d


def loader_profile(items, r)->list[dict]:
    "Where one single-process pass of the loader spends its time, by function (cProfile, cumulative seconds)."
    import cProfile, pstats
    from ltx_nb.dataset import load_triplet
    with cProfile.Profile() as prof:
        for i in items: load_triplet(i, r)
    st = pstats.Stats(prof).stats  # (file, line, name) -> (calls, primitive calls, total, cumulative, callers)
    total = sum(v[3] for k, v in st.items() if k[2] == 'load_triplet')
    rows = []
    for mod, name, what in [('dataset.py', 'load_triplet', 'whole loader'),
                            ('media.py', 'probe_video', 'probe (decord + PyAV demux of every packet)'),
                            ('media.py', '_decode_decord', 'decode to the fitted size (decord)'),
                            ('media.py', 'read_clip', 'read_clip (decode + crop), reference and target'),
                            ('masks.py', 'load_mask', 'load_mask (incl. its probe and decode of video masks)'),
                            ('masks.py', 'latent_keep_mask', 'latent_keep_mask')]:
        hits = [(k, v) for k, v in st.items() if k[2] == name and k[0].endswith(mod)]
        calls, cum = sum(v[0] for k, v in hits), sum(v[3] for k, v in hits)
        rows.append({'function': f'{mod[:-3]}.{name}', 'what': what, 'calls': calls, 's': cum,
                     'share': f'{cum / total:.0%}' if total else '—'})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='2 small triplets, 1 turn (a smoke test)')
    ap.add_argument('--n', type=int, default=None, help='triplets (default 4)')
    ap.add_argument('--size', default=None, help='source clips WxH (default 854x480)')
    ap.add_argument('--workers', type=int, default=2, help='processes of the parallel rows (default 2)')
    ap.add_argument('--reps', type=int, default=None, help='timed turns of each (default 3; 1 with --quick)')
    a = ap.parse_args(argv)
    from ltx_nb.core import parse_request, media_kind
    from ltx_nb.dataset import check_dataset, reference_size
    from ltx_nb.media import fit_geometry, probe_video
    from ltx_nb.bench import interleaved, median, spread, markdown_table, machine_line
    n, reps = a.n or (2 if a.quick else 4), a.reps or (1 if a.quick else 3)
    size = tuple(map(int, (a.size or ('192x108' if a.quick else '854x480')).split('x')))
    frames, clip = (9, 9) if a.quick else (97, 89)
    bucket = 'low' if a.quick else 'medium'
    data = sample_set(n, size, frames)
    r = parse_request(dict(training_data_url=str(data), resolution=bucket, aspect_ratio='16:9', number_of_frames=clip))
    items = check_dataset(r, progress=False).raise_for_status().ok
    videos = [[item.paths[k] for k in ('reference', 'target', 'mask') if media_kind(item.paths[k]) == 'video'] for item in items]
    def scaled(p, out):
        i = probe_video(p); f = fit_geometry(i.width, i.height, *out)
        return p, (f.scaled_w, f.scaled_h)
    fitted = [[scaled(p, reference_size(r.size, r.reference_downscale_factor) if k == 0 else r.size) for k, p in enumerate(v)]
              for v in videos]
    total = len(items) * clip
    pool = ProcessPoolExecutor(a.workers, mp_context=mp.get_context('spawn'))
    def par(fn, work): return lambda: sum(pool.map(fn, *zip(*work)))
    fns = {'decord full size (ceiling)': lambda: sum(decode_full(v, clip) for v in videos),
           'decord to fitted size': lambda: sum(decode_fitted(v, clip) for v in fitted),
           'ltx_nb load_triplet': lambda: sum(load(i, r) for i in items),
           f'decord full size (ceiling), {a.workers} workers': par(decode_full, [(v, clip) for v in videos]),
           f'decord to fitted size, {a.workers} workers': par(decode_fitted, [(v, clip) for v in fitted]),
           f'ltx_nb load_triplet, {a.workers} workers': par(load, [(i, r) for i in items])}
    try: t = interleaved(fns, reps=reps, warmup=1)
    finally: pool.shutdown()
    ceil = {1: median(t['decord full size (ceiling)']), a.workers: median(t[f'decord full size (ceiling), {a.workers} workers'])}
    rows = [{'pipeline': k, 'workers': a.workers if 'workers' in k else 1, 's/pass': median(v), 'spread': spread(v),
             'frames/s': total / median(v), 'vs ceiling': ceil[a.workers if 'workers' in k else 1] / median(v)}
            for k, v in t.items()]
    W, H = r.size
    print(f'## Data pipeline — {len(items)} triplets of {size[0]}×{size[1]}, {clip} of {frames} frames each, into '
          f'{bucket} 16:9 ({W}×{H}); {total} triplet frames per pass; median of {reps} interleaved turns\n')
    print(markdown_table(rows))
    print(f'\nWhere one pass of the loader goes (one process, cProfile, cumulative seconds; calls overlap):\n')
    print(markdown_table(loader_profile(items, r)))
    print(f'\n{machine_line()}')
    best = max(rows[2]['frames/s'], rows[5]['frames/s'])
    print(f"\nloader / ceiling: {rows[2]['vs ceiling']:.2f}× with 1 worker, {rows[5]['vs ceiling']:.2f}× with "
          f"{a.workers} workers ({best:.0f} fitted frames/s at best)")


if __name__ == '__main__': main()
