"""`ltx-nb sample` end to end on the tiny model: exact `.npz` frames (kept pixels bit-identical to the fitted source, the
LoRA and its reference factor applied), H.264 `.mp4` output, and bad arguments refused with exit 2 before any model loads."""
import functools, os, subprocess, sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ltx_nb.core import EMBEDDED_MODEL, DEFAULT_NEGATIVE_PROMPT, parse_request
from ltx_nb.synth import triplet_files

ROOT = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).parent/'ltx-nb'
SMALL = ['--number-of-frames', '9', '--resolution', 'low', '--aspect-ratio', '16:9', '--quiet']
SQUARE = ['--number-of-frames', '9', '--resolution', 'low', '--aspect-ratio', '1:1', '--quiet']  # a half-size reference is exact here

@functools.cache
def _wired()->bool:
    "Whether the console script already has the `sample` subcommand (the CLI chapter registers it)."
    return EXE.exists() and subprocess.run([str(EXE), 'sample', '--help'], capture_output=True).returncode == 0

def sample(*args, timeout=600)->subprocess.CompletedProcess:
    "Run `ltx-nb sample ARGS` (through `ltx_nb.cli.main` when the console script is not installed)."
    cmd = ([str(EXE), 'sample'] if _wired() else
           [sys.executable, '-c', 'import sys; from ltx_nb.cli import main; sys.exit(main(["sample", *sys.argv[1:]]))'])
    env = {**os.environ, 'HF_HUB_OFFLINE': '1'}
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)

def piece(d:Path, i:int, role:str)->Path: return d/triplet_files(i)[role]

@pytest.fixture(scope='module')
def lora(tmp_path_factory)->Path:
    "A rank-4 LoRA on the tiny model with non-zero B (so it changes outputs), trained at reference factor 2."
    import torch
    from ltx_nb.model import load_transformer, add_lora, save_lora
    tr = add_lora(load_transformer(EMBEDDED_MODEL), 4)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, p in tr.named_parameters():
            if 'lora_B' in n: p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return save_lora(tr, tmp_path_factory.mktemp('lora')/'lora.safetensors',
                     dict(reference_downscale_factor='2', base_model_id=EMBEDDED_MODEL))

def test_help_lists_the_options():
    r = sample('--help')
    assert r.returncode == 0, r.stderr
    for opt in ('--model', '--lora', '--video', '--mask', '--reference', '--prompt', '--out', '--negative-prompt',
                '--number-of-frames', '--frame-rate', '--resolution', '--aspect-ratio', '--stg-scale', '--steps',
                '--guidance-scale', '--seed', '--reference-downscale-factor', '--device'):
        assert opt in r.stdout, opt

def test_npz_is_exact_and_matches_the_sampler(triplets, lora, tmp_path):
    "The CLI output keeps every source pixel, and equals `sample_masked` run in-process with the same LoRA and settings."
    import torch
    from ltx_nb.latents import encode_prompts, load_tensors
    from ltx_nb.model import load_transformer, load_vae, load_scheduler, add_lora, set_lora_state, load_lora_state
    from ltx_nb.dataset import fit_validation_entry, ValidationFit
    from ltx_nb.sampler import sample_masked, SampleSettings
    prompt = 'replace the panel with stripes'
    out = tmp_path/'out.npz'
    r = sample('--model', EMBEDDED_MODEL, '--lora', lora, '--video', piece(triplets, 1, 'end'), '--mask', piece(triplets, 1, 'mask'),
               '--reference', piece(triplets, 1, 'start'), '--prompt', prompt, '--steps', '1', '--seed', '7', *SQUARE, '--out', out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert out.name in r.stdout
    got = np.load(out)
    frames, white = got['frames'], got['white']
    # the same request in-process; the reference factor (2) comes from the LoRA's metadata
    req = parse_request(dict(training_data_url=str(triplets), model=EMBEDDED_MODEL, validation_number_of_frames=9,
        validation_resolution='low', validation_aspect_ratio='1:1', reference_downscale_factor=2,
        validation=[dict(prompt=prompt, video_url=str(piece(triplets, 1, 'end')), mask_url=str(piece(triplets, 1, 'mask')),
                         reference_video_url=str(piece(triplets, 1, 'start')))]))
    inp = fit_validation_entry(req.validation[0], ValidationFit.from_request(req))
    assert frames.shape == inp.source.shape == (9, 512, 512, 3) and inp.reference.shape == (9, 256, 256, 3)
    assert np.array_equal(white, inp.white) and 0 < white.mean() < 1
    assert np.array_equal(frames[~white], inp.source[~white])               # kept pixels: exactly the source
    assert not np.array_equal(frames[white], inp.source[white])
    tr = add_lora(load_transformer(EMBEDDED_MODEL).requires_grad_(False), 4)
    set_lora_state(tr, load_lora_state(lora)); tr.eval()
    pos, neg = [load_tensors(p) for p in encode_prompts([prompt, DEFAULT_NEGATIVE_PROMPT], EMBEDDED_MODEL)]
    direct = sample_masked(tr, load_vae(EMBEDDED_MODEL), load_scheduler(EMBEDDED_MODEL), inp, (pos, neg),
                           SampleSettings(steps=1, seed=7))
    assert np.array_equal(frames, direct)

def test_mp4_output_and_base_model(triplets, tmp_path):
    "Without --lora it samples with the base model; .mp4 is H.264 at the requested size, playing at the rate the model was told."
    from ltx_nb.media import probe_video
    out = tmp_path/'sub'/'out.mp4'
    r = sample('--model', EMBEDDED_MODEL, '--video', piece(triplets, 0, 'end'), '--mask', piece(triplets, 0, 'mask'),
               '--reference', piece(triplets, 0, 'start'), '--steps', '1', '--guidance-scale', '1', '--stg-scale', '0',
               '--frame-rate', '12', *SMALL, '--out', out)
    assert r.returncode == 0, r.stderr[-3000:]
    info = probe_video(out)
    # without --auto-scale-input the source's frames keep their native timing, so the model is told (and the output
    # plays at) the source's measured 24 fps, not --frame-rate 12 (`dataset.model_fps`, issue 10)
    assert (info.frames, info.width, info.height, round(info.fps)) == (9, 512, 288, 24)
    import av
    with av.open(str(out)) as c: assert c.streams.video[0].codec_context.name == 'h264'

def test_bad_arguments_are_all_listed(triplets, tmp_path):
    "Missing files, a mask of the wrong kind, a reference that is not a video, a bad output and out-of-range values: exit 2."
    (tmp_path/'mask.gif').write_bytes(b'GIF89a')
    (tmp_path/'ref.png').write_bytes(b'\x89PNG')
    r = sample('--model', EMBEDDED_MODEL, '--video', tmp_path/'missing.mp4', '--mask', tmp_path/'mask.gif',
               '--reference', tmp_path/'ref.png', '--lora', tmp_path/'nope.safetensors', '--out', tmp_path/'out.gif',
               '--number-of-frames', '300', '--stg-scale', '5', '--steps', '10')
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    err = r.stderr
    for needle in ('missing.mp4: file not found', "mask.gif: .gif is not a supported mask kind", 'ref.png: not a video file',
                   'nope.safetensors: file not found', 'out.gif: use a .mp4 or .npz', '--number-of-frames: 300 is above 121',
                   '--stg-scale: 5.0 is above 3.0'):
        assert needle in err, (needle, err)
    assert 'Traceback' not in err

def test_unreadable_mask_and_short_source(triplets, tmp_path):
    "A mask with the right extension but broken bytes, and a source shorter than --number-of-frames: exit 2, named."
    bad = tmp_path/'broken_mask.png'; bad.write_bytes(b'not a png at all')
    base = ['--model', EMBEDDED_MODEL, '--video', piece(triplets, 0, 'end'), '--reference', piece(triplets, 0, 'start'),
            '--resolution', 'low', '--aspect-ratio', '16:9', '--quiet', '--out', tmp_path/'o.npz']
    r = sample(*base, '--mask', bad, '--number-of-frames', '9')
    assert r.returncode == 2 and 'broken_mask.png' in r.stderr and 'mask' in r.stderr, r.stderr[-2000:]
    r = sample(*base, '--mask', piece(triplets, 0, 'mask'), '--number-of-frames', '33')   # the clips have 25 frames
    assert r.returncode == 2 and 'has 25 frames, needs 33' in r.stderr and 'auto_scale_input' in r.stderr, r.stderr[-2000:]
    assert not (tmp_path/'o.npz').exists()

def test_lora_that_is_not_ltx(triplets, tmp_path):
    "A safetensors file without LTX's keys is refused with exit 2 naming the file."
    import torch
    from safetensors.torch import save_file
    f = tmp_path/'other.safetensors'
    save_file({'unet.down.lora_A.weight': torch.zeros(4, 8)}, str(f))
    r = sample('--model', EMBEDDED_MODEL, '--lora', f, '--video', piece(triplets, 0, 'end'), '--mask', piece(triplets, 0, 'mask'),
               '--reference', piece(triplets, 0, 'start'), '--steps', '1', *SMALL, '--out', tmp_path/'o.npz')
    assert r.returncode == 2 and 'other.safetensors' in r.stderr and 'not an LTX LoRA' in r.stderr, r.stderr[-2000:]

@pytest.mark.skipif(not os.environ.get('LTX_NB_SLOW_TESTS'), reason='trains 100 steps (minutes on a busy 2-core CPU); '
                    'set LTX_NB_SLOW_TESTS=1 to run it')
def test_validation_during_training(triplets, tmp_path):
    """`train(..., callbacks=[make_validation_callback(...)])` writes a point at step 0, at the interval and at the end, and the
    reel (one entry, plain sampling: the notebook covers two entries with CFG and STG)."""
    import json
    from ltx_nb.core import load_request
    from ltx_nb.media import probe_video
    from ltx_nb.latents import encode_prompts
    from ltx_nb.validation import make_validation_callback, validation_prompts
    from ltx_nb.train import train
    from ltx_nb.rundir import read_metrics
    entries = [dict(prompt=f'entry {i}', video_url=str(piece(triplets, i, 'end')), mask_url=str(piece(triplets, i, 'mask')),
                    reference_video_url=str(piece(triplets, i, 'start'))) for i in (1,)]
    r = load_request(dict(training_data_url=str(triplets), model=EMBEDDED_MODEL, number_of_steps=100, number_of_frames=9,
                          resolution='low', aspect_ratio='16:9', rank=8, validation=entries, validation_number_of_frames=9,
                          validation_resolution='low', validation_aspect_ratio='16:9', validation_num_inference_steps=1,
                          validation_guidance_scale=1.0, stg_scale=0.0, validation_interval=60, checkpoint_interval=0, run_dir=str(tmp_path/'run')))
    encode_prompts(validation_prompts(r), r.model)  # what training does before it starts
    res = train(r, progress=False, callbacks=[make_validation_callback(r)])
    v = res.run_dir/'validation'
    index = json.loads((v/'index.json').read_text())
    assert [p['step'] for p in index['points']] == [0, 60, 100]  # step 0: the base model, before any update
    assert all((v/p).is_file() for q in index['points'] for p in [*q['videos'], q['sheet']])
    rows = [m for m in read_metrics(res.run_dir) if m.get('kind') == 'validation']
    assert [(m['step'], m['entry']) for m in rows] == [(0, 0), (60, 0), (100, 0)]
    assert all(m['kept_max_error'] == 0 and m['psnr_region'] is not None for m in rows)  # sources are training targets
    assert len([m for m in read_metrics(res.run_dir) if 'loss' in m]) == 100
    assert probe_video(res.run_dir/'validation.mp4').frames == 3 * 9

def _scaled_lora(src:Path, dest:Path, value:float)->Path:
    "A copy of LoRA `src` with every lora_B weight set to `value`."
    from safetensors.torch import load_file, save_file
    from ltx_nb.model import lora_metadata
    sd = load_file(str(src))
    save_file({k: v.fill_(value) if 'lora_B' in k else v for k, v in sd.items()}, str(dest), lora_metadata(src))
    return dest

def test_nan_lora_is_refused_by_name(triplets, lora, tmp_path):
    "A LoRA holding NaN exits 2 naming the file, before any model loads; no output is written."
    bad = _scaled_lora(lora, tmp_path/'nan.safetensors', float('nan'))
    r = sample('--model', EMBEDDED_MODEL, '--lora', bad, '--video', piece(triplets, 0, 'end'), '--mask', piece(triplets, 0, 'mask'),
               '--reference', piece(triplets, 0, 'start'), '--steps', '1', *SMALL, '--out', tmp_path/'o.npz')
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert 'nan.safetensors' in r.stderr and 'NaN or infinity' in r.stderr and 'Traceback' not in r.stderr
    assert not (tmp_path/'o.npz').exists()

def test_non_finite_prediction_stops_with_a_clear_error(triplets, lora, tmp_path):
    "Finite LoRA weights so large that the prediction overflows: exit 1 with the step named, no black output."
    huge = _scaled_lora(lora, tmp_path/'huge.safetensors', 3e38)
    r = sample('--model', EMBEDDED_MODEL, '--lora', huge, '--video', piece(triplets, 0, 'end'), '--mask', piece(triplets, 0, 'mask'),
               '--reference', piece(triplets, 0, 'start'), '--steps', '1', *SMALL, '--reference-downscale-factor', '1', '--out', tmp_path/'o.npz')
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert 'not finite' in r.stderr and 'step 1 of 1' in r.stderr and 'Traceback' not in r.stderr
    assert not (tmp_path/'o.npz').exists()

def test_options_come_from_the_request_table():
    "`ltx-nb sample` and `ltx-nb check` options not given leave the request table's defaults; choices are the table's."
    from dataclasses import fields
    from ltx_nb.core import Request
    from ltx_nb.cli import build_parser, SAMPLE_OPTIONS, CHECK_OPTIONS
    table = {f.name: f for f in fields(Request)}
    p = build_parser()
    a = p.parse_args(['sample', '--video', 'v.mp4', '--mask', 'm.png', '--reference', 'r.mp4', '--out', 'o.npz'])
    assert all(getattr(a, n) is None for n in SAMPLE_OPTIONS.values())
    c = p.parse_args(['check', 'x.zip'])
    assert all(getattr(c, n) is None for n in CHECK_OPTIONS)
    sub = p._subparsers._group_actions[0].choices
    for cmd, opts in (('sample', SAMPLE_OPTIONS.items()), ('check', [('--' + n.replace('_', '-'), n) for n in CHECK_OPTIONS])):
        acts = {s: act for act in sub[cmd]._actions for s in act.option_strings}
        for flag, name in opts:
            assert acts[flag].choices == table[name].metadata['choices'], (cmd, flag)
            d = table[name].default
            assert f"default: {'on' if d is True else 'off' if d is False else repr(d)[:20]}" in acts[flag].help or len(repr(d)) > 40, (cmd, flag)
