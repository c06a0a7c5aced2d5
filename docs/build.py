"""Build the documentation site offline: the notebooks as pages (nbdev's processor: directives stripped, hidden cells
dropped, `show_doc` API entries added), each paper's analysis page with the committed figures and tables at both
scales, the report, the errata, and the README as the front page; Sphinx + myst-nb render them into `_docs/`.

    python docs/build.py [--out _docs]

Only the package registries are needed (MathJax comes from npm once and is served from the site). The build fails on
a warning: a broken internal link, a missing image, a page no toctree reaches."""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT/'docs'
MATHJAX = '3.2.2'
GUIDE = [('losses', 'Losses'), ('add_a_loss', 'Add your own loss'), ('data', 'Data'), ('models', 'Models'),
         ('experiments', 'Experiments, sweeps, presets'),
         ('executors', 'Where the points run: executors'), ('reproducibility', 'Reproducibility: what holds where'),
         ('figures', 'Figures and tables'), ('benchmarks', 'Benchmarks'), ('layout', 'Layout and working on the notebooks'),
         ('errata', "Errata of the papers' printed equations")]
ANALYSIS = [('crl', 'CRL'), ('cc', 'CC-Loss'), ('msl', 'MSL'), ('fine_grained', 'Fine-grained DB + GCE')]
DIRECTIVE = re.compile(r'^\s*#\|\s?.*$')
DOC_LINK = re.compile(r'\[([^\]]+)\]\((?:(?:https?://[^)\s]*?/)?ratio_losses/|/)([\w.]+)\.html#([\w-]+)\)')   # nbdev's doc links
QUARTO_ATTRS = re.compile(r'(\]\([^)]*\))\{[^}]*\}')            # [source](url){target="_blank" ...} -> [source](url)


def log(msg: str): print(f'docs: {msg}', flush=True)


# --- MathJax, from npm once, served from the site ------------------------------------------------------------------
def mathjax(static: Path) -> None:
    "MathJax 3's tex-chtml bundle and its fonts under `static/mathjax/` (the npm tarball is cached)."
    cache = Path(os.environ.get('RATIO_LOSSES_CACHE', Path.home()/'.cache'/'ratio_losses'))/'npm'
    tgz = cache/f'mathjax-{MATHJAX}.tgz'
    if not tgz.exists():
        cache.mkdir(parents=True, exist_ok=True)
        if shutil.which('npm') is None:
            sys.exit("docs: npm is needed once to fetch MathJax (apt-get install npm), or put "
                     f"mathjax-{MATHJAX}.tgz in {cache}")
        log(f'fetching mathjax@{MATHJAX} from the npm registry')
        subprocess.run(['npm', 'pack', f'mathjax@{MATHJAX}', '--silent'], cwd=cache, check=True, stdout=subprocess.DEVNULL)
    out = static/'mathjax'
    with tarfile.open(tgz) as t:
        for m in t.getmembers():
            name = m.name.removeprefix('package/es5/')
            if m.isfile() and (name == 'tex-chtml.js' or name.startswith('output/chtml/fonts/woff-v2/')):
                m.name = name
                t.extract(m, out, filter='data')


# --- the module notebooks, through nbdev's processor ---------------------------------------------------------------
def processed_notebooks() -> Path:
    "nbdev's doc processing of every notebook but the analysis ones (whose pages are built from the committed figures)."
    from nbdev.serve import proc_nbs
    return proc_nbs(n_workers=max(1, min(4, os.cpu_count() or 1)), skip_folder_re=r'^([_.]|analysis)$',
                    skip_file_re=r'^([_.]|index\.ipynb$)')


def _frontmatter(cell) -> dict:
    text = ''.join(cell['source']).strip().strip('-').strip()
    import yaml
    return yaml.safe_load(text) or {}


def _local_links(text: str, prefix: str = '') -> str:
    "nbdev's links to its (unpublished) doc host made links to this site's API pages and their anchors (raw HTML)."
    import importlib
    def one(m):
        label, page, frag = m.group(1), m.group(2), m.group(3)
        mod = f'ratio_losses.{page}'
        try: names = {n.lower(): n for n in getattr(importlib.import_module(mod), '__all__', [])}   # those have anchors
        except ImportError: return m.group(0)
        name = names.get(frag.lower())
        label = re.sub(r'`([^`]+)`', r'<code>\1</code>', label)
        return f'<a href="{prefix}{page}.html' + (f'#{mod}.{name}' if name else '') + f'">{label}</a>'
    return DOC_LINK.sub(one, text)


def title_cell_rest(nb_path: Path) -> str:
    "What the notebook's first cell holds besides its title and summary (nbdev's front matter keeps only those two)."
    s = ''.join(json.loads(nb_path.read_text())['cells'][0]['source'])
    rest = re.sub(r'^# .*\n*', '', s, count=1)
    return re.sub(r'^>.*(\n(?!\n).*)*\n*', '', rest, count=1).strip()


def convert(nb: dict, module: str | None, rest: str = '') -> tuple[dict, str]:
    """A processed notebook made plain for myst-nb: the front matter as a title and summary, no `#|` lines, the inputs
    of the `show_doc` cells hidden, Quarto's link attributes dropped, and an anchor `module.name` at every API entry."""
    cells, out_file = [], None
    prefix = '' if module else 'api/'                 # the API pages sit in api/; the experiment notebook beside it
    for cell in nb['cells']:
        src = ''.join(cell['source'])
        if cell['cell_type'] == 'raw' and src.lstrip().startswith('---'):
            fm = _frontmatter(cell)
            out_file = fm.get('output-file')
            body = f"# {fm.get('title', '')}\n\n" + (f"{fm['description']}\n" if fm.get('description') else '')
            cells.append({'cell_type': 'markdown', 'metadata': {}, 'source': body})
            if rest: cells.append({'cell_type': 'markdown', 'metadata': {}, 'source': rest})
            continue
        if cell['cell_type'] == 'markdown' and 'THIS FILE WAS AUTOGENERATED' in src: continue
        if cell['cell_type'] == 'code':
            lines = src.splitlines()
            directives = [l for l in lines if DIRECTIVE.match(l)]
            cell['source'] = '\n'.join(l for l in lines if not DIRECTIVE.match(l)).strip('\n')
            tags = cell['metadata'].setdefault('tags', [])
            if any('echo: false' in d for d in directives): tags.append('remove-input')
            for o in cell.get('outputs', []):
                md = o.get('data', {}).get('text/markdown')
                if md is None: continue
                text = _local_links(QUARTO_ATTRS.sub(r'\1', ''.join(md)), prefix)
                text = re.sub(r'^---\s*$', '', text, flags=re.M).strip('\n')   # show_doc's rule: docutils wants none here
                text = re.sub(r'^\[source\]\(https?://[^)]*\)\s*$', '', text, flags=re.M)   # a repository not published
                if module:
                    text = re.sub(r'^(#{2,4}) (\w+)\s*$', lambda m: f'<a id="{module}.{m.group(2)}"></a>\n\n{m.group(1)} {m.group(2)}',
                                  text, count=1, flags=re.M)
                o['data']['text/markdown'] = text
            if not cell['source'] and not cell.get('outputs'): continue
        elif cell['cell_type'] == 'markdown':
            cell['source'] = _local_links(src, prefix)
        cells.append(cell)
    nb['cells'] = cells
    return nb, out_file


def _with_ids(nb: dict) -> dict:
    for i, c in enumerate(nb['cells']): c.setdefault('id', f'cell-{i}')
    nb.setdefault('nbformat', 4); nb['nbformat_minor'] = max(nb.get('nbformat_minor', 5), 5)
    return nb


def module_of(nb_path: Path) -> str | None:
    "The module a notebook exports (`#| default_exp`), or None."
    for c in json.loads(nb_path.read_text())['cells']:
        m = re.search(r'^#\|\s*default_exp\s+(\S+)', ''.join(c['source']), re.M)
        if m: return f'ratio_losses.{m.group(1)}'
    return None


def module_for_page(stem: str) -> str | None:
    "The module an API page documents (pages are named for their module), or None."
    import importlib.util
    name = f'ratio_losses.{stem}'
    return name if importlib.util.find_spec(name) is not None else None


def api_index(module: str, nb: dict) -> dict | None:
    "A closing cell listing every name of the module's `__all__`, each with its anchor (a link where it is documented)."
    import importlib
    mod = importlib.import_module(module)
    names = list(getattr(mod, '__all__', []))
    outputs = ''.join(''.join(o.get('data', {}).get('text/markdown', '')) for c in nb['cells'] for o in c.get('outputs', []))
    documented = set(re.findall(rf'<a id="{re.escape(module)}\.(\w+)">', outputs))
    rows = []
    for n in names:
        obj = getattr(mod, n)
        home = getattr(obj, '__module__', module) if callable(obj) else module
        if n in documented: rows.append(f'- <a href="#{module}.{n}"><code>{n}</code></a>')
        elif home != module and home.startswith('ratio_losses.'):
            rows.append(f'- <a id="{module}.{n}"></a>`{n}`: from <a href="{home.split(".")[-1]}.html#{home}.{n}"><code>{home}</code></a>')
        elif callable(obj):
            kind = 'class' if isinstance(obj, type) else 'function'
            rows.append(f'- <a id="{module}.{n}"></a>`{n}`: a {kind} (its docstring: {_first_line(obj)})')
        else:
            rows.append(f'- <a id="{module}.{n}"></a>`{n}` = `{_short_repr(obj)}`')
    if not rows: return None
    return {'cell_type': 'markdown', 'metadata': {}, 'source': f'## Exported names of `{module}`\n\n' + '\n'.join(rows) + '\n'}


def _first_line(obj) -> str:
    doc = (getattr(obj, '__doc__', None) or '').strip().split('\n')[0]
    return doc.replace('`', '') or 'none'


def _short_repr(obj) -> str:
    r = repr(obj) if not isinstance(obj, type) else obj.__name__
    r = r.replace('`', "'").replace('\n', ' ')
    return r if len(r) <= 90 else r[:87] + '...'


# --- the analysis pages, from the committed figures and tables -----------------------------------------------------
def saved(code: str, method: str) -> list[str]:
    "The stems a cell passes to `study.save(fig, stem)` or `study.table(rows, stem, ...)`, in order."
    import ast
    out = []
    for node in ast.walk(ast.parse(code)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == method
                and isinstance(node.func.value, ast.Name) and node.func.value.id == 'study' and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
            out.append((node.lineno, node.col_offset, node.args[1].value))
    return [stem for *_, stem in sorted(out)]


def analysis_page(name: str, title: str) -> str:
    """The analysis notebook `name` as a page: its prose and code, and after each cell that saves a figure or a table,
    that figure or table as committed, at the cpu scale and (where it exists) the full scale. Nothing is run."""
    nb = json.loads((ROOT/'nbs'/'analysis'/f'{name}.ipynb').read_text())
    out = []
    for cell in nb['cells']:
        s = ''.join(cell['source'])
        if cell['cell_type'] == 'markdown':
            out.append(s); continue
        code = '\n'.join(l for l in s.splitlines() if not DIRECTIVE.match(l)).strip('\n')
        if not code: continue
        out.append(f'```python\n{code}\n```')
        for stem in saved(code, 'save'):
            for scale, folder in (('cpu scale', 'figures'), ('full scale', 'figures/full')):
                if (ROOT/folder/f'{stem}.png').exists():
                    out.append(f'**{scale}** (`{folder}/{stem}.png`)\n\n![{stem}, {scale}]({folder}/{stem}.png)')
        for stem in saved(code, 'table'):
            for scale, folder in (('cpu scale', 'figures'), ('full scale', 'figures/full')):
                md = ROOT/folder/f'{stem}.md'
                if md.exists():
                    body = re.sub(r'^### ', '#### ', md.read_text(), flags=re.M)
                    out.append(f'**{scale}** (`{folder}/{stem}.md`)\n\n{body}')
    text = '\n\n'.join(out)
    text = re.sub(r'^# .*$', f'# {title}: figures and tables', text, count=1, flags=re.M)
    return text + '\n'


# --- the front page: the README, links rewritten ---------------------------------------------------------------------
def front_page(readme: str) -> str:
    "The README as the site's index: links to docs/ pages, the report and the notebooks point at their pages."
    text = readme
    text = re.sub(r'\]\(docs/(?:pages/)?([\w-]+)\.md(#[^)]*)?\)', lambda m: f']({m.group(1)}.md{m.group(2) or ""})', text)
    text = text.replace('](figures/REPORT.md)', '](report.md)')
    return text


def toctree(caption: str, entries: list[str]) -> str:
    return '```{toctree}\n:caption: ' + caption + '\n:maxdepth: 1\n\n' + '\n'.join(entries) + '\n```\n'


# --- links: every internal link and image of the built site must resolve ------------------------------------------
class _Links(HTMLParser):
    def __init__(self):
        super().__init__(); self.ids, self.refs = set(), []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get('id'): self.ids.add(a['id'])
        if tag == 'a' and a.get('name'): self.ids.add(a['name'])
        for key in ('href', 'src'):
            if a.get(key) and not (tag == 'link' and a.get('rel') in ('canonical',)): self.refs.append(a[key])


def broken_links(site: Path) -> list[str]:
    "Every relative link or image of the site's pages whose file or anchor does not exist, as 'page: link'."
    pages = {}
    for f in site.rglob('*.html'):
        if '_static' in f.relative_to(site).parts: continue
        p = _Links(); p.feed(f.read_text(errors='replace')); pages[f.resolve()] = p
    bad = []
    for f, p in pages.items():
        for ref in p.refs:
            u = urlsplit(ref)
            if u.scheme or u.netloc or ref.startswith(('mailto:', 'javascript:', 'data:')): continue
            target = (f.parent/unquote(u.path)).resolve() if u.path else f
            if target.is_dir(): target = target/'index.html'
            if not target.exists(): bad.append(f'{f.relative_to(site.resolve())}: {ref}'); continue
            if u.fragment and target.suffix == '.html' and unquote(u.fragment) not in pages[target].ids:
                bad.append(f'{f.relative_to(site.resolve())}: {ref} (no such anchor)')
    return sorted(set(bad))


# --- the build ---------------------------------------------------------------------------------------------------------
def build(out: Path) -> Path:
    t0 = time.time()
    src = ROOT/'_docs_src'
    if src.exists(): shutil.rmtree(src)
    (src/'_static').mkdir(parents=True); (src/'api').mkdir()
    shutil.copy(DOCS/'conf.py', src/'conf.py')
    shutil.copy(DOCS/'custom.css', src/'_static'/'custom.css')
    mathjax(src/'_static')
    shutil.copytree(ROOT/'figures', src/'figures', ignore=shutil.ignore_patterns('*.pdf', '*.csv', '*.md'))
    for name, _ in GUIDE: shutil.copy(DOCS/'pages'/f'{name}.md', src/f'{name}.md')
    log('processing the notebooks (nbdev) ...')
    proc = processed_notebooks()
    api = []
    for nb_path in sorted((ROOT/'nbs').glob('*.ipynb')):
        if nb_path.name == 'index.ipynb': continue
        module = module_of(nb_path)
        nb, out_file = convert(json.loads((proc/nb_path.name).read_text()), module, title_cell_rest(nb_path))
        if module:
            idx = api_index(module, nb)
            if idx: nb['cells'].append(idx)
        stem = Path(out_file).stem if out_file else nb_path.stem
        (src/'api'/f'{stem}.ipynb').write_text(json.dumps(_with_ids(nb)))
        api.append(f'api/{stem}')
    nb, _ = convert(json.loads((proc/'experiments'/'train.ipynb').read_text()), None,
                    title_cell_rest(ROOT/'nbs'/'experiments'/'train.ipynb'))
    (src/'experiment_notebook.ipynb').write_text(json.dumps(_with_ids(nb)))
    for name, title in ANALYSIS: (src/f'analysis_{name}.md').write_text(analysis_page(name, title))
    report = (ROOT/'figures'/'REPORT.md').read_text()
    (src/'report.md').write_text(re.sub(r'\]\((?!https?:|#)([^)]+)\)', r'](figures/\1)', report))
    index = front_page((ROOT/'README.md').read_text())
    index += '\n' + toctree('Guide', [n for n, _ in GUIDE]) + toctree('Results', ['report'] + [f'analysis_{n}' for n, _ in ANALYSIS])
    index += toctree('Experiment', ['experiment_notebook']) + toctree('API: one page per module notebook', api)
    (src/'index.md').write_text(index)
    log(f'sphinx-build ({len(api)} module pages, {len(ANALYSIS)} analysis pages, {len(GUIDE)} guide pages) ...')
    if out.exists(): shutil.rmtree(out)
    r = subprocess.run([sys.executable, '-m', 'sphinx', '-b', 'html', '-W', '--keep-going', '-q', '-j', 'auto',
                        str(src), str(out)], cwd=ROOT)
    if r.returncode: sys.exit(f'docs: sphinx-build failed (exit {r.returncode}); its warnings are above')
    shutil.rmtree(out.parent/'jupyter_execute', ignore_errors=True)    # myst-nb's copies of the outputs, beside the site
    bad = broken_links(out)
    if bad:
        print('\n'.join(bad[:50]), file=sys.stderr)
        sys.exit(f'docs: {len(bad)} broken internal link(s) in {out}/ (the first are above)')
    size = sum(f.stat().st_size for f in out.rglob('*') if f.is_file())
    log(f'built {out}/ in {time.time() - t0:.0f} s, {size / 1e6:.1f} MB; open {out}/index.html')
    return out


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default=str(ROOT/'_docs'), help='where the site goes (default: _docs/)')
    build(Path(ap.parse_args().out).resolve())
