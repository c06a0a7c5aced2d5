"""The documentation site: built offline by docs/build.py, served by an HTTP server on 127.0.0.1 that the tests start
and stop (by PID), and opened in headless Chromium (Debian's chromium and chromium-driver, through Selenium): every
page's title and heading, every image loaded, math typeset by the site's own MathJax, an anchor for every exported
name, no `#|` directive left, no request that leaves the local server, and no broken internal link."""
import importlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT/'docs'))
import build as docs_build  # noqa: E402

pytestmark = pytest.mark.browser

CHROMIUM, DRIVER = shutil.which('chromium'), shutil.which('chromedriver')
if not (CHROMIUM and DRIVER) and os.environ.get('CI'):
    raise RuntimeError("the docs tests need Debian's chromium and chromium-driver: run `make browser` (make test-all does)")
needs_browser = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver (make browser)")


@pytest.fixture(scope='session')
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp('site')/'_docs'
    t = time.time()
    subprocess.run([sys.executable, str(ROOT/'docs'/'build.py'), '--out', str(out)], cwd=ROOT, check=True, timeout=900)
    size = sum(f.stat().st_size for f in out.rglob('*') if f.is_file())
    print(f'site built in {time.time() - t:.0f} s, {size / 1e6:.1f} MB')
    return out


@pytest.fixture(scope='session')
def server(site):
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    p = subprocess.Popen([sys.executable, '-m', 'http.server', str(port), '--bind', '127.0.0.1', '--directory', str(site)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.time() + 30
        while time.time() < end:
            try:
                with socket.create_connection(('127.0.0.1', port), timeout=1): break
            except OSError: time.sleep(0.1)
        else: raise AssertionError('the HTTP server did not start within 30 s')
        yield f'http://127.0.0.1:{port}/'
    finally:
        p.terminate()
        try: p.wait(timeout=10)
        except subprocess.TimeoutExpired: p.kill(); p.wait()
    assert p.poll() is not None


@pytest.fixture(scope='session')
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    o = webdriver.ChromeOptions()
    o.binary_location = CHROMIUM
    for flag in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync',
                 '--disable-default-apps', '--disable-quic', '--window-size=1280,1000',
                 f'--user-data-dir={tmp_path_factory.mktemp("chromium")}'):
        o.add_argument(flag)
    o.set_capability('goog:loggingPrefs', {'performance': 'ALL'})
    d = webdriver.Chrome(service=Service(DRIVER), options=o)
    d.set_page_load_timeout(60); d.set_script_timeout(60)
    yield d
    d.quit()


def _pages(site):
    return sorted(str(f.relative_to(site)) for f in site.rglob('*.html') if '_static' not in f.relative_to(site).parts)


def _requests(driver) -> list[str]:
    "The URLs the page asked for since the last call (Chromium's performance log)."
    urls = []
    for entry in driver.get_log('performance'):
        msg = json.loads(entry['message'])['message']
        if msg.get('method') == 'Network.requestWillBeSent': urls.append(msg['params']['request']['url'])
    return urls


def _open(driver, url):
    driver.get(url)
    driver.execute_async_script("""const done = arguments[arguments.length - 1];
        const imgs = Array.from(document.images).map(i => i.complete ? Promise.resolve() :
            new Promise(r => { i.onload = r; i.onerror = r; }));
        const mj = (window.MathJax && MathJax.startup && MathJax.startup.promise) || Promise.resolve();
        Promise.all([...imgs, mj]).then(() => done(true));""")


@needs_browser
def test_every_page_in_a_real_browser(site, server, browser):
    shots = os.environ.get('RATIO_LOSSES_DOCS_SCREENSHOTS')
    pages, offsite, math_pages = _pages(site), [], 0
    assert {'index.html', 'report.html', 'errata.html', 'experiment_notebook.html', 'api/losses.crl.html',
            'analysis_crl.html', 'analysis_fine_grained.html'} <= set(pages)
    _requests(browser)                                       # drop what came before
    for page in pages:
        _open(browser, server + page)
        title = browser.title
        h1 = browser.execute_script("return Array.from(document.querySelectorAll('h1')).map(h => h.innerText.trim()).find(t => t) || ''")
        assert title.strip() and h1.strip(), f'{page}: title {title!r}, heading {h1!r}'
        bad_imgs = browser.execute_script(
            "return Array.from(document.images).filter(i => !(i.naturalWidth > 0)).map(i => i.getAttribute('src'))")
        assert not bad_imgs, f'{page}: images that did not load: {bad_imgs}'
        text = browser.execute_script('return document.body.innerText')
        left = re.search(r'(?m)^[ \t]*#\|.*$', text)             # a directive line (prose may name one inline)
        assert not left, f'{page}: a nbdev directive is left: {left.group(0)!r}'
        math = browser.execute_script("""const m = Array.from(document.querySelectorAll('.math'));
            return [m.length, m.filter(e => !e.querySelector('mjx-container')).length]""")
        assert math[1] == 0, f'{page}: {math[1]} of {math[0]} formulas were not typeset by MathJax'
        math_pages += math[0] > 0
        offsite += [(page, u) for u in _requests(browser) if u.startswith(('http', 'ws', 'ftp')) and not u.startswith(server)]
        if shots:
            Path(shots, page).parent.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(Path(shots, page).with_suffix('.png')))
    assert not offsite, f'requests that left the local server: {offsite[:10]}'
    assert math_pages >= 5, f'only {math_pages} pages with typeset math'
    scripts = browser.execute_script("return Array.from(document.scripts).map(s => s.src).filter(s => s.includes('mathjax'))")
    assert all(s.startswith(server) for s in scripts)


@needs_browser
def test_an_api_anchor_for_every_exported_name(site, server, browser):
    missing = []
    for page in sorted((site/'api').glob('*.html')):
        module = docs_build.module_for_page(page.stem)
        if module is None: continue
        names = list(getattr(importlib.import_module(module), '__all__', []))
        _open(browser, server + f'api/{page.name}')
        found = browser.execute_script("return arguments[0].filter(id => document.getElementById(id) !== null)",
                                       [f'{module}.{n}' for n in names])
        missing += [f'{module}.{n}' for n in names if f'{module}.{n}' not in found]
    assert not missing, f'{len(missing)} exported names without an anchor: {missing[:20]}'


@needs_browser
def test_analysis_pages_show_both_scales_from_the_committed_figures(site, server, browser):
    "Each figure an analysis notebook saves is on its page as committed: the cpu scale, and the full scale where it exists."
    for name in ('crl', 'cc', 'msl', 'fine_grained'):
        nb = json.loads((ROOT/'nbs'/'analysis'/f'{name}.ipynb').read_text())
        stems = {st for c in nb['cells'] if c['cell_type'] == 'code' for st in docs_build.saved(''.join(c['source']), 'save')}
        _open(browser, server + f'analysis_{name}.html')
        alts = browser.execute_script("return Array.from(document.images).filter(i => i.naturalWidth > 0).map(i => i.alt)")
        for scale, folder in (('cpu scale', 'figures'), ('full scale', 'figures/full')):
            want = {s for s in stems if (ROOT/folder/f'{s}.png').exists()}
            shown = {a.rsplit(', ', 1)[0] for a in alts if a.endswith(scale)}
            assert shown == want, f'analysis_{name}, {scale}: shown {sorted(shown)}, committed {sorted(want)}'
        assert any(a.endswith('cpu scale') for a in alts)
        text = browser.execute_script('return document.body.innerText')
        tables = {st for c in nb['cells'] if c['cell_type'] == 'code' for st in docs_build.saved(''.join(c['source']), 'table')}
        for folder in ('figures', 'figures/full'):
            for st in tables:
                md = ROOT/folder/f'{st}.md'
                if not md.exists(): continue
                first_row = next(l for l in md.read_text().splitlines() if l.startswith('| ') and not l.startswith('| setting'))
                cell = first_row.split('|')[1].strip()
                assert cell.replace('`', '') in text, f'analysis_{name}: table {folder}/{st}.md is not on the page'


def test_the_link_checker_finds_a_broken_link(tmp_path):
    (tmp_path/'a.html').write_text('<a href="b.html#here">b</a> <a href="#top">top</a> <img src="missing.png">')
    (tmp_path/'b.html').write_text('<h1 id="there">b</h1>')
    assert docs_build.broken_links(tmp_path) == ['a.html: #top (no such anchor)', 'a.html: b.html#here (no such anchor)',
                                                 'a.html: missing.png']


def test_the_built_site_has_no_broken_internal_link(site):
    assert docs_build.broken_links(site) == []


def test_readme_is_the_front_page(site):
    "The docs index is generated from the README (one source): every README line is on the front page's source."
    index = (ROOT/'_docs_src'/'index.md').read_text()
    assert index.startswith(docs_build.front_page((ROOT/'README.md').read_text()))
    assert 'docs/pages/' not in index                          # the links to the guide point at its pages


def test_make_lab_serves_the_notebooks_with_the_project_kernel(tmp_path):
    "`make lab` started for real (no browser, a token, a free port on 127.0.0.1), asked over HTTP, stopped by PID."
    import signal
    import urllib.request
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    args = f'--no-browser --ServerApp.ip=127.0.0.1 --IdentityProvider.token=t --ServerApp.runtime_dir={tmp_path}'
    p = subprocess.Popen(['make', '-s', 'lab', f'LAB_PORT={port}', f'LAB_ARGS={args}'], cwd=ROOT, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, 'JUPYTER_RUNTIME_DIR': str(tmp_path)})
    get = lambda path: json.loads(urllib.request.urlopen(f'http://127.0.0.1:{port}{path}?token=t', timeout=5).read())
    try:
        end, specs = time.time() + 90, None
        while time.time() < end and p.poll() is None:
            try: specs = get('/api/kernelspecs'); break
            except OSError: time.sleep(0.5)
        died = p.stderr.read().decode()[-2000:] if p.poll() is not None else ''
        assert specs is not None, f'JupyterLab did not answer within 90 s: {died}'
        assert specs['default'] == 'ratio_losses' and 'ratio_losses' in specs['kernelspecs']
        names = {c['name'] for c in get('/api/contents/')['content']}
        assert {'00_core.ipynb', '04j_training.train.ipynb', 'experiments', 'analysis'} <= names     # the server's root is nbs/
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        try: p.wait(timeout=30)
        except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL); p.wait()


@needs_browser
def test_the_request_log_sees_a_request_that_leaves(site, server, browser):
    "The check on requests can fail: a page that loads an image from elsewhere shows that request in the log."
    probe = site/'offsite-probe.html'
    probe.write_text('<html><head><title>probe</title></head><body><h1>probe</h1>'
                     '<img src="http://192.0.2.1/pixel.png"></body></html>')      # TEST-NET-1: never answers
    try:
        _requests(browser)
        browser.get(server + probe.name)
        assert 'http://192.0.2.1/pixel.png' in _requests(browser)
    finally:
        probe.unlink()


def test_no_prose_of_a_notebook_is_lost(site):
    """Every markdown cell of every module notebook and of the experiment notebook is on its page, the first cell's prose
    beyond its title and summary included: the doc processing drops none."""
    import html
    norm = lambda t: re.sub(r'[^0-9a-z]+', '', t.lower())
    lost = []
    for nb_path in sorted((ROOT/'nbs').glob('*.ipynb')) + [ROOT/'nbs'/'experiments'/'train.ipynb']:
        if nb_path.name == 'index.ipynb': continue
        if nb_path.parent.name == 'experiments': page = site/'experiment_notebook.html'
        else: page = site/'api'/f"{docs_build.module_of(nb_path).split('.', 1)[1]}.html"
        text = norm(html.unescape(re.sub(r'<[^>]+>', ' ', page.read_text())))
        cells = json.loads(nb_path.read_text())['cells']
        prose = [docs_build.title_cell_rest(nb_path)] + [''.join(c['source']) for c in cells[1:] if c['cell_type'] == 'markdown']
        for s in prose:
            first = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', s.split('\n')[0])
            if '$' in first: continue                       # math is typeset: its source is not the page's text
            probe = norm(first)[:40]
            if probe and probe not in text: lost.append(f'{nb_path.name}: {first[:60]!r}')
    assert not lost, f'{len(lost)} markdown cells missing from their pages: {lost[:10]}'
