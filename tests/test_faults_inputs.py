"Input faults: sources refused by type, downloads that never hang, revalidated caches, sane JSON, one-line errors."
import errno, json, os, signal, subprocess, sys, threading, time, warnings
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
from pathlib import Path

import pytest

from ltx_nb.core import RequestError, load_request, load_json, source_problem
from ltx_nb.archive import download_url, fetch_source, fetch_file, find_triplets, refresh_sources
from ltx_nb.cli import main
from ltx_nb.runner import list_runs

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(connect_timeout=2, stall_timeout=2, deadline=20, min_rate=0, rate_window=60)  # tests override one each

def cli(*argv, capsys)->tuple[int, str, str]:
    "Run `ltx-nb` in-process: (exit code, stdout, stderr)."
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err

def one_line(err:str, *needles):
    "The error is one `ltx-nb …:` line (or a titled list) naming every needle, and no traceback."
    assert 'Traceback' not in err and err.startswith('ltx-nb '), err
    for n in needles: assert str(n) in err, (n, err)

@pytest.fixture
def fifo(tmp_path):
    p = tmp_path/'pipe.zip'; os.mkfifo(p)
    return p

# ---------------------------------------------------------------- sources refused by type, before they are opened

def test_source_problem_names_the_kind(tmp_path, fifo):
    assert 'named pipe (FIFO)' in source_problem(fifo)
    assert 'character device' in source_problem('/dev/zero')
    assert source_problem(tmp_path, dirs=True) is None and 'is a folder' in source_problem(tmp_path)

@pytest.mark.parametrize('src', ['fifo', '/dev/zero'])
def test_check_refuses_a_fifo_or_device_as_the_dataset(src, fifo, tmp_path, capsys):
    code, out, err = cli('check', fifo if src == 'fifo' else src, '--workdir', tmp_path/'w', capsys=capsys)
    assert code == 2 and out == ''
    one_line(err, 'training_data_url', 'named pipe' if src == 'fifo' else 'character device')

def test_fetch_source_and_fetch_file_refuse_special_files(fifo, tmp_path):
    with pytest.raises(RequestError, match='named pipe'): fetch_source(str(fifo), tmp_path/'w')
    with pytest.raises(RequestError, match='character device'): fetch_file('/dev/zero', tmp_path/'w')

def test_special_files_inside_a_dataset_are_never_opened(tmp_path):
    d = tmp_path/'ds'; d.mkdir()
    for k in ('start', 'end'): (d/f'clip01_{k}.mp4').write_bytes(b'v')
    (d/'clip01_mask.png').write_bytes(b'm'); os.mkfifo(d/'clip01.txt')  # a caption that would block a reader
    with pytest.raises(RequestError, match=r"triplet 'clip01': .*clip01.txt is a named pipe"): find_triplets(d)

def test_validation_entries_and_request_file_refused_by_type(tmp_path, fifo):
    req = tmp_path/'req.json'
    req.write_text(json.dumps(dict(training_data_url=str(tmp_path), validation=[
        dict(prompt='p', video_url=str(fifo), mask_url='/dev/zero', reference_video_url=str(fifo))])))
    with pytest.raises(RequestError) as e: load_request(req, check_paths=True)
    assert any('validation[0].video_url' in p and 'named pipe' in p for p in e.value.problems), e.value.problems
    assert any('validation[0].mask_url' in p and 'character device' in p for p in e.value.problems), e.value.problems
    rf = tmp_path/'r.json'; os.mkfifo(rf)
    with pytest.raises(RequestError, match='named pipe'): load_request(rf)

def test_sample_flags_refused_by_type(tmp_path, fifo, capsys):
    code, out, err = cli('sample', '--video', fifo, '--mask', '/dev/zero', '--reference', fifo, '--lora', fifo,
                         '--out', tmp_path/'o.mp4', capsys=capsys)
    assert code == 2
    one_line(err, '--video', '--mask', '--lora', 'named pipe', 'character device')

# ---------------------------------------------------------------- JSON a parser chokes on

@pytest.mark.parametrize('name,data,needle', [
    ('deep', b'[' * 200_000, 'nested too deeply'),
    ('nan', b'{"rank": NaN}', 'NaN is not a JSON number'),
    ('inf', b'{"rank": Infinity}', 'Infinity is not a JSON number'),
    ('digits', b'{"rank": ' + b'9' * 5000 + b'}', 'not sane JSON'),
    ('utf8', b'{"trigger_phrase": "\xff\xfe\xfa"}', 'not UTF-8'),
    ('syntax', b'{"rank": 8,', 'not valid JSON at line 1'),
    ('huge', b'{"a": "' + b'x' * (5 * 2**20) + b'"}', 'more than the'),
])
def test_request_json_faults_are_one_line(tmp_path, capsys, name, data, needle):
    p = tmp_path/f'{name}.json'; p.write_bytes(data)
    code, out, err = cli('check', p, capsys=capsys)
    assert code == 2
    one_line(err, p, needle)

def test_boms_are_read(tmp_path):
    for enc in ('utf-8-sig', 'utf-16', 'utf-32'):
        (tmp_path/'r.json').write_bytes(json.dumps({'a': 'é'}).encode(enc))
        assert load_json(tmp_path/'r.json') == {'a': 'é'}

# ---------------------------------------------------------------- run directories and path flags

def test_runs_on_damaged_directories(tmp_path, capsys):
    (tmp_path/'a').mkdir(); (tmp_path/'a'/'progress.json').write_text('{"status": "comp')
    (tmp_path/'b').mkdir(); (tmp_path/'b'/'progress.json').write_bytes(b'[' * 100_000)
    (tmp_path/'c'/'request.json').mkdir(parents=True)
    code, out, err = cli('runs', tmp_path, capsys=capsys)
    assert code == 0 and err == '' and out.count('unreadable') >= 3, out
    assert sorted(r.status for r in list_runs(tmp_path).runs)[:2] == ['unreadable', 'unreadable']
    code, out, err = cli('runs', tmp_path/'a'/'progress.json', capsys=capsys)
    assert code == 2
    one_line(err, 'progress.json', 'is a file, not a folder')

def test_a_file_as_workdir_is_one_line(tmp_path, capsys):
    from ltx_nb.synth import make_triplets
    make_triplets(tmp_path/'ds', n=1, frames=9, size=(64, 64))
    (tmp_path/'file').write_text('x')
    import shutil; shutil.make_archive(str(tmp_path/'ds'), 'zip', tmp_path/'ds')
    capsys.readouterr()
    code, out, err = cli('check', tmp_path/'ds.zip', '--workdir', tmp_path/'file', '--number-of-frames', '9', capsys=capsys)
    assert code == 1
    one_line(err, tmp_path/'file', 'give a folder path')

def test_os_errors_become_one_line_and_debug_shows_the_traceback(monkeypatch, capsys, tmp_path):
    import ltx_nb.cli as C
    def boom(a): raise PermissionError(errno.EACCES, 'Permission denied', str(tmp_path/'locked'))
    monkeypatch.setattr(C, 'cmd_runs', boom)
    code, out, err = cli('runs', tmp_path, capsys=capsys)
    assert code == 1
    one_line(err, 'locked: Permission denied; check its permissions', 'LTX_NB_DEBUG')
    monkeypatch.setenv('LTX_NB_DEBUG', '1')
    with pytest.raises(PermissionError): main(['runs', str(tmp_path)])

# ---------------------------------------------------------------- downloads: never hang

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def send(self, body:bytes, length:int|None=None, headers=()):
        self.send_response(200)
        self.send_header('Content-Length', str(len(body) if length is None else length))
        for k, v in headers: self.send_header(k, v)
        self.end_headers()
    def do_GET(self):
        srv, path = self.server, self.path
        try:
            if path == '/trickle':  # 10 bytes every 50 ms: alive, but far below any sane rate
                self.send(b'', 100_000)
                for _ in range(200): self.wfile.write(b'x' * 10); self.wfile.flush(); time.sleep(0.05)
            elif path == '/stall':  # a few bytes, then silence
                self.send(b'', 100_000); self.wfile.write(b'x' * 10); self.wfile.flush(); time.sleep(30)
            elif path == '/liar':  # promises 1000 bytes, sends 100 and hangs up
                self.send(b'', 1000); self.wfile.write(b'x' * 100)
            elif path == '/mute':  # accepts the connection, never answers
                time.sleep(30)
            elif path == '/steady':  # 20 KB/s for ever: fine for the rate, not for a deadline
                self.send(b'', 10**9)
                for _ in range(600): self.wfile.write(b'x' * 1000); self.wfile.flush(); time.sleep(0.05)
            elif path == '/etag':
                srv.hits.append(self.headers.get('If-None-Match'))
                tag = f'"v{srv.version}"'
                if self.headers.get('If-None-Match') == tag: self.send_response(304); self.end_headers(); return
                self.send(srv.body, headers=[('ETag', tag)]); self.wfile.write(srv.body)
            else: self.send_error(404)
        except (BrokenPipeError, ConnectionResetError): pass

@pytest.fixture
def server(monkeypatch):
    for k in ('http_proxy', 'HTTP_PROXY', 'https_proxy', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY'): monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv('no_proxy', '127.0.0.1,localhost')
    srv = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    srv.daemon_threads, srv.block_on_close = True, False
    srv.hits, srv.version, srv.body = [], 1, b'first'
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    srv.url = f'http://127.0.0.1:{srv.server_address[1]}'
    yield srv
    srv.shutdown(); srv.server_close()

def left(folder:Path)->list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []

@pytest.mark.parametrize('path,limits,needle', [
    ('/trickle', dict(min_rate=10_000, rate_window=0.3), 'below the 9.8 KiB/s minimum (LTX_NB_MIN_RATE)'),
    ('/stall', dict(stall_timeout=0.3), 'no data for 0.3 s after 10 bytes (LTX_NB_STALL_TIMEOUT)'),
    ('/liar', {}, 'the download ended after 100 of 1000 bytes'),
    ('/mute', dict(connect_timeout=0.3), 'no answer within 0.3 s (LTX_NB_CONNECT_TIMEOUT)'),
    ('/steady', dict(deadline=0.4), 'longer than the 0.4 s allowed (LTX_NB_DOWNLOAD_DEADLINE)'),
])
def test_downloads_never_hang_and_leave_nothing(server, tmp_path, path, limits, needle):
    t0 = time.monotonic()
    with pytest.raises(RequestError, match=needle.replace('(', r'\(').replace(')', r'\)')):
        download_url(server.url + path, tmp_path/'dl', **{**FAST, **limits})
    assert time.monotonic() - t0 < 15  # a bound on a hang, not a timing: the limits above are well under a second
    assert left(tmp_path/'dl') == []

def test_download_limits_from_the_environment(server, tmp_path, monkeypatch):
    monkeypatch.setenv('LTX_NB_STALL_TIMEOUT', '0.3')
    with pytest.raises(RequestError, match='LTX_NB_STALL_TIMEOUT'): download_url(server.url + '/stall', tmp_path/'dl')
    monkeypatch.setenv('LTX_NB_MIN_RATE', 'fast')
    with pytest.raises(RequestError, match="LTX_NB_MIN_RATE='fast': not a number"): download_url(server.url + '/stall', tmp_path/'dl')

def test_sigterm_removes_the_partial_file(server, tmp_path):
    folder = tmp_path/'dl'
    code = f"from ltx_nb.archive import download_url; download_url({server.url + '/stall'!r}, {str(folder)!r}, stall_timeout=60)"
    p = subprocess.Popen([sys.executable, '-c', code], env={**os.environ, 'PYTHONPATH': str(ROOT)},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(400):
            if any(n.endswith('.part') for n in left(folder)): break
            time.sleep(0.05)
        assert any(n.endswith('.part') for n in left(folder)), 'the download never started'
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
    finally: p.kill() if p.poll() is None else None
    assert p.returncode != 0 and left(folder) == []

def test_full_disk_advice(server, tmp_path, monkeypatch):
    import ltx_nb.archive as A
    def full(*a, **k): raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(A, '_receive', full)
    server.body = b'x' * 1000
    with pytest.raises(RequestError) as e: download_url(server.url + '/etag', tmp_path/'dl', **FAST)
    msg = str(e.value)
    assert 'disk full' in msg and str(tmp_path/'dl') in msg and 'LTX_NB_CACHE' in msg and '--workdir' in msg, msg
    assert left(tmp_path/'dl') == []

def test_full_disk_refused_up_front(server, tmp_path, monkeypatch):
    import ltx_nb.archive as A, shutil
    monkeypatch.setattr(A.shutil, 'disk_usage', lambda p: shutil._ntuple_diskusage(10, 10, 10))
    server.body = b'x' * 1000
    with pytest.raises(RequestError, match=r'1000 bytes needed, 10 bytes free.*LTX_NB_CACHE'):
        download_url(server.url + '/etag', tmp_path/'dl', **FAST)

# ---------------------------------------------------------------- cached downloads are revalidated

def test_cache_revalidated_by_etag_and_refresh_forces(server, tmp_path):
    url, dl = server.url + '/etag', tmp_path/'dl'
    p = download_url(url, dl, **FAST)
    assert p.read_bytes() == b'first' and server.hits == [None]
    assert download_url(url, dl, **FAST) == p and server.hits[-1] == '"v1"'  # asked, 304: reused
    server.version, server.body = 2, b'second'
    assert download_url(url, dl, **FAST).read_bytes() == b'second'  # changed on the server: fetched again
    download_url(url, dl, refresh=True, **FAST)
    assert server.hits[-1] is None  # --refresh: no conditional request, a whole new download
    assert [n for n in left(dl) if not n.startswith('.')] == [p.name]

def test_unreachable_server_uses_the_cached_copy_with_a_warning(server, tmp_path):
    url, dl = server.url + '/etag', tmp_path/'dl'
    p = download_url(url, dl, **FAST)
    server.shutdown(); server.server_close()
    with pytest.warns(UserWarning, match='cannot be reached'): assert download_url(url, dl, **FAST) == p

def test_refresh_sources_and_the_refresh_flag(server, tmp_path, monkeypatch, capsys):
    from ltx_nb.core import parse_request
    r = parse_request(dict(training_data_url=server.url + '/etag'))
    monkeypatch.setenv('LTX_NB_CACHE', str(tmp_path/'cache'))
    refresh_sources(r); refresh_sources(r)
    assert server.hits == [None, None]
    code, out, err = cli('check', server.url + '/etag', '--refresh', capsys=capsys)  # 'first' is no zip: refused, after a fresh GET
    assert code == 2 and server.hits[-2:] == [None, '"v1"'] and 'is not a zip archive' in err

# ---------------------------------------------------------------- quiet output

def test_no_progress_bars_on_a_pipe(tmp_path):
    from ltx_nb.synth import make_triplets_zip
    z = make_triplets_zip(tmp_path/'ds.zip', n=1, frames=9, size=(64, 64))
    exe = Path(sys.executable).parent/'ltx-nb'
    p = subprocess.run([str(exe), 'check', str(z), '--number-of-frames', '9', '--workdir', str(tmp_path/'w')],
                       capture_output=True, text=True, timeout=300, env={**os.environ, 'PYTHONPATH': str(ROOT)})
    assert p.returncode == 0 and p.stderr == '', p.stderr  # no unpacking or checking bars in a log

def test_job_kernels_do_not_warn_about_tcp(tmp_path):
    code = f"""
import nbformat, papermill as pm
from ltx_nb.runner import _KERNEL_CONFIG
nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('x = 1')])
nb.metadata['kernelspec'] = dict(name='python3', display_name='Python 3', language='python')
nbformat.write(nb, {str(tmp_path/'a.ipynb')!r})
pm.execute_notebook({str(tmp_path/'a.ipynb')!r}, {str(tmp_path/'b.ipynb')!r}, kernel_name='python3', progress_bar=False,
                    config=_KERNEL_CONFIG())
"""
    p = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, 'PYTHONPATH': str(ROOT)})
    assert p.returncode == 0, p.stderr
    assert 'without encryption' not in p.stderr, p.stderr

# ---------------------------------------------------------------- the other entry points: train, run, extraction

@pytest.mark.parametrize('cmd', ['train', 'run'])
def test_train_and_run_refuse_special_validation_files_before_anything_runs(cmd, tmp_path, fifo, capsys):
    from ltx_nb.synth import make_triplets
    make_triplets(tmp_path/'ds', n=1, frames=9, size=(64, 64)); capsys.readouterr()
    req = tmp_path/'req.json'
    req.write_text(json.dumps(dict(training_data_url='ds', validation=[
        dict(prompt='p', video_url=str(fifo), mask_url='/dev/zero', reference_video_url='ds/sample00_start.mp4')])))
    code, out, err = cli(cmd, req, '--run-dir', tmp_path/'run', capsys=capsys)
    assert code == 2 and not (tmp_path/'run').exists()
    one_line(err, 'validation[0].video_url', 'named pipe', 'validation[0].mask_url', 'character device')

def test_full_disk_while_unpacking(tmp_path, monkeypatch):
    import ltx_nb.archive as A, zipfile
    z = tmp_path/'ds.zip'
    with zipfile.ZipFile(z, 'w') as zf: zf.writestr('clip01_end.mp4', b'x' * 100); zf.writestr('clip01_start.mp4', b'y')
    def full(*a, **k): raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(A, '_copy_limited', full)
    with pytest.raises(RequestError, match=r'no space left on the device for the unpacking of ds.zip.*LTX_NB_CACHE'):
        fetch_source(str(z), tmp_path/'w')
    assert not any(p.is_file() for p in (tmp_path/'w').rglob('*')), 'a half-unpacked file was left'
