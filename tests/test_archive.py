"Bad inputs for `ltx_nb.archive`: hostile zips, broken datasets, odd captions, local and HTTP sources."
import io, os, stat, struct, threading, zipfile, zlib
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ltx_nb.core import RequestError, resolve_source
from ltx_nb.archive import (EXTRACTED_MARKER, Triplet, _copy_limited, download_url, extract_zip, fetch_file,
                            fetch_source, find_triplets, is_ignored, read_caption, safe_extract)

TRIPLET = {'clip01_start.mp4': b'ref', 'clip01_end.mp4': b'tgt', 'clip01_mask.png': b'mask'}

def make_zip(path, files:dict, compression=zipfile.ZIP_DEFLATED)->Path:
    "A zip of `files` ({name or ZipInfo: bytes})."
    with zipfile.ZipFile(path, 'w', compression) as z:
        for name, data in files.items(): z.writestr(name, data)
    return Path(path)

def forge_zip(path, name:str, raw:bytes, crc:int, file_size:int, flags:int=0, method:int=zipfile.ZIP_DEFLATED)->Path:
    "A one-entry zip written byte by byte, so its header can say anything about `raw`."
    n = name.encode()
    local = struct.pack('<4s5H3I2H', b'PK\x03\x04', 20, flags, method, 0, 0x21, crc, len(raw), file_size, len(n), 0) + n
    central = struct.pack('<4s6H3I5H2I', b'PK\x01\x02', 20, 20, flags, method, 0, 0x21, crc, len(raw), file_size,
                          len(n), 0, 0, 0, 0, 0o644 << 16, 0) + n
    end = struct.pack('<4s4H2IH', b'PK\x05\x06', 0, 0, 1, 1, len(central), len(local) + len(raw), 0)
    Path(path).write_bytes(local + raw + central + end)
    return Path(path)

def deflated_zeros(mib:int)->bytes:
    "A raw deflate stream of `mib` MiB of zeros, made in milliseconds: a fully flushed block repeats byte for byte."
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    return block * mib + c.flush()

def tree(root:Path)->dict:
    "{relative path: bytes} of every file below `root`."
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}

@pytest.fixture
def sandbox(tmp_path):
    "A work directory beside a sentinel tree that must never change, and zips kept outside both."
    outside = tmp_path/'outside'
    (outside/'sub').mkdir(parents=True)
    (outside/'secret.txt').write_bytes(b'do not touch')
    (outside/'sub'/'clip01_end.mp4').write_bytes(b'sentinel')
    (tmp_path/'zips').mkdir()
    work = tmp_path/'work'
    before = tree(outside)
    yield tmp_path, work
    assert tree(outside) == before, 'something was written outside the work directory'
    assert not list(tmp_path.glob('evil*')) and not Path('/tmp/ltx_nb_evil').exists()

def refused(tmp_path, work, zip_path, contains:str, **limits):
    "Assert `fetch_source` refuses `zip_path` naming `contains`, and leaves no extraction behind."
    with pytest.raises(RequestError) as e: fetch_source(str(zip_path), work, **limits)
    assert any(contains in p for p in e.value.problems), e.value.problems
    ex = work/'extracted'
    assert not ex.exists() or list(ex.iterdir()) == [], list(ex.rglob('*'))
    return e.value

# ---- hostile archives ----------------------------------------------------------------------------------------------

def test_zip_slip(sandbox):
    tmp, work = sandbox
    z = make_zip(tmp/'zips'/'slip.zip', {**TRIPLET, '../../../outside/evil.mp4': b'x', '../../../evil.txt': b'x'})
    e = refused(tmp, work, z, "climbs out of the archive with '..'")
    assert len(e.problems) == 2

def test_backslash_and_drive_tricks(sandbox):
    tmp, work = sandbox
    z = make_zip(tmp/'zips'/'win.zip', {**TRIPLET, '..\\..\\..\\outside\\evil.mp4': b'x', 'C:/evil.mp4': b'x',
                                        'D:evil.mp4': b'x', '\\\\server\\share\\evil.mp4': b'x'})
    e = refused(tmp, work, z, "climbs out")
    assert sum('names a drive' in p for p in e.problems) == 2 and any('absolute path' in p for p in e.problems)

def test_absolute_paths(sandbox):
    tmp, work = sandbox
    z = make_zip(tmp/'zips'/'abs.zip', {**TRIPLET, '/tmp/ltx_nb_evil': b'x', str(tmp/'outside'/'secret.txt'): b'overwritten'})
    e = refused(tmp, work, z, "'/tmp/ltx_nb_evil' has an absolute path")
    assert len(e.problems) == 2

@pytest.mark.parametrize('mode', [stat.S_IFLNK | 0o777, stat.S_IFIFO | 0o644, stat.S_IFCHR | 0o644])
def test_symlinks_and_special_entries(sandbox, mode):
    tmp, work = sandbox
    link = zipfile.ZipInfo('d'); link.external_attr = mode << 16
    # a link to the sentinel folder, then a file written "through" it
    z = make_zip(tmp/'zips'/'link.zip', {**TRIPLET, link: str(tmp/'outside'), 'd/evil.mp4': b'x'})
    refused(tmp, work, z, 'not a regular file')

def test_too_many_files(sandbox):
    tmp, work = sandbox
    z = make_zip(tmp/'zips'/'many.zip', {f'f{i:05d}.png': b'' for i in range(20_000)}, zipfile.ZIP_STORED)
    refused(tmp, work, z, '20000 files, more than the 10000 allowed')

def test_zip_bomb_refused_from_its_header(sandbox):
    tmp, work = sandbox
    raw = deflated_zeros(1024)  # 1 GiB of zeros in about 1 MiB
    assert len(raw) < 2 << 20
    z = forge_zip(tmp/'zips'/'bomb.zip', 'clip01_end.mp4', raw, 0, 1 << 30)
    refused(tmp, work, z, 'more than the 200× allowed (a zip bomb?)')
    # with the ratio check off, the total-size limit still refuses it before anything is unpacked
    refused(tmp, work, z, 'expands to 1.0 GiB, more than the 100.0 MiB allowed', max_ratio=1e9, max_total_bytes=100 << 20)

def test_zip_bomb_made_by_the_streaming_writer(sandbox):
    tmp, work = sandbox
    z = tmp/'zips'/'stream.zip'
    with zipfile.ZipFile(z, 'w', zipfile.ZIP_DEFLATED, compresslevel=1) as zf, zf.open('clip01_end.mp4', 'w') as f:
        for _ in range(96): f.write(bytes(1 << 20))
    e = refused(tmp, work, z, 'expands 229× to 96.0 MiB, more than the 200× allowed', max_total_bytes=64 << 20)
    assert any('expands to 96.0 MiB, more than the 64.0 MiB allowed' in p for p in e.problems)

def test_header_lying_about_size(sandbox):
    tmp, work = sandbox
    raw, full = deflated_zeros(64), bytes(64 << 20)
    # header says 1000 bytes, the stream holds 64 MiB: zipfile stops at 1000 and the CRC of the whole gives it away
    z = forge_zip(tmp/'zips'/'small_claim.zip', 'clip01_end.mp4', raw, zlib.crc32(full), 1000)
    refused(tmp, work, z, 'is corrupt')
    # header says more than the stream holds
    raw = deflated_zeros(1)
    z = forge_zip(tmp/'zips'/'big_claim.zip', 'clip01_end.mp4', raw, zlib.crc32(bytes(1 << 20)), 5 << 20)
    refused(tmp, work, z, 'holds 1048576 bytes but its header declares 5242880')

def test_limits_enforced_while_decompressing():
    "Header sizes are not trusted: the copy itself stops at the declared size and at the byte budget."
    with pytest.raises(RequestError, match='expands beyond the 10 bytes its header declares'):
        _copy_limited(io.BytesIO(bytes(100)), io.BytesIO(), 'x.mp4', 10, 1000, 'a.zip')
    with pytest.raises(RequestError, match='expands beyond the 50 bytes allowed'):
        _copy_limited(io.BytesIO(bytes(100)), io.BytesIO(), 'x.mp4', 100, 50, 'a.zip')

def test_encrypted_entry(sandbox):
    tmp, work = sandbox
    z = forge_zip(tmp/'zips'/'enc.zip', 'clip01_end.mp4', b'xxxx', 0, 4, flags=0x1, method=zipfile.ZIP_STORED)
    refused(tmp, work, z, 'is encrypted; make the zip without a password')

def test_corrupt_and_non_zip(sandbox):
    tmp, work = sandbox
    good = make_zip(tmp/'zips'/'good.zip', TRIPLET).read_bytes()
    (tmp/'zips'/'cut.zip').write_bytes(good[:len(good)//2])
    refused(tmp, work, tmp/'zips'/'cut.zip', 'is not a zip archive or a folder')
    (tmp/'zips'/'page.zip').write_text('<html>not found</html>')
    refused(tmp, work, tmp/'zips'/'page.zip', 'is not a zip archive or a folder')
    refused(tmp, work, tmp/'zips'/'missing.zip', 'does not exist')
    with pytest.raises(RequestError, match='unsupported URL scheme'): fetch_source('s3://bucket/x.zip', work)

def test_safe_extract_cleans_up_after_a_late_failure(tmp_path):
    "An entry that fails mid-way removes everything written before it, folders included."
    z = make_zip(tmp_path/'mixed.zip', {'a/x_start.mp4': b'x', 'b/clip01_end.mp4': b'y' * 100}, zipfile.ZIP_STORED)
    data = bytearray(z.read_bytes()); data[data.find(b'y' * 100)] = ord('z')  # the second entry's CRC no longer matches
    z.write_bytes(bytes(data))
    dest = tmp_path/'dest'
    with pytest.raises(RequestError, match="entry 'b/clip01_end.mp4' is corrupt"): safe_extract(z, dest)
    assert list(dest.rglob('*')) == []

# ---- what a normal archive gives -----------------------------------------------------------------------------------

def test_macos_junk_and_hidden_files_are_not_extracted(sandbox):
    tmp, work = sandbox
    z = make_zip(tmp/'zips'/'mac.zip', {**{f'set/{k}': v for k, v in TRIPLET.items()}, '__MACOSX/set/._clip01_start.mp4': b'x',
        'set/._clip01_end.mp4': b'x', 'set/.DS_Store': b'x', '.git/clip02_end.mp4': b'x', 'set/.hidden/clip03_start.mp4': b'x'})
    root = fetch_source(str(z), work)
    assert sorted(tree(root)) == [EXTRACTED_MARKER, 'set/clip01_end.mp4', 'set/clip01_mask.png', 'set/clip01_start.mp4']
    assert [t.name for t in find_triplets(root)] == ['clip01']

def test_is_ignored():
    assert [is_ignored(p) for p in ('__MACOSX', 'a/__MACOSX/b.mp4', '._x.mp4', 'a\\.DS_Store', '.x/y', 'x/y.mp4')] \
        == [True, True, True, True, True, False]

def test_extraction_is_reused_and_an_interrupted_one_redone(sandbox, monkeypatch):
    tmp, work = sandbox
    z = make_zip(tmp/'zips'/'ds.zip', TRIPLET)
    root = fetch_source(str(z), work)
    assert (root/EXTRACTED_MARKER).is_file() and root.parent == work/'extracted'
    import ltx_nb.archive as A
    real = A.safe_extract
    monkeypatch.setattr(A, 'safe_extract', lambda *a, **k: pytest.fail('extracted twice'))
    assert fetch_source(resolve_source(z.as_uri()), work) == root
    # a leftover without a marker (a crash before the rename) is not trusted
    (root/EXTRACTED_MARKER).unlink(); (root/'clip01_end.mp4').write_bytes(b'half')
    monkeypatch.setattr(A, 'safe_extract', real)
    assert fetch_source(str(z), work) == root
    assert (root/'clip01_end.mp4').read_bytes() == b'tgt' and (root/EXTRACTED_MARKER).is_file()
    assert [p.name for p in (work/'extracted').iterdir()] == [root.name]  # no temporary folder left

def test_a_folder_is_used_in_place_and_not_written(tmp_path):
    ds = tmp_path/'mine'; ds.mkdir()
    for k, v in TRIPLET.items(): (ds/k).write_bytes(v)
    before = tree(ds)
    assert fetch_source(str(ds), tmp_path/'work') == ds
    assert fetch_source(resolve_source(ds.as_uri()), tmp_path/'work') == ds
    assert find_triplets(ds)[0].reference == ds/'clip01_start.mp4'
    assert tree(ds) == before and not (tmp_path/'work').exists()

def test_file_url_through_resolve_source(tmp_path):
    z = make_zip(tmp_path/'my data.zip', {f'x/{k}': v for k, v in TRIPLET.items()})
    src = resolve_source(z.as_uri())  # file:///…/my%20data.zip
    assert src == str(z)
    t, = find_triplets(fetch_source(src, tmp_path/'work'), 'repl4ce')
    assert (t.name, t.mask_kind, t.caption, t.caption_path) == ('clip01', 'image', 'repl4ce', None)
    assert fetch_file(resolve_source(t.target.as_uri()), tmp_path/'work') == t.target

# ---- triplet matching ----------------------------------------------------------------------------------------------

def dataset(root:Path, names)->Path:
    for n in names:
        p = root/n; p.parent.mkdir(parents=True, exist_ok=True); p.write_bytes(b'x')
    return root

def problems_of(root, trigger='')->list[str]:
    with pytest.raises(RequestError) as e: find_triplets(root, trigger)
    return e.value.problems

def test_subfolders_cases_and_sorting(tmp_path):
    root = dataset(tmp_path, ['b/clip02_START.MOV', 'b/clip02_End.mkv', 'b/clip02_mask.MP4', 'a/c/clip01_start.webm',
                              'a/c/clip01_end.avi', 'masks/clip01_mask.JPEG', 'clip01.TXT', 'README.md', 'notes.txt',
                              'clip03.txt', 'clip_end_start.mp4', 'clip_end_end.mp4', 'clip_end_mask.bmp'])
    ts = find_triplets(root)
    assert [(t.name, t.mask_kind) for t in ts] == [('clip01', 'image'), ('clip02', 'video'), ('clip_end', 'image')]
    assert ts[0].caption_path == root/'clip01.TXT' and ts[0].mask == root/'masks/clip01_mask.JPEG'
    assert all(isinstance(t, Triplet) for t in ts)

def test_every_problem_in_one_error(tmp_path):
    root = dataset(tmp_path, ['clip07_end.mp4', 'clip07_mask.gif', 'clip08_start.mp4', 'clip10_start.png',
                              'clip10_end.mp4', 'clip10_mask.png', 'clip11_start.mp4', 'clip11_end.mp4', 'clip11_mask.png',
                              'clip11_mask.mp4', 'ok_start.mp4', 'ok_end.mp4', 'ok_mask.png'])
    assert problems_of(root) == [
        "triplet 'clip07': no reference video 'clip07_start.<mp4|mov|webm|mkv|avi>' found",
        "triplet 'clip07': mask 'clip07_mask.gif' is not a supported image or video (use png, jpg, jpeg, bmp, webp or a video)",
        "triplet 'clip08': no target video 'clip08_end.<mp4|mov|webm|mkv|avi>' found",
        "triplet 'clip08': no mask 'clip08_mask.<png|jpg|jpeg|bmp|webp|mp4|mov|webm|mkv|avi>' found",
        "triplet 'clip10': reference 'clip10_start.png' is not a supported video (use mp4, mov, webm, mkv or avi)",
        "triplet 'clip11': ambiguous mask, 2 files match (clip11_mask.mp4, clip11_mask.png); names must be unique "
        "across the archive: keep one or rename the others"]

def test_duplicate_names_across_folders_name_both_paths(tmp_path):
    root = dataset(tmp_path, ['x/clip01_start.mp4', 'x/clip01_end.mp4', 'x/clip01_mask.png', 'y/clip01_end.mp4',
                              'x/clip01.txt', 'y/clip01.txt'])
    ps = problems_of(root)
    assert len(ps) == 2
    assert 'x/clip01_end.mp4, y/clip01_end.mp4' in ps[0] and 'ambiguous target' in ps[0]
    assert 'ambiguous caption' in ps[1] and 'x/clip01.txt, y/clip01.txt' in ps[1]

def test_no_triplets_explains_the_convention(tmp_path):
    dataset(tmp_path, ['README.md', 'clip.mp4', 'clip01.txt', '__MACOSX/clip01_start.mp4', '._clip01_end.mp4'])
    p, = problems_of(tmp_path)
    assert 'no triplets found' in p and '<name>_start.<video>' in p and '<name>_mask.<image or video>' in p
    with pytest.raises(RequestError, match='not a folder'): find_triplets(tmp_path/'nope')

# ---- captions ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('data', [
    '\ufeffA red car\r\non a road.\n'.encode('utf-8'),
    'A red car\non a road.'.encode('utf-16'),           # BOM, native order
    b'\xfe\xff' + 'A red car\non a road.'.encode('utf-16-be'),
    b'\xff\xfe' + 'A red car\non a road.'.encode('utf-16-le'),
    'A red car on a road.'.encode('utf-16-le'),          # no BOM
    'A red car on a road.'.encode('utf-32'),
    b'  A red car\t\t on a road.  \n\n',
])
def test_caption_encodings(tmp_path, data):
    (tmp_path/'c.txt').write_bytes(data)
    assert read_caption(tmp_path/'c.txt') == 'A red car on a road.'
    assert read_caption(tmp_path/'c.txt', 'repl4ce') == 'repl4ce A red car on a road.'

def test_caption_cp1252_latin1_and_trigger(tmp_path):
    c = tmp_path/'c.txt'
    c.write_bytes('Caf\xe9 \u201cmenu\u201d \u2013 na\xefve'.encode('cp1252'))
    assert read_caption(c) == 'Café “menu” – naïve'
    c.write_bytes(b'caf\xe9 \x81 au lait')  # 0x81 is undefined in cp1252: latin-1, control character dropped
    assert read_caption(c, '  repl4ce  ') == 'repl4ce café au lait'
    c.write_bytes(b'')
    assert read_caption(c, 'repl4ce') == 'repl4ce' and read_caption(None, 'repl4ce') == 'repl4ce' and read_caption(None) == ''
    c.write_bytes(b'repl4ce a car')
    assert read_caption(c, 'repl4ce') == 'repl4ce a car'   # not doubled
    c.write_bytes('Cafe\u0301'.encode())
    assert read_caption(c) == 'Café'                       # NFC

def test_captions_reach_the_triplets(tmp_path):
    root = dataset(tmp_path, TRIPLET)
    (root/'clip01.txt').write_bytes('\ufeffA  car\n'.encode('utf-8'))
    assert find_triplets(root, 'repl4ce')[0].caption == 'repl4ce A car'

# ---- downloads -----------------------------------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.0'
    def log_message(self, *a): pass
    def do_GET(self):
        body = self.server.zip_bytes
        try:
            if self.path == '/ds.zip':
                self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()
                self.wfile.write(body)
            elif self.path == '/huge-declared.zip':
                self.send_response(200); self.send_header('Content-Length', str(50 << 30)); self.end_headers()
            elif self.path == '/huge-streamed.zip':  # no Content-Length: the size shows only while reading
                self.send_response(200); self.end_headers()
                for _ in range(64): self.wfile.write(bytes(64 << 10))
            elif self.path == '/cut.zip':  # promises more than it sends
                self.send_response(200); self.send_header('Content-Length', str(len(body) * 2)); self.end_headers()
                self.wfile.write(body)
            elif self.path == '/page.zip':
                self.send_response(200); self.end_headers(); self.wfile.write(b'<html>login</html>')
            else: self.send_error(404)
        except (BrokenPipeError, ConnectionResetError): pass

@pytest.fixture
def server(tmp_path, monkeypatch):
    for k in ('http_proxy', 'HTTP_PROXY', 'https_proxy', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY'): monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv('no_proxy', '127.0.0.1,localhost')
    srv = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    srv.zip_bytes = make_zip(tmp_path/'served.zip', {f'set/{k}': v for k, v in TRIPLET.items()}).read_bytes()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{srv.server_address[1]}'
    srv.shutdown(); srv.server_close()

def downloads(work)->list[str]:
    d = work/'downloads'
    return sorted(p.name for p in d.iterdir() if not p.name.startswith('.')) if d.exists() else []  # hidden: validators

def test_download_success_and_reuse(server, tmp_path):
    work = tmp_path/'work'
    root = fetch_source(f'{server}/ds.zip', work)
    assert [t.name for t in find_triplets(root)] == ['clip01']
    name, = downloads(work)
    assert name.endswith('-ds.zip') and not name.startswith('.')
    assert fetch_source(f'{server}/ds.zip', work) == root  # reused
    assert downloads(work) == [name]

def test_download_404(server, tmp_path):
    with pytest.raises(RequestError, match=r'missing.zip: the server answered HTTP 404'): fetch_source(f'{server}/missing.zip', tmp_path/'w')
    assert downloads(tmp_path/'w') == []

def test_download_too_big_by_content_length(server, tmp_path):
    with pytest.raises(RequestError, match=r'is 50.0 GiB, more than the 20.0 GiB download limit'):
        fetch_source(f'{server}/huge-declared.zip', tmp_path/'w')
    assert downloads(tmp_path/'w') == []

def test_download_too_big_while_streaming(server, tmp_path):
    with pytest.raises(RequestError, match=r'sent more than the 1.0 MiB download limit'):
        fetch_source(f'{server}/huge-streamed.zip', tmp_path/'w', max_download_bytes=1 << 20)
    assert downloads(tmp_path/'w') == []  # no complete file, no .part left

def test_download_cut_short(server, tmp_path):
    with pytest.raises(RequestError, match='try again'): download_url(f'{server}/cut.zip', tmp_path/'w')
    assert downloads(tmp_path/'w') == []

def test_download_not_a_zip_and_bad_host(server, tmp_path):
    with pytest.raises(RequestError, match='is not a zip archive'): fetch_source(f'{server}/page.zip', tmp_path/'w')
    with pytest.raises(RequestError, match='could not download'): fetch_source('http://127.0.0.1:9/x.zip', tmp_path/'w')

def test_default_workdir_is_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv('LTX_NB_CACHE', str(tmp_path/'cache'))
    root = fetch_source(str(make_zip(tmp_path/'ds.zip', TRIPLET)))
    assert root.parent == tmp_path/'cache'/'data'/'extracted'

def test_a_concurrent_extraction_that_finished_first_is_kept(tmp_path, monkeypatch):
    import ltx_nb.archive as A
    z, folder, real = make_zip(tmp_path/'ds.zip', TRIPLET), tmp_path/'ex', A.safe_extract
    def racing(zip_path, dest, **limits):
        out = real(zip_path, dest, **limits)
        monkeypatch.setattr(A, 'safe_extract', real)
        (A.extract_zip(zip_path, folder)/'winner').write_bytes(b'')  # another process completes meanwhile
        return out
    monkeypatch.setattr(A, 'safe_extract', racing)
    root = extract_zip(z, folder)
    assert (root/'winner').exists() and [p.name for p in folder.iterdir()] == [root.name]
