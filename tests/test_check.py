"`ltx-nb check` end to end: the console script on real encoded triplets from every kind of source, good and bad."
import io, json, os, shutil, stat, subprocess, sys, threading, time, zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import product_floor

from ltx_nb.core import SCENE_SPLIT_REFUSAL, latent_grid, parse_request
from ltx_nb.media import write_video

ROOT = Path(__file__).resolve().parents[1]
FAST = ('--number-of-frames', '17', '--resolution', 'low')  # 17 frames of 25, the 512×512 bucket: 768 tokens

# ---------------------------------------------------------------- helpers

@pytest.fixture(scope='module')
def cache(tmp_path_factory):
    "The subprocesses' LTX_NB_CACHE; every call passes --workdir, so it must stay empty."
    d = tmp_path_factory.mktemp('check_cache')
    yield d
    assert not any(d.rglob('*')), f"ltx-nb check wrote into the cache: {list(d.rglob('*'))}"

def run(*args, cache:Path, cwd=None, timeout=300)->subprocess.CompletedProcess:
    "Run the installed `ltx-nb` console script with an isolated cache, UTF-8 pipes and no proxy for 127.0.0.1."
    env = {**product_floor(os.environ), 'LTX_NB_CACHE': str(cache), 'PYTHONIOENCODING': 'utf-8',
           'NO_PROXY': '127.0.0.1,localhost', 'no_proxy': '127.0.0.1,localhost'}
    exe = Path(sys.executable).parent/'ltx-nb'
    return subprocess.run([str(exe), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          encoding='utf-8', timeout=timeout)

def check(*args, cache, workdir, cwd=None)->subprocess.CompletedProcess:
    "`ltx-nb check ARGS --workdir WORKDIR`."
    return run('check', *args, '--workdir', workdir, cache=cache, cwd=cwd)

def report(p:subprocess.CompletedProcess)->dict:
    "The `--json` report of a run, with its triplets by name."
    d = json.loads(p.stdout)
    d['by_name'] = {t['name']: t for t in d['triplets']}
    return d

def tree(root:Path)->dict:
    "{relative path: bytes} of every file below `root`."
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(Path(root).rglob('*')) if p.is_file()}

def problems(stderr:str)->list[str]:
    "The `  - ` lines of a RequestError message."
    return [l[4:] for l in stderr.splitlines() if l.startswith('  - ')]

def copy_triplet(src:Path, name:str, dest:Path, new:str, roles=('start', 'end', 'mask'))->Path:
    "Copy pieces of triplet `name` from `src` to `dest`, renamed to `new`."
    dest.mkdir(parents=True, exist_ok=True)
    for p in src.glob(f'{name}_*'):
        role = p.stem.rsplit('_', 1)[1]
        if role in roles: shutil.copy(p, dest/f'{new}_{role}{p.suffix}')
    return dest

def box(frames:int, w:int, h:int, x0:int, x1:int, y0:int, y1:int, step:int=0)->np.ndarray:
    "Black (T, H, W) bool frames with a white box that moves `step` pixels right each frame."
    a = np.zeros((frames, h, w), bool)
    for t in range(frames): a[t, y0:y1, x0 + t*step:x1 + t*step] = True
    return a

def write_png(path:Path, img:np.ndarray)->Path:
    from PIL import Image
    Image.fromarray(img).save(path)
    return path

# ---------------------------------------------------------------- shared data (made once: ~3 s)

@pytest.fixture(scope='module')
def clips(tmp_path_factory)->Path:
    "Three 64×64 triplets of 25 frames (mp4 + png mask, mov + mp4 mask, webm + jpg mask), with captions."
    from ltx_nb.synth import make_triplets
    d = tmp_path_factory.mktemp('clips')
    make_triplets(d, n=3, frames=25, size=(64, 64))
    return d

@pytest.fixture(scope='module')
def clips_zip(tmp_path_factory)->Path:
    "The first two of those triplets in a zip, under a sub-folder."
    from ltx_nb.synth import make_triplets_zip
    return make_triplets_zip(tmp_path_factory.mktemp('zips')/'clips.zip', n=2, frames=25, size=(64, 64), prefix='set')

@pytest.fixture
def wd(tmp_path)->Path: return tmp_path/'work'

# ---------------------------------------------------------------- sources

def test_folder_prints_table(clips, cache, wd):
    before = tree(clips)
    p = check(clips, *FAST, cache=cache, workdir=wd)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == '3 triplets: 3 ok, 0 skipped, 0 with errors — 17 frames at 24 fps, 512×512, auto_scale_input=false'
    assert lines[1].split() == ['name', 'status', 'target', 'reference', 'model', 'fps', 'mask', 'regen', '%', 'tokens', 'notes']
    rows = {l.split()[0]: l for l in lines[3:]}
    assert sorted(rows) == ['sample00', 'sample01', 'sample02']
    for name, kind in zip(rows, ('image', 'video', 'image')):
        assert rows[name].split()[1] == 'ok' and '25f 24fps 64×64' in rows[name], rows[name]
        assert f' {kind} ' in rows[name] and '768+768' in rows[name], rows[name]
    assert tree(clips) == before, 'the source folder changed'
    assert not wd.exists() or not any(wd.rglob('*')), 'a folder source needs no extraction'

def test_relative_folder_resolves_against_cwd(clips, cache, wd):
    p = check(clips.name, *FAST, cache=cache, workdir=wd, cwd=clips.parent)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith('3 triplets: 3 ok')

def test_json_report(clips, cache, wd):
    p = check(clips, *FAST, '--json', cache=cache, workdir=wd)
    assert p.returncode == 0, p.stderr
    r = report(p)
    assert r['counts'] == dict(ok=3, skipped=0, error=0)
    assert (r['settings']['width'], r['settings']['height']) == (512, 512)
    assert r['settings']['number_of_frames'] == 17 and r['settings']['auto_scale_input'] is False
    tokens = int(np.prod(latent_grid(17, 512, 512)))
    for name, kind in (('sample00', 'image'), ('sample01', 'video'), ('sample02', 'image')):
        t = r['by_name'][name]
        for clip in ('target', 'reference'):
            assert {k: t[clip][k] for k in ('frames', 'fps', 'width', 'height')} == dict(frames=25, fps=24.0, width=64, height=64)
        assert t['mask_kind'] == kind
        assert 0.05 < t['coverage'] < 0.6 and t['coverage'] <= t['token_coverage'] <= 1
        assert (t['target_tokens'], t['reference_tokens']) == (tokens, tokens)
        assert (t['status'], t['reason'], t['flags']) == ('ok', '', [])
        assert t['caption'].startswith('repl4ce ') and Path(t['paths']['target']).parent == clips

def test_zip_then_file_url_reuses_the_extraction(clips_zip, cache, wd):
    before = sorted(clips_zip.parent.iterdir())
    p = check(clips_zip, *FAST, cache=cache, workdir=wd)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith('2 triplets: 2 ok')
    (ex,) = list((wd/'extracted').iterdir())
    assert sorted(x.relative_to(ex).as_posix() for x in ex.rglob('*_end.*')) == ['set/sample00_end.mp4', 'set/sample01_end.mov']
    q = check(clips_zip.as_uri(), *FAST, '--json', cache=cache, workdir=wd)
    assert q.returncode == 0, q.stderr
    r = report(q)
    assert r['counts']['ok'] == 2 and Path(r['root']) == ex
    assert list((wd/'extracted').iterdir()) == [ex]
    assert sorted(clips_zip.parent.iterdir()) == before, 'something was written beside the zip'

@pytest.fixture
def http_server(clips_zip):
    "An HTTP server on 127.0.0.1 serving the folder that holds `clips.zip`."
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    srv = ThreadingHTTPServer(('127.0.0.1', 0), partial(Quiet, directory=str(clips_zip.parent)))
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f'http://127.0.0.1:{srv.server_address[1]}'
    srv.shutdown(); srv.server_close(); th.join(5)

def test_http_source_and_404(http_server, clips_zip, cache, wd):
    p = check(f'{http_server}/{clips_zip.name}', *FAST, cache=cache, workdir=wd)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith('2 triplets: 2 ok')
    (dl,) = [x for x in (wd/'downloads').iterdir() if not x.name.startswith('.')]  # hidden: the copy's validators
    assert dl.read_bytes() == clips_zip.read_bytes() and dl.name.endswith('clips.zip')
    url = f'{http_server}/missing.zip'
    q = check(url, *FAST, cache=cache, workdir=wd)
    assert q.returncode == 2 and q.stdout == ''
    assert url in q.stderr and '404' in q.stderr, q.stderr
    assert [x for x in (wd/'downloads').iterdir() if not x.name.endswith('.meta.json')] == [dl], 'a failed download left a file behind'

def test_request_json_relative_paths_and_overrides(clips_zip, cache, tmp_path):
    job = tmp_path/'job'
    (job/'data').mkdir(parents=True)
    shutil.copy(clips_zip, job/'data'/'set.zip')
    req = job/'request.json'
    req.write_text(json.dumps(dict(training_data_url='data/set.zip', trigger_phrase='zq7', rank=8, number_of_frames=33,
                                   resolution='low', aspect_ratio='16:9', frame_rate=24)))
    elsewhere = tmp_path/'elsewhere'; elsewhere.mkdir()
    # the JSON's own values apply: 33 frames is longer than the 25-frame clips
    p = check(req, cache=cache, workdir=tmp_path/'wd', cwd=elsewhere)
    assert p.returncode == 2, p.stderr
    assert 'skipped' in p.stdout and 'needs 33' in p.stdout and '512×288' in p.stdout.splitlines()[0]
    assert 'no triplet qualifies' in p.stderr
    # CLI options override them, the rest of the JSON still applies
    q = check(req, '--number-of-frames', '17', '--aspect-ratio', '1:1', '--json', cache=cache, workdir=tmp_path/'wd', cwd=elsewhere)
    assert q.returncode == 0, q.stderr
    r = report(q)
    assert r['counts']['ok'] == 2 and Path(r['source']) == job/'data'/'set.zip'
    s = r['settings']
    assert (s['number_of_frames'], s['width'], s['height'], s['trigger_phrase']) == (17, 512, 512, 'zq7')
    assert all(t['caption'].startswith('zq7 repl4ce ') for t in r['triplets'])
    assert not list(elsewhere.iterdir())

def test_committed_request(cache, wd):
    req = ROOT/'data_samples'/'request.json'
    if not req.is_file(): pytest.skip('data_samples/ is not generated in this checkout')
    before = sorted(p.name for p in req.parent.rglob('*'))
    p = check(req, cache=cache, workdir=wd)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith('10 triplets: 10 ok, 0 skipped, 0 with errors — 17 frames at 24 fps, 512×512')
    assert sorted(p.name for p in req.parent.rglob('*')) == before

# ---------------------------------------------------------------- --debug-dataset

def test_debug_dataset(clips, cache, tmp_path):
    src, out = tmp_path/'src', tmp_path/'out'/'debug.zip'
    shutil.copytree(clips, src)
    out.parent.mkdir(); out.write_bytes(b'old')
    before = tree(src)
    p = check(src, '--number-of-frames', '9', '--resolution', 'low', '--aspect-ratio', '16:9', '--debug-dataset', out,
              cache=cache, workdir=tmp_path/'wd')
    assert p.returncode == 0, p.stderr
    assert tree(src) == before, 'the source folder changed'
    assert {x.name for x in tmp_path.iterdir()} <= {'out', 'src', 'wd'}, 'something appeared next to the source'
    assert [x.name for x in out.parent.iterdir()] == ['debug.zip'], 'a temporary file was left beside OUT'
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
        man = json.loads(z.read('manifest.json'))
        masks = np.load(io.BytesIO(z.read('sample01/masks.npz')))
        assert z.read('sample00/caption.txt').decode().startswith('repl4ce ')
    per = ('reference.mp4', 'target.mp4', 'mask_overlay.mp4', 'masks.npz', 'caption.txt')
    assert names == {'manifest.json'} | {f'sample0{i}/{f}' for i in range(3) for f in per}
    assert man['counts'] == dict(ok=3, skipped=0, error=0) and len(man['triplets']) == 3
    for t in man['triplets']:
        g = t['geometry']
        assert (g['target_fit']['out_w'], g['target_fit']['out_h']) == (512, 288)
        assert (g['target_fit']['src_w'], g['target_fit']['src_h']) == (64, 64)
        assert g['target_indices'] == g['reference_indices'] == list(range(9))
        assert g['target']['frames'] == 25
    assert masks['white'].shape == (9, 288, 512) and masks['keep'].shape == latent_grid(9, 288, 512)

def test_debug_dataset_not_replaced_when_nothing_qualifies(clips, cache, tmp_path):
    out = tmp_path/'debug.zip'
    out.write_bytes(b'old')
    p = check(clips, '--number-of-frames', '33', '--resolution', 'low', '--debug-dataset', out, cache=cache, workdir=tmp_path/'wd')
    assert p.returncode == 2
    assert out.read_bytes() == b'old' and sorted(x.name for x in tmp_path.iterdir()) == ['debug.zip']

def test_debug_dataset_not_replaced_when_check_fails(clips, cache, tmp_path):
    src, out = copy_triplet(clips, 'sample00', tmp_path/'src', 'good'), tmp_path/'debug.zip'
    copy_triplet(clips, 'sample00', src, 'bad')
    (src/'bad_end.mp4').write_bytes(os.urandom(5000))
    out.write_bytes(b'old')
    p = check(src, '--number-of-frames', '9', '--resolution', 'low', '--aspect-ratio', '16:9', '--debug-dataset', out,
              cache=cache, workdir=tmp_path/'wd')
    assert p.returncode == 2 and 'bad_end.mp4' in p.stderr
    assert out.read_bytes() == b'old'

# ---------------------------------------------------------------- request validation (before any data)

def test_bad_options_listed_at_once_before_touching_data(clips_zip, cache, wd):
    p = check(clips_zip, '--number-of-frames', '5', '--frame-rate', '100', '--mask-dilation', '99', cache=cache, workdir=wd)
    assert not wd.exists() or not any(wd.iterdir()), 'the data was touched'  # not a timing: machines differ
    assert p.returncode == 2 and p.stdout == ''
    assert 'invalid request (3 problems)' in p.stderr
    assert problems(p.stderr) == ['number_of_frames: 5 is below 9', 'frame_rate: 100 is above 60', 'mask_dilation: 99 is above 16']
    assert not wd.exists(), 'the archive was touched before the request was valid'

def test_missing_source_with_bad_values_lists_the_values(cache, tmp_path, wd):
    p = check(tmp_path/'nowhere.zip', '--number-of-frames', '200', '--frame-rate', '4', cache=cache, workdir=wd)
    assert p.returncode == 2 and p.stdout == ''
    assert {'number_of_frames: 200 is above 121', 'frame_rate: 4 is below 8'} <= set(problems(p.stderr))

def test_missing_source_is_listed_with_bad_values(cache, tmp_path, wd):
    p = check(tmp_path/'nowhere.zip', '--number-of-frames', '200', cache=cache, workdir=wd)
    assert p.returncode == 2
    assert any('nowhere.zip' in x and 'does not exist' in x for x in problems(p.stderr)), p.stderr
    assert 'number_of_frames: 200 is above 121' in problems(p.stderr)

def test_bad_choice_is_an_argparse_error(clips, cache, wd):
    p = check(clips, '--resolution', 'huge', cache=cache, workdir=wd)
    assert p.returncode == 2 and "invalid choice: 'huge'" in p.stderr

def test_json_unknown_keys_and_scene_split(cache, tmp_path, wd):
    req = tmp_path/'request.json'
    req.write_text(json.dumps(dict(training_data_url='nowhere.zip', rnak=16, split_input_into_scenes=True, number_of_steps=50)))
    p = check(req, cache=cache, workdir=wd)
    assert p.returncode == 2 and p.stdout == ''
    got = problems(p.stderr)
    assert "rnak: unknown parameter (did you mean 'rank'?)" in got
    assert SCENE_SPLIT_REFUSAL in got and 'desync' in SCENE_SPLIT_REFUSAL
    assert 'number_of_steps: 50 is below 100' in got
    assert any(g.startswith('training_data_url:') and 'nowhere.zip does not exist' in g for g in got) and len(got) == 4

def test_json_syntax_error_names_file_line_column(cache, tmp_path, wd):
    req = tmp_path/'request.json'
    text = '{\n  "training_data_url": "x.zip",\n  "rank": 8,,\n  "resolution": "low"\n}\n'
    req.write_text(text)
    with pytest.raises(json.JSONDecodeError) as e: json.loads(text)
    p = check(req, cache=cache, workdir=wd)
    assert p.returncode == 2
    assert f"{req}: not valid JSON at line {e.value.lineno}, column {e.value.colno}" in p.stderr
    assert e.value.lineno == 3

# ---------------------------------------------------------------- clip length rules

def test_too_short_all_skipped_then_auto_scale(clips, cache, wd):
    p = check(clips, '--number-of-frames', '33', '--resolution', 'low', '--json', cache=cache, workdir=wd)
    assert p.returncode == 2
    r = report(p)  # the report is printed, as JSON, before the request fails
    assert r['counts'] == dict(ok=0, skipped=3, error=0)
    assert all(t['status'] == 'skipped' and t['reason'].startswith('target has 25 frames, needs 33') for t in r['triplets'])
    assert 'no triplet qualifies for training' in p.stderr and 'auto_scale_input' in p.stderr
    assert sum("triplet 'sample0" in x and 'skipped' in x for x in problems(p.stderr)) == 3
    q = check(clips, '--number-of-frames', '33', '--resolution', 'low', '--auto-scale-input', '--json', cache=cache, workdir=wd)
    assert q.returncode == 0, q.stderr
    r = report(q)
    assert r['counts'] == dict(ok=3, skipped=0, error=0) and r['settings']['auto_scale_input'] is True
    assert all(t['target']['frames'] == 25 and t['target_tokens'] == 5*16*16 for t in r['triplets'])

def test_mix_of_long_and_short_clips(clips, cache, tmp_path):
    src = tmp_path/'src'
    shutil.copytree(clips, src)
    rng = np.random.default_rng(0)
    for role in ('start', 'end'): write_video(src/f'short_{role}.mp4', rng.integers(0, 255, (13, 64, 64, 3), np.uint8))
    write_png(src/'short_mask.png', box(1, 64, 64, 16, 48, 16, 48)[0].astype(np.uint8)*255)
    copy_triplet(clips, 'sample00', src, 'shortref', roles=('end', 'mask'))
    write_video(src/'shortref_start.mp4', rng.integers(0, 255, (13, 64, 64, 3), np.uint8))
    p = check(src, *FAST, cache=cache, workdir=tmp_path/'wd')
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith('5 triplets: 3 ok, 2 skipped, 0 with errors')
    rows = {l.split()[0]: l for l in p.stdout.splitlines()[3:]}
    assert rows['short'].split()[1] == 'skipped' and 'target has 13 frames, needs 17' in rows['short']
    assert 'no caption' in rows['short']
    assert rows['shortref'].split()[1] == 'skipped' and 'reference has 13 frames, needs 17' in rows['shortref']
    assert all(rows[f'sample0{i}'].split()[1] == 'ok' for i in range(3))

# ---------------------------------------------------------------- masks

@pytest.fixture(scope='module')
def mask_set(clips, tmp_path_factory)->Path:
    "sample00's clips with an all-black, an all-white and a 5-frame moving video mask."
    d = tmp_path_factory.mktemp('masks')
    for name in ('black', 'white', 'short'): copy_triplet(clips, 'sample00', d, name, roles=('start', 'end'))
    write_png(d/'black_mask.png', np.zeros((64, 64), np.uint8))
    write_png(d/'white_mask.png', np.full((64, 64, 3), 255, np.uint8))
    write_video(d/'short_mask.mp4', box(5, 64, 64, 8, 24, 16, 48, step=6), crf=0)
    return d

def test_empty_full_and_short_masks(mask_set, cache, tmp_path):
    p = check(mask_set, *FAST, '--json', cache=cache, workdir=tmp_path/'wd')
    assert p.returncode == 0, p.stderr
    r = report(p)
    black, white, short = (r['by_name'][n] for n in ('black', 'white', 'short'))
    assert black['status'] == 'skipped' and 'empty mask' in black['flags'] and 'all black' in black['reason']
    assert black['coverage'] == 0.0
    assert white['status'] == 'ok' and 'full mask' in white['flags'] and white['coverage'] == 1.0
    assert short['status'] == 'ok' and short['mask_kind'] == 'video' and 0 < short['coverage'] < 0.5
    assert r['counts'] == dict(ok=2, skipped=1, error=0)

def test_short_video_mask_holds_its_last_frame(mask_set, tmp_path):
    from ltx_nb.dataset import check_dataset, load_triplet
    r = parse_request(dict(training_data_url=str(mask_set), number_of_frames=17, resolution='low'))
    item = {i.name: i for i in check_dataset(r, tmp_path/'wd', progress=False).items}['short']
    ft = load_triplet(item, r)
    assert ft.white.shape == (17, 512, 512)
    assert not (ft.white[0] == ft.white[4]).all(), 'the mask moves in its 5 frames'
    assert all((ft.white[k] == ft.white[4]).all() for k in range(5, 17))

@pytest.mark.parametrize('ext', ['.png', '.mp4'])
def test_mask_of_another_aspect_ratio_lines_up(ext, tmp_path):
    "A 3:4 mask of a 3:2 target, fitted into the 16:9 bucket (scale + crop), covers the target's white box."
    from ltx_nb.dataset import check_dataset, load_triplet
    d = tmp_path/'src'; d.mkdir()
    tgt = box(9, 96, 64, 24, 48, 16, 48)           # x 1/4–1/2, y 1/4–3/4 of a 96×64 target
    write_video(d/'a_end.mp4', tgt, crf=0)
    write_video(d/'a_start.mp4', np.random.default_rng(1).integers(0, 255, (9, 64, 96, 3), np.uint8))
    mask = box(9, 48, 64, 12, 24, 16, 48)           # the same relative place on a 48×64 mask
    if ext == '.png': write_png(d/'a_mask.png', mask[0].astype(np.uint8)*255)
    else: write_video(d/'a_mask.mp4', mask, crf=0)
    r = parse_request(dict(training_data_url=str(d), number_of_frames=9, resolution='low', aspect_ratio='16:9'))
    (item,) = check_dataset(r, tmp_path/'wd', progress=False).items
    assert item.ok, item.reason
    ft = load_triplet(item, r)
    assert ft.geometry['target_fit']['top'] > 0, 'the bucket crops the target'
    lit = ft.target.mean(-1) >= 128                # the target's white box after the fit
    assert ft.white.shape == lit.shape == (9, 288, 512)
    for k in (0, 8):
        inter, union = (lit[k] & ft.white[k]).sum(), (lit[k] | ft.white[k]).sum()
        assert inter / union > 0.97, (ext, k, inter / union)
        ys, xs = np.nonzero(ft.white[k]); ty, tx = np.nonzero(lit[k])
        assert abs(ys.mean() - ty.mean()) < 1 and abs(xs.mean() - tx.mean()) < 1

# ---------------------------------------------------------------- dataset errors

def test_missing_pieces_in_one_message(clips, cache, tmp_path):
    src = copy_triplet(clips, 'sample00', tmp_path/'src', 'alpha', roles=('end',))
    copy_triplet(clips, 'sample00', src, 'beta', roles=('start', 'end'))
    copy_triplet(clips, 'sample00', src, 'gamma')
    p = check(src, *FAST, cache=cache, workdir=tmp_path/'wd')
    assert p.returncode == 2 and p.stdout == ''
    assert p.stderr.count('ltx-nb check:') == 1 and 'invalid dataset (3 problems)' in p.stderr
    got = problems(p.stderr)
    assert len(got) == 3
    assert got[0].startswith("triplet 'alpha': no reference video 'alpha_start.<")
    assert got[1].startswith("triplet 'alpha': no mask 'alpha_mask.<png|")
    assert got[2].startswith("triplet 'beta': no mask 'beta_mask.<")

def test_duplicate_names_in_two_folders(clips, cache, tmp_path):
    src = tmp_path/'src'
    copy_triplet(clips, 'sample00', src/'x', 'dup')
    copy_triplet(clips, 'sample00', src/'y', 'dup', roles=('end',))
    p = check(src, *FAST, cache=cache, workdir=tmp_path/'wd')
    assert p.returncode == 2
    assert problems(p.stderr) == ["triplet 'dup': ambiguous target, 2 files match (x/dup_end.mp4, y/dup_end.mp4); "
                                  "names must be unique across the archive: keep one or rename the others"]

def test_gif_mask_is_refused(clips, cache, tmp_path):
    from PIL import Image
    src = copy_triplet(clips, 'sample00', tmp_path/'src', 'anim', roles=('start', 'end'))
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(src/'anim_mask.gif')
    p = check(src, *FAST, cache=cache, workdir=tmp_path/'wd')
    assert p.returncode == 2
    (msg,) = problems(p.stderr)
    assert msg.startswith("triplet 'anim': mask 'anim_mask.gif' is not a supported image or video (use png, jpg")

def test_corrupt_files(clips, cache, tmp_path):
    "A garbage target, an empty reference and a garbage mask: each triplet an error row, all in one message."
    src = tmp_path/'src'
    shutil.copytree(clips, src)
    copy_triplet(clips, 'sample00', src, 'good')
    (src/'sample00_start.mp4').write_bytes(b'')
    (src/'sample01_end.mov').write_bytes(os.urandom(20000))
    (src/'sample02_mask.jpg').write_bytes(os.urandom(3000))
    p = check(src, *FAST, cache=cache, workdir=tmp_path/'wd')
    assert p.returncode == 2
    assert p.stdout.startswith('4 triplets: 1 ok, 0 skipped, 3 with errors')
    rows = {l.split()[0]: l.split()[1] for l in p.stdout.splitlines()[3:]}
    assert rows == dict(good='ok', sample00='error', sample01='error', sample02='error')
    assert p.stderr.count('ltx-nb check:') == 1 and 'invalid dataset (3 problems)' in p.stderr
    a, b, c = problems(p.stderr)
    assert a.startswith(f"triplet 'sample00': {src/'sample00_start.mp4'} is not a readable video (the file is empty)")
    assert b.startswith(f"triplet 'sample01': {src/'sample01_end.mov'} is not a readable video") and 're-encode' in b
    assert c.startswith(f"triplet 'sample02': {src/'sample02_mask.jpg'} is not a readable image") and 'PNG' in c

def test_two_processes_share_one_extraction(clips_zip, cache, tmp_path):
    "Two checks of the same zip into the same workdir at once: both succeed, one extraction, no leftovers."
    env = {**os.environ, 'LTX_NB_CACHE': str(cache)}
    exe, wd = Path(sys.executable).parent/'ltx-nb', tmp_path/'wd'
    procs = [subprocess.Popen([str(exe), 'check', str(clips_zip), *FAST, '--workdir', str(wd)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and out.startswith('2 triplets: 2 ok'), err
    (ex,) = list((wd/'extracted').iterdir())
    assert not ex.name.startswith('.') and len(list(ex.rglob('*_end.*'))) == 2

HOSTILE = {  # kind -> (the bad entry, given the sentinel folder; what the refusal says)
    'slip': (lambda out: zipfile.ZipInfo('set/../../../outside/secret.txt'), "climbs out of the archive with '..'"),
    'absolute': (lambda out: zipfile.ZipInfo(str(out/'secret.txt')), 'has an absolute path'),
    'symlink': (lambda out: _link('set/sample00_end.mp4'), 'is a symbolic link'),
}

def _link(name):
    i = zipfile.ZipInfo(name); i.external_attr = (stat.S_IFLNK | 0o777) << 16
    return i

@pytest.mark.parametrize('kind', sorted(HOSTILE))
def test_hostile_zip(kind, clips_zip, cache, tmp_path):
    outside = tmp_path/'outside'
    (outside/'sub').mkdir(parents=True)
    (outside/'secret.txt').write_bytes(b'do not touch')
    (outside/'sub'/'clip_end.mp4').write_bytes(b'sentinel')
    before = tree(outside)
    make, says = HOSTILE[kind]
    evil = tmp_path/'evil.zip'
    with zipfile.ZipFile(clips_zip) as src, zipfile.ZipFile(evil, 'w') as z:
        bad = make(outside)
        z.writestr(bad, str(outside/'secret.txt') if kind == 'symlink' else b'overwritten')
        for i in src.infolist():
            if i.filename != bad.filename: z.writestr(i, src.read(i))
    wd = tmp_path/'work'
    p = check(evil, *FAST, cache=cache, workdir=wd)
    assert p.returncode == 2 and p.stdout == ''
    assert 'refused archive' in p.stderr and says in p.stderr, p.stderr
    assert tree(outside) == before, 'something was written outside the work directory'
    ex = wd/'extracted'
    assert not ex.exists() or not any(ex.rglob('*')), list(ex.rglob('*'))
    assert sorted(x.name for x in tmp_path.iterdir()) == ['evil.zip', 'outside', 'work']

# ---------------------------------------------------------------- captions

def test_caption_encodings(clips, cache, tmp_path):
    src = tmp_path/'src'
    for name in ('cp', 'bom', 'none'): copy_triplet(clips, 'sample00', src, name)
    (src/'cp.txt').write_bytes('Café crème — naïve façade\r\n'.encode('cp1252'))
    (src/'bom.txt').write_bytes('\ufeff  Ünïcödé ✓ caption \n\n'.encode('utf-8'))
    p = check(src, *FAST, '--trigger-phrase', 'zz9', '--json', cache=cache, workdir=tmp_path/'wd')
    assert p.returncode == 0, p.stderr
    r = report(p)['by_name']
    assert r['cp']['caption'] == 'zz9 Café crème — naïve façade'
    assert r['bom']['caption'] == 'zz9 Ünïcödé ✓ caption'
    assert r['none']['caption'] == 'zz9' and 'no caption' in r['none']['flags']

# ---------------------------------------------------------------- validation entries (before any model loads)

def _request_with_validation(clips:Path, tmp_path:Path, **kw)->Path:
    "A request on `clips` whose two validation entries are a 25-frame clip and an unreachable URL."
    from ltx_nb.synth import triplet_files
    f = triplet_files(0)
    entries = [dict(prompt='a', video_url=str(clips/f['end']), mask_url=str(clips/f['mask']), reference_video_url=str(clips/f['start'])),
               dict(prompt='b', video_url='http://127.0.0.1:9/nothing-listens-here.mp4', mask_url=str(clips/f['mask']),
                    reference_video_url=str(clips/f['start']))]
    req = tmp_path/'request.json'
    req.write_text(json.dumps(dict(training_data_url=str(clips), number_of_frames=17, resolution='low', validation=entries,
                                   validation_resolution='low', **kw)))
    return req

def test_check_fits_validation_entries(clips, cache, tmp_path):
    "A too-short and an unreachable validation clip fail `ltx-nb check` (exit 2), both listed, although every triplet is ok."
    p = check(_request_with_validation(clips, tmp_path, validation_number_of_frames=33), cache=cache, workdir=tmp_path/'wd')
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert '3 ok' in p.stdout
    err = p.stderr
    assert 'validation[0].video_url' in err and 'needs 33' in err and 'validation_number_of_frames' in err, err
    assert 'validation[1].video_url' in err and 'nothing-listens-here.mp4' in err, err
    assert 'Traceback' not in err
    ok = check(_request_with_validation(clips, tmp_path, validation_number_of_frames=17), '--json', cache=cache, workdir=tmp_path/'wd')
    assert ok.returncode == 2 and 'validation[0]' not in ok.stderr and 'validation[1].video_url' in ok.stderr
    assert json.loads(ok.stdout)['validation_problems'] == [l.strip()[2:] for l in ok.stderr.splitlines() if l.strip().startswith('- ')]

def test_planner_and_train_refuse_bad_validation_before_any_model(clips, tmp_path, monkeypatch):
    "The job planner lists the validation entries' problems; `train` stops at its data check, before loading a model."
    from ltx_nb.core import RequestError, load_request
    from ltx_nb.runner import plan_jobs
    import ltx_nb.model
    req = _request_with_validation(clips, tmp_path, validation_number_of_frames=33, model='embedded:tiny')
    with pytest.raises(RequestError) as e: plan_jobs([str(req)])
    msgs = e.value.problems
    assert any('validation[0].video_url' in m and 'needs 33' in m for m in msgs), msgs
    assert any('validation[1].video_url' in m for m in msgs), msgs
    def no_model(*a, **k): raise AssertionError('a model was loaded before the validation entries were checked')
    monkeypatch.setattr(ltx_nb.model, 'load_transformer', no_model)
    from ltx_nb.train import train
    with pytest.raises(RequestError) as e:
        train(load_request(req), run_dir=tmp_path/'run', progress=False)
    assert any('validation[1].video_url' in m for m in e.value.problems), e.value.problems
