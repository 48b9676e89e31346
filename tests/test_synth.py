"The committed `data_samples/` is what the generator makes, it keeps its promises, and its request loads."
import json, zipfile
from pathlib import Path

import numpy as np
import pytest

from ltx_nb.core import VIDEO_EXTS, load_request
from ltx_nb.media import probe_video, read_clip
from ltx_nb.archive import decode_text
from ltx_nb.synth import (triplet_frames, make_triplets, make_triplets_zip, reference_agreement, triplets_request,
                            triplet_files, triplet_arrays, _caption, _PLAN)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT/'data_samples'
EXTRA = {'request.json', 'README.md'}

def listing(d:Path)->list[str]:
    return sorted(p.relative_to(d).as_posix() for p in d.rglob('*') if p.is_file())

def psnr(a:np.ndarray, b:np.ndarray)->float:
    return float(10 * np.log10(255**2 / max(((a.astype(float) - b)**2).mean(), 1e-9)))

@pytest.mark.parametrize('i', range(10))
def test_committed_keeps_the_generators_promise(i):
    """Decoded, the committed files are the generator's own frames: masks exactly, videos within the codec's tolerance.

    Never compared with a fresh encoding: x264's bytes differ between machines of the same kind."""
    f, a = triplet_files(i), triplet_arrays(i)
    end, start, white = triplet_frames(*(DATA/f[k] for k in ('end', 'start', 'mask')))
    assert len(end) == 97 and (white == a['mask']).all(), f['mask']
    for got, want, name in ((end, a['target'], f['end']), (start, a['reference'], f['start'])):
        assert got.shape == want.shape and psnr(got, want) > 24, (name, psnr(got, want))  # measured 28.2–38.6 dB
    if 'caption' in f:
        text = decode_text((DATA/f['caption']).read_bytes()).strip()
        assert text == _caption(_PLAN[i]['moving'], a['pattern'], a['colors']), f['caption']

def test_committed_plan_and_readme():
    expected = sorted([v for i in range(10) for v in triplet_files(i).values()] + list(EXTRA))
    assert listing(DATA) == expected
    exts = {Path(n).suffix for n in expected}
    assert set(VIDEO_EXTS) <= exts and {'.png', '.jpg', '.bmp', '.webp'} <= exts
    assert 'write_data_samples' in (DATA/'README.md').read_text()

def test_committed_request_loads():
    req = json.loads((DATA/'request.json').read_text())
    assert req == triplets_request(DATA)
    assert list(req)[:10] == ['training_data_url', 'trigger_phrase', 'rank', 'number_of_steps', 'learning_rate',
                              'number_of_frames', 'frame_rate', 'resolution', 'aspect_ratio', 'validation']
    r = load_request(DATA/'request.json')
    assert Path(r.training_data_url) == DATA.resolve()
    assert (r.number_of_frames, r.resolution, r.number_of_steps, len(r.validation)) == (17, 'low', 100, 2)
    for e in r.validation:
        for k in ('video_url', 'mask_url', 'reference_video_url'): assert Path(e[k]).is_file(), e[k]
        assert e['prompt'].startswith('repl4ce ')

@pytest.mark.parametrize('i', range(10))
def test_masked_region_shows_reference(i):
    f = {k: DATA/v for k, v in triplet_files(i).items()}
    a = reference_agreement(f['end'], f['start'], f['mask'])
    assert a['inside'] < 10 and a['outside'] > 40, a
    assert 0.1 <= a['coverage'] <= 0.4, a
    assert probe_video(f['end']).frames >= 97 and probe_video(f['start']).frames >= 97
    assert probe_video(f['end']).size == probe_video(f['start']).size

@pytest.mark.parametrize('i', range(10))
def test_masked_region_shows_reference_in_the_bucket(i):
    "Fitted to the request's bucket (low, 1:1: scaled and centre-cropped), the three stay aligned."
    f = {k: DATA/v for k, v in triplet_files(i).items()}
    a = reference_agreement(f['end'], f['start'], f['mask'], size=(512, 512), frames=17)
    assert a['inside'] < 10 and a['outside'] > 40 and 0.05 <= a['coverage'] <= 0.5, a

def test_mask_variety():
    "Moving video masks, one shorter than its clip (its last frame is held), and crisp masks everywhere."
    moving, short = 0, 0
    for i in range(10):
        f = {k: DATA/v for k, v in triplet_files(i).items()}
        if f['mask'].suffix in VIDEO_EXTS:
            info = probe_video(f['mask'])
            m = read_clip(f['mask'], range(info.frames), info=info)
            moving += int((m[0] != m[-1]).any())
            short += info.frames < probe_video(f['end']).frames
            grey = m.mean(-1)
        else: grey = np.asarray(__import__('PIL.Image').Image.open(f['mask']).convert('L'), dtype=float)
        assert ((grey < 40) | (grey > 215)).mean() > 0.97, f['mask']  # nearly all pixels clearly black or white
    assert moving >= 3 and short == 1

def test_decord_reads_every_clip():
    decord = pytest.importorskip('decord')
    for p in sorted(DATA.rglob('*')):
        if p.suffix in VIDEO_EXTS:
            vr = decord.VideoReader(str(p))
            assert round(vr.get_avg_fps()) == 24, p
            assert len(vr) == (64 if p.name == 'sample05_mask.webm' else 97), p

def test_zip_holds_the_same_files(tmp_path):
    z = make_triplets_zip(tmp_path/'s.zip', n=3, frames=9, size=(64, 32), prefix='data')
    make_triplets(tmp_path/'dir', n=3, frames=9, size=(64, 32))
    with zipfile.ZipFile(z) as zf:
        assert sorted(zf.namelist()) == ['data/' + n for n in listing(tmp_path/'dir')]
        assert all(zf.read('data/' + n) == (tmp_path/'dir'/n).read_bytes() for n in listing(tmp_path/'dir'))
