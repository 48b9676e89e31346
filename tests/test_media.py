"Hostile and heavier media cases: broken files, decoder parity, rotation, odd sizes, mask kinds."
import subprocess, sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ltx_nb.core import RequestError
from ltx_nb.media import (ClipTooShort, clip_frame_indices, ffmpeg_exe, fit_geometry, probe_video, read_clip,
                          write_video)
from ltx_nb.masks import latent_keep_mask, load_mask

CONTAINERS = ('.mp4', '.mov', '.webm', '.mkv', '.avi')


def pattern(T=17, W=96, H=64, seed=0):
    "Smooth moving colour gradients: compress well, differ per frame, show any geometry error."
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    t = np.arange(T, dtype=np.float32)[:, None, None]
    r = 127 + 120 * np.sin(x[None] / 9 + t / 3)
    g = 127 + 120 * np.cos(y[None] / 7 - t / 4)
    b = np.broadcast_to(255 * x[None] / W, r.shape)
    return np.stack([r, g, b], -1).astype(np.uint8)


def ffmpeg(*args):
    subprocess.run([ffmpeg_exe(), '-v', 'error', '-y', *map(str, args)], check=True)


def ffmpeg_frames(path, W, H):
    "ffmpeg's own decode (it applies the display rotation), rgb24."
    raw = subprocess.run([ffmpeg_exe(), '-v', 'error', '-i', str(path), '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, H, W, 3)


@pytest.fixture(scope='module')
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp('clips')
    return {ext: write_video(d / f'p{ext}', pattern(), fps=24) for ext in CONTAINERS}


# ---- broken inputs -------------------------------------------------------------------------------------------------

def test_zero_byte_file(tmp_path):
    p = tmp_path / 'zero_end.mp4'
    p.write_bytes(b'')
    with pytest.raises(RequestError) as e: probe_video(p)
    assert 'zero_end.mp4 is not a readable video (the file is empty); re-encode it, e.g. to H.264 mp4' in str(e.value)


@pytest.mark.parametrize('ext', CONTAINERS)
def test_corrupt_file(tmp_path, ext):
    p = tmp_path / f'junk{ext}'
    p.write_bytes(np.random.default_rng(1).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    with pytest.raises(RequestError) as e: probe_video(p)
    assert f'junk{ext} is not a readable video (' in e.value.problems[0]
    assert e.value.problems[0].endswith('re-encode it, e.g. to H.264 mp4')


def test_text_file_named_video(tmp_path):
    p = tmp_path / 'notes.mkv'
    p.write_text('this is not a video\n' * 50)
    with pytest.raises(RequestError, match='notes.mkv is not a readable video'): probe_video(p, backend='pyav')


def test_audio_only_file(tmp_path):
    p = tmp_path / 'audio.mp4'
    ffmpeg('-f', 'lavfi', '-i', 'sine=frequency=440:duration=1', '-c:a', 'aac', p)
    with pytest.raises(RequestError, match='audio.mp4 is not a readable video'): probe_video(p)


def test_truncated_file_fails_on_read(tmp_path):
    "The header survives, the frames do not: probing succeeds, decoding names the file."
    full = write_video(tmp_path / 'full.mp4', pattern(48, 160, 120))
    cut = tmp_path / 'cut.mp4'
    cut.write_bytes(full.read_bytes()[:len(full.read_bytes()) // 3])
    info = probe_video(cut)
    with pytest.raises(RequestError, match='cut.mp4 is not a readable video'):
        read_clip(cut, range(info.frames), info=info)


def test_missing_file(tmp_path):
    with pytest.raises(RequestError, match='file not found'): probe_video(tmp_path / 'nope.mp4')


# ---- decoders agree ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('ext', CONTAINERS)
def test_pyav_fallback_matches_decord(clips, ext, monkeypatch):
    p = clips[ext]
    d = probe_video(p)
    monkeypatch.setenv('LTX_NB_DECODER', 'pyav')
    a = probe_video(p)
    assert (d.backend, a.backend) == ('decord', 'pyav')
    assert (d.frames, d.size, d.rotation) == (a.frames, a.size, a.rotation) == (17, (96, 64), 0)
    assert np.allclose(d.timestamps, a.timestamps, atol=1e-3) and abs(d.fps - a.fps) < 1e-6
    idx = [0, 3, 3, 16, 7]
    for fit in (fit_geometry(96, 64, 64, 64), fit_geometry(96, 64, 32, 64), fit_geometry(96, 64, 96, 64)):
        x, y = read_clip(p, idx, fit, info=d), read_clip(p, idx, fit, info=a)
        assert x.shape == (5, fit.out_h, fit.out_w, 3)
        assert np.abs(x.astype(int) - y).max() <= 1, (ext, fit)  # the same swscale bilinear path


def test_decord_missing_falls_back(clips, monkeypatch):
    monkeypatch.setitem(sys.modules, 'decord', None)  # `import decord` now raises ImportError
    info = probe_video(clips['.mp4'])
    assert info.backend == 'pyav'
    assert read_clip(clips['.mp4'], [0, 1], info=info).shape == (2, 64, 96, 3)


def test_unknown_backend(clips):
    with pytest.raises(ValueError, match="unknown decoder 'ffmpeg'"): probe_video(clips['.mp4'], backend='ffmpeg')


def test_three_by_four_output_is_not_mangled(tmp_path):
    "decord 0.6.0 returns a 4-channel, mis-strided array for 3:4 output sizes; PyAV takes over."
    p = write_video(tmp_path / 'land.mp4', pattern(9, 120, 80), crf=0, pix_fmt='yuv444p')
    info = probe_video(p)
    fit = fit_geometry(120, 80, 48, 64)
    a = read_clip(p, range(9), fit, info=info)
    b = read_clip(p, range(9), fit, backend='pyav')
    assert a.shape == (9, 64, 48, 3) and np.array_equal(a, b)


# ---- geometry ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('deg', [90, 180, 270])
def test_rotation_matches_ffmpeg(tmp_path, deg):
    src = write_video(tmp_path / 'src.mp4', pattern(9, 96, 64), crf=0, pix_fmt='yuv444p')
    p = tmp_path / f'rot{deg}.mp4'
    ffmpeg('-display_rotation', deg, '-i', src, '-c', 'copy', p)
    info = probe_video(p)
    W, H = (64, 96) if deg % 180 else (96, 64)
    assert (info.rotation, info.size) == (deg, (W, H))
    ours = read_clip(p, range(9), info=info)
    theirs = ffmpeg_frames(p, W, H)
    assert ours.shape == theirs.shape
    assert np.abs(ours.astype(int) - theirs).mean() < 2


def test_odd_sizes(tmp_path):
    fr = pattern(9, 97, 61)
    padded = write_video(tmp_path / 'odd.mp4', fr)                      # 4:2:0 H.264: padded to even
    assert probe_video(padded).size == (98, 62)
    for name, kw in (('odd444.mp4', dict(pix_fmt='yuv444p')), ('odd.webm', {}), ('odd.avi', {}), ('odd.mkv', dict(codec='ffv1'))):
        p = write_video(tmp_path / name, fr, **kw)
        info = probe_video(p)
        assert info.size == (97, 61), name
        a = read_clip(p, range(9), fit_geometry(97, 61, 64, 32), info=info)
        assert a.shape == (9, 32, 64, 3)


def test_reference_and_target_of_different_sizes(tmp_path):
    "Each clip gets its own Fit to the same bucket; the results line up in size."
    ref = write_video(tmp_path / 'a_start.mp4', pattern(17, 160, 90))
    tgt = write_video(tmp_path / 'a_end.mp4', pattern(17, 96, 64))
    out = []
    for p in (ref, tgt):
        i = probe_video(p)
        out.append(read_clip(p, clip_frame_indices(i, 9), fit_geometry(i.width, i.height, 64, 64), info=i))
    assert out[0].shape == out[1].shape == (9, 64, 64, 3)


def test_too_short_names_the_clip(clips):
    with pytest.raises(ClipTooShort) as e: clip_frame_indices(probe_video(clips['.mp4']), 25, name='reference')
    assert e.value.reason == 'reference has 17 frames, needs 25 (or turn on auto_scale_input)'
    assert len(clip_frame_indices(probe_video(clips['.mp4']), 25, 24, auto_scale=True)) == 25


# ---- writing -------------------------------------------------------------------------------------------------------

def test_write_is_atomic(tmp_path):
    with pytest.raises(RuntimeError, match='ffmpeg could not write'):
        write_video(tmp_path / 'bad.mkv', pattern(3), codec='no_such_encoder')
    assert list(tmp_path.iterdir()) == []
    write_video(tmp_path / 'ok.mp4', pattern(3))
    assert [p.name for p in tmp_path.iterdir()] == ['ok.mp4']
    with pytest.raises(ValueError, match='use one of'): write_video(tmp_path / 'x.gif', pattern(3))


def test_mp4_is_faststart_yuv420p(tmp_path):
    import av
    p = write_video(tmp_path / 'f.mp4', pattern(5))
    data = p.read_bytes()
    assert data.find(b'moov') < data.find(b'mdat')
    with av.open(str(p)) as c: assert c.streams.video[0].codec_context.pix_fmt == 'yuv420p'


# ---- masks ---------------------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def target(tmp_path_factory):
    d = tmp_path_factory.mktemp('target')
    p = write_video(d / 't_end.mp4', pattern(17, 96, 64))
    info = probe_video(p)
    return info, clip_frame_indices(info, 17), fit_geometry(96, 64, 64, 64)


@pytest.mark.parametrize('name', ['m.gif', 'm.tiff', 'm.txt', 'mask'])
def test_unsupported_mask_kind(tmp_path, target, name):
    p = tmp_path / name
    p.write_bytes(b'GIF89a')
    with pytest.raises(RequestError) as e: load_mask(p, *target)
    msg = e.value.problems[0]
    assert name in msg and 'is not supported (use png, jpg, jpeg, bmp, webp or a video (mp4, mov, webm, mkv, avi))' in msg


def test_unreadable_image_mask(tmp_path, target):
    p = tmp_path / 'm.png'
    p.write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 40)
    with pytest.raises(RequestError, match='m.png is not a readable image'): load_mask(p, *target)


def test_corrupt_video_mask(tmp_path, target):
    p = tmp_path / 'm.mp4'
    p.write_bytes(b'\0' * 1000)
    with pytest.raises(RequestError, match='m.mp4 is not a readable video'): load_mask(p, *target)


def test_all_black_and_all_white_masks(tmp_path, target):
    info, idx, fit = target
    Image.new('L', (96, 64), 0).save(tmp_path / 'black.png')
    Image.new('RGB', (10, 7), (255, 255, 255)).save(tmp_path / 'white.jpg')
    assert not load_mask(tmp_path / 'black.png', *target).any()
    w = load_mask(tmp_path / 'white.jpg', *target)
    assert w.all() and (latent_keep_mask(w) == 0).all()


def test_rotated_video_mask_follows_display_orientation(tmp_path, target):
    "A mask video stored rotated is read upright before it is fitted onto the target."
    info, idx, fit = target
    m = np.zeros((5, 64, 96), bool); m[:, :, :48] = True           # left half white, upright
    stored = np.rot90(m, -1, axes=(1, 2))                            # stored turned clockwise (64 wide, 96 tall)
    src = write_video(tmp_path / 'ms.mp4', stored, crf=0, pix_fmt='yuv444p')
    p = tmp_path / 'mask_rot.mp4'
    ffmpeg('-display_rotation', 90, '-i', src, '-c', 'copy', p)
    w = load_mask(p, *target)
    assert w.shape == (17, 64, 64)
    assert w[:, :, :24].all() and not w[:, :, 40:].any()
