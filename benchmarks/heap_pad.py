"""Freed memory kept in the process (`ltx_nb.core.keep_freed_heap`): `cache_dataset` on the same triplets, each time in a
fresh child process and a fresh cache folder, with `$LTX_NB_HEAP_PAD_MB=0` (glibc's own behaviour: large freed blocks
go back to the kernel) and with the default pad, taking turns. Wall time, user and system CPU of the caching call
alone (the model is installed and imported before the clock starts; decode workers' CPU included).

    python benchmarks/heap_pad.py           # the demo's own caching: data_samples/ (10 triplets), 17 frames, low 1:1; 3 turns
    python benchmarks/heap_pad.py --quick   # 2 synthetic triplets, 9 frames, low 16:9, one turn
"""
from __future__ import annotations
import argparse, json, os, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
from ltx_nb.core import load_request, EMBEDDED_MODEL
from ltx_nb.dataset import check_dataset
from ltx_nb.latents import cache_dataset
from ltx_nb.model import resolve_model
r = load_request(json.loads(sys.argv[1]))
resolve_model(r.model)
import torch, diffusers  # imported before the clock starts
rep = check_dataset(r, progress=False)
def cpu():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + c.ru_utime, s.ru_stime + c.ru_stime
(u0, s0), t0 = cpu(), time.perf_counter()
cache_dataset(rep, r, cache=sys.argv[2], progress=False)
(u1, s1), t1 = cpu(), time.perf_counter()
print(json.dumps(dict(wall=t1 - t0, user=u1 - u0, sys=s1 - s0, triplets=len(rep.ok))))
"""


def one_turn(req:dict, pad:str|None, tmp:Path)->dict:
    "Cache `req`'s triplets in a child process; `pad` sets `$LTX_NB_HEAP_PAD_MB` (None: the default)."
    from ltx_nb.core import HEAP_PAD_ENV
    env = {k: v for k, v in os.environ.items() if k != HEAP_PAD_ENV}
    if pad is not None: env[HEAP_PAD_ENV] = pad
    cache = tempfile.mkdtemp(dir=tmp)
    p = subprocess.run([sys.executable, '-c', CHILD, json.dumps(req), cache], env=env, capture_output=True, text=True)
    if p.returncode: raise SystemExit(p.stdout + p.stderr)
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='2 small synthetic triplets, one turn')
    ap.add_argument('--turns', type=int, default=None, help='turns per variant (default 3; 1 with --quick)')
    a = ap.parse_args(argv)
    from ltx_nb.bench import median, spread, markdown_table, machine_line
    from ltx_nb.core import HEAP_PAD_MB, EMBEDDED_MODEL
    tmp = Path(tempfile.mkdtemp(prefix='heap_pad_'))
    if a.quick:
        from ltx_nb.synth import make_triplets
        make_triplets(tmp/'data', n=2, frames=9)
        req = dict(training_data_url=str(tmp/'data'), number_of_frames=9, resolution='low', aspect_ratio='16:9')
    else:
        req = dict(training_data_url=str(ROOT/'data_samples'), number_of_frames=17, resolution='low', aspect_ratio='1:1')
    req['model'] = EMBEDDED_MODEL
    turns = a.turns or (1 if a.quick else 3)
    variants = {'glibc default (pad 0)': '0', f'kept ({HEAP_PAD_MB} MB pad)': None}
    got = {k: [] for k in variants}
    for _ in range(turns):
        for name, pad in variants.items(): got[name].append(one_turn(req, pad, tmp))
    rows = [{'variant': name, 'triplets': runs[0]['triplets'], 'wall s': round(median([x['wall'] for x in runs]), 2),
             'spread': spread([x['wall'] for x in runs]), 'user s': round(median([x['user'] for x in runs]), 2),
             'system s': round(median([x['sys'] for x in runs]), 2)} for name, runs in got.items()]
    print(f"cache_dataset of {req['training_data_url']} at {req['number_of_frames']} frames, {req['resolution']} {req['aspect_ratio']}, "
          f"a fresh process and cache each turn:")
    print(markdown_table(rows))
    off, on = rows
    print(f"\nkept / default: wall {on['wall s'] / off['wall s']:.2f}×, "
          f"CPU {(on['user s'] + on['system s']) / (off['user s'] + off['system s']):.2f}× ({turns} turn(s) each, interleaved)")
    print(machine_line())


if __name__ == '__main__':
    main()
