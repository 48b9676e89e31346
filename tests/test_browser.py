"""The viewers in a real browser: JupyterLab on loopback, a notebook run in headless Chromium, the slider moved.

Needs Debian's chromium (`apt-get install -y chromium`; `make test` installs it) and the `playwright` package from the
`dev` extra; Playwright's own browser downloads are not used."""
import json, os, secrets, signal, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest
from conftest import STEPS

CHROMIUM = Path(os.environ.get('LTX_NB_CHROMIUM', '/usr/bin/chromium'))  # Debian's; override for another build
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync']

def _free_port()->int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]

def _notebook(path:Path, *sources:str):
    cells = [dict(cell_type='code', metadata={}, source=s, outputs=[], execution_count=None) for s in sources]
    path.write_text(json.dumps(dict(cells=cells, nbformat=4, nbformat_minor=4, metadata=dict(
        kernelspec=dict(name='python3', display_name='Python 3', language='python')))))

@pytest.fixture
def sync_api():
    "Playwright's sync API, or a skip naming what to install."
    if not CHROMIUM.exists(): pytest.skip(f'{CHROMIUM} is missing: apt-get install -y chromium (make test does it), or set LTX_NB_CHROMIUM')
    return pytest.importorskip('playwright.sync_api', reason='pip install -e ".[dev]" (playwright)')

@pytest.fixture
def lab(tmp_path):
    "A JupyterLab server on 127.0.0.1 serving `tmp_path/'root'`: yields (base url, token, root); stopped afterwards."
    root, home = tmp_path/'root', tmp_path/'home'
    root.mkdir(); home.mkdir()
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home/'config'), JUPYTER_RUNTIME_DIR=str(home/'runtime'),
               IPYTHONDIR=str(home/'ipython'), JUPYTER_PLATFORM_DIRS='1')
    log = open(tmp_path/'lab.log', 'w')
    proc = subprocess.Popen([sys.executable, '-m', 'jupyterlab', '--no-browser', '--ServerApp.ip=127.0.0.1',
                             f'--ServerApp.port={port}', '--ServerApp.port_retries=0', f'--IdentityProvider.token={token}',
                             f'--ServerApp.root_dir={root}', f'--LabApp.workspaces_dir={home/"workspaces"}',
                             '--ServerApp.terminals_enabled=False', '--LabApp.news_url=',
                             '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate',
                             *(['--allow-root'] if os.geteuid() == 0 else [])],
                            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f'http://127.0.0.1:{port}'
    try:
        for _ in range(300):
            if proc.poll() is not None: pytest.fail(f'jupyter lab exited: {(tmp_path/"lab.log").read_text()[-2000:]}')
            try:
                urllib.request.urlopen(f'{url}/api/status?token={token}', timeout=1)
                break
            except OSError: time.sleep(0.2)
        else: pytest.fail(f'jupyter lab did not answer: {(tmp_path/"lab.log").read_text()[-2000:]}')
        yield url, token, root
    finally:
        try: urllib.request.urlopen(urllib.request.Request(f'{url}/api/shutdown?token={token}', method='POST'), timeout=5)
        except OSError: pass
        try: proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL); proc.wait()
        log.close()

@pytest.mark.timeout(240)
def test_validation_viewer_in_chromium(sync_api, lab, tmp_path, validated_run):
    import shutil
    url, token, root = lab
    shutil.copytree(validated_run, root/'run')
    _notebook(root/'viewer.ipynb', 'from ltx_nb.viewers import ValidationViewer\nValidationViewer("run", height=160)')

    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(tmp_path/'chromium-profile'), executable_path=str(CHROMIUM),
                                                   headless=True, args=FLAGS, viewport=dict(width=1280, height=900))
        try:
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            page.set_default_timeout(60_000)
            page.goto(f'{url}/lab/tree/viewer.ipynb?token={token}')
            page.locator('.jp-Notebook .jp-Cell').first.wait_for()
            page.wait_for_function("() => document.querySelector('.jp-Dialog') ||"
                                   " document.body.innerText.includes('Python 3 (ipykernel) | Idle')")
            select = page.locator('.jp-Dialog .jp-mod-accept')
            if select.count(): select.click()                           # "Select Kernel", should Lab ask
            page.locator('.lm-MenuBar-itemLabel', has_text='Run').first.click()
            page.locator('.lm-Menu-itemLabel', has_text='Run All Cells').first.click()

            images = page.locator('.jp-OutputArea img.widget-image')
            images.nth(3).wait_for()                                    # source, reference, step A, step B
            page.wait_for_function("() => [...document.querySelectorAll('.jp-OutputArea img.widget-image')]"
                                   ".slice(0, 4).every(i => i.complete && i.naturalWidth > 0)")
            source = images.nth(0)
            src, pixels = source.get_attribute('src'), source.screenshot()
            page.screenshot(path=str(tmp_path/'before.png'))

            handle = page.locator('.jp-OutputArea .widget-slider .noUi-handle').first
            handle.focus()
            for _ in range(4): page.keyboard.press('ArrowRight')
            page.wait_for_function("s => document.querySelector('.jp-OutputArea img.widget-image').src !== s", arg=src)
            page.wait_for_function("() => { const i = document.querySelector('.jp-OutputArea img.widget-image');"
                                   " return i.complete && i.naturalWidth > 0 }")
            assert source.get_attribute('src') != src
            assert page.locator('.jp-OutputArea .widget-readout').first.inner_text().strip() == '4'
            assert source.screenshot() != pixels                       # the picture itself changed, not just the URL
            page.screenshot(path=str(tmp_path/'after.png'))
        finally:
            try: page.screenshot(path=str(tmp_path/'last.png'))
            except Exception: pass
            ctx.close()

def _open_notebook(page, url, token, name):
    "Open `name` in Lab, accept a kernel dialog should one come, wait until it is idle."
    page.goto(f'{url}/lab/tree/{name}?token={token}')
    page.locator('.jp-Notebook .jp-Cell').first.wait_for()
    page.wait_for_function("() => document.querySelector('.jp-Dialog') ||"
                           " document.body.innerText.includes('Python 3 (ipykernel) | Idle')")
    select = page.locator('.jp-Dialog .jp-mod-accept')
    if select.count(): select.click()

@pytest.mark.timeout(420)  # the session's validated_run may be trained inside it
def test_open_run_in_chromium_and_its_saved_pictures(sync_api, lab, tmp_path, validated_run):
    "open_run: filmstrip, checkpoint picker, sample; saved and reopened without the kernel's widgets, the PNGs show."
    import shutil
    url, token, root = lab
    shutil.copytree(validated_run, root/'run')
    _notebook(root/'run.ipynb', 'from ltx_nb.viewers import open_run\nopen_run("run", height=96)')
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(tmp_path/'chromium-profile'), executable_path=str(CHROMIUM),
                                                   headless=True, args=FLAGS, viewport=dict(width=1400, height=1000))
        try:
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            page.set_default_timeout(90_000)
            _open_notebook(page, url, token, 'run.ipynb')
            page.locator('.lm-MenuBar-itemLabel', has_text='Run').first.click()
            page.locator('.lm-Menu-itemLabel', has_text='Run All Cells').first.click()
            out = page.locator('.jp-OutputArea')
            out.locator('button.jupyter-button', has_text=f'step {STEPS // 2}').first.click()  # the filmstrip's middle step → B
            out.get_by_text(f'result · step {STEPS // 2} (B)').wait_for()
            assert out.locator('.jp-OutputArea-child:has(.ltx-nb-live) + .jp-OutputArea-child').is_hidden()  # live: no copy
            out.locator('.widget-dropdown', has_text='checkpoint').locator('select').select_option(f'step-{STEPS // 2:06d}')
            out.locator('button.jupyter-button', has_text='sample').click()
            out.get_by_text(f'step-{STEPS // 2:06d} on entry 0').wait_for()
            out.get_by_text(f'sampled: step-{STEPS // 2:06d} · entry 0').wait_for()
            page.wait_for_timeout(1000)                                                   # the static picture's last update
            page.screenshot(path=str(tmp_path/'open_run.png'))
            page.locator('.jp-Notebook').click(); page.keyboard.press('Control+s')
            pngs = []
            for _ in range(100):
                try: nb = json.loads((root/'run.ipynb').read_text())
                except json.JSONDecodeError: nb = {'cells': []}                          # read while the server writes it
                pngs = [o for c in nb['cells'] for o in c.get('outputs', []) if 'image/png' in o.get('data', {})]
                if pngs: break
                time.sleep(0.2)
            assert pngs, 'the saved notebook holds no static picture'
            shutil.copy(root/'run.ipynb', root/'saved.ipynb')
            ctx.close()
            for k in json.load(urllib.request.urlopen(f'{url}/api/kernels?token={token}')):     # no kernel keeps the models
                urllib.request.urlopen(urllib.request.Request(f"{url}/api/kernels/{k['id']}?token={token}", method='DELETE'))
            ctx = p.chromium.launch_persistent_context(str(tmp_path/'chromium-profile-2'), executable_path=str(CHROMIUM),
                                                       headless=True, args=FLAGS, viewport=dict(width=1400, height=1000))
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            page.set_default_timeout(90_000)
            _open_notebook(page, url, token, 'saved.ipynb')
            page.locator('.jp-Notebook :text("Error displaying widget: model not found"):visible').first.wait_for()  # as seen
            page.wait_for_function("() => [...document.querySelectorAll('.jp-OutputArea .jp-RenderedImage img')]"
                                   ".some(i => i.offsetParent && i.complete && i.naturalWidth > 200)")  # ... and the picture
            page.screenshot(path=str(tmp_path/'saved.png'))
        finally:
            try: page.screenshot(path=str(tmp_path/'last.png'))
            except Exception: pass
            ctx.close()
