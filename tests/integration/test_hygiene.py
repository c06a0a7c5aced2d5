"""Source hygiene: no control characters in the package or the notebooks (a `\\f` in LaTeX inside a non-raw string
becomes a form feed), and the package imports without POSIX-only modules (the results table's lock is filelock's)."""
import pytest
import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

pytestmark = pytest.mark.process

ROOT = Path(__file__).parents[2]
CONTROL = re.compile(r'[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\t]')


def test_no_control_characters_in_package_or_notebooks():
    bad = []
    for p in sorted((ROOT/'ratio_losses').glob('*.py')):
        for i, line in enumerate(p.read_text().split('\n'), 1):
            if CONTROL.search(line): bad.append(f'{p.relative_to(ROOT)}:{i}: {line[:60]!r}')
    for p in sorted((ROOT/'nbs').rglob('*.ipynb')):
        for c in json.loads(p.read_text())['cells']:
            src = ''.join(c['source'])
            if CONTROL.search(src): bad.append(f'{p.relative_to(ROOT)}: cell {c.get("id")}')
    assert not bad, 'control characters (write \\\\f or use a raw string):\n' + '\n'.join(bad)


def test_the_package_imports_without_fcntl(tmp_path):
    "As on Windows: with fcntl unavailable, the trainer and the sweeps still import, and the table's lock works."
    code = ("import sys; sys.modules['fcntl'] = None\n"
            "import ratio_losses.training, ratio_losses.sweeps.sweep, ratio_losses.training.results_table as t\n"
            f"with t._locked(__import__('pathlib').Path({str(tmp_path/'results.csv')!r})): pass\n")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def test_parallel_writers_append_whole_rows(tmp_path):
    "Four processes append 100 rows each to one results table at once: 400 whole rows, one header (filelock)."
    code = ("import sys; from ratio_losses.training import append_result, RESULT_COLUMNS\n"
            "for i in range(100): append_result(sys.argv[1], {c: f'{sys.argv[2]}-{i}' for c in RESULT_COLUMNS})\n")
    table = tmp_path/'results.csv'
    procs = [subprocess.Popen([sys.executable, '-c', code, str(table), str(k)]) for k in range(4)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    from ratio_losses.training import read_results
    rows = read_results(table)
    assert len(rows) == 400 and len({r['run_id'] for r in rows}) == 400
    assert table.read_text().count('run_id,') == 1


def test_defaults_live_in_one_place():
    """RunConfig and Launcher hold every default. The experiment notebook's parameters cell (a literal, for papermill and
    its readers) repeats RunConfig's exactly, key for key; the CLI leaves every run-config and launcher option unset (None)
    so the dataclasses decide (`train` sets three of its own, TRAIN_DEFAULTS), and the defaults its help quotes are
    the ones it uses."""
    import ast
    import dataclasses
    from ratio_losses.cli import parser
    from ratio_losses.sweeps.launcher import Launcher
    from ratio_losses.training.config import RunConfig
    nb = json.loads((ROOT/'nbs'/'experiments'/'train.ipynb').read_text())
    cell = next(c for c in nb['cells'] if 'parameters' in c['metadata'].get('tags', []))
    params = {n.targets[0].id: ast.literal_eval(n.value) for n in ast.parse(''.join(cell['source'])).body}
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(RunConfig)}
    assert params == defaults, {k: (params.get(k), defaults.get(k)) for k in set(params) | set(defaults)
                                if params.get(k) != defaults.get(k)}
    p = parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices
    from ratio_losses.cli import TRAIN_DEFAULTS
    for command, cls in (('train', RunConfig), ('sweep', Launcher)):
        fields = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                  for f in dataclasses.fields(cls)}
        if command == 'train':
            fields.update(TRAIN_DEFAULTS)   # `train`'s own defaults (Fashion-MNIST, 1 epoch, batch 128), which its help quotes
        for a in sub[command]._actions:
            if a.dest in fields and not isinstance(a, argparse._StoreTrueAction):
                assert a.default is None, f'{command} --{a.dest}: the CLI sets its own default {a.default!r}'
                if a.help and 'default' in a.help and fields[a.dest] is not None:
                    assert str(fields[a.dest]) in a.help, (command, a.dest, a.help, fields[a.dest])


def test_the_citation_names_this_version_and_the_four_papers():
    "CITATION.cff (validated by cffconvert in `make test`) cites this version, the README's Cite section the same title."
    import yaml
    import ratio_losses
    cff = yaml.safe_load((ROOT/'CITATION.cff').read_text())
    assert cff['version'] == ratio_losses.__version__
    titles = [r['title'] for r in cff['references']]
    assert len(titles) == 4
    for words in ('Competing Ratio Loss', 'CC-Loss', 'Mixture separability loss', 'Fine-grained Recognition'):
        assert sum(words in t for t in titles) == 1, words
    readme = (ROOT/'README.md').read_text()
    cite = readme[readme.index('## Cite'):]
    assert f"title  = {{{cff['title']}}}" in cite and f"Version {cff['version']}" in cite


def _cells(line: str) -> int:
    "The cells of a Markdown table row: `|` outside code spans and not escaped."
    n, code, prev = 0, False, ''
    for ch in line.strip().strip('|'):
        if ch == '`':
            code = not code
        elif ch == '|' and not code and prev != '\\':
            n += 1
        prev = ch
    return n + 1


def test_every_markdown_table_has_as_many_cells_in_each_row_as_in_its_header():
    "A row with a cell too many or too few renders shifted (or not at all): the README, the docs pages, the report."
    bad = []
    pages = [ROOT/'README.md', ROOT/'CHANGELOG.md', ROOT/'figures'/'REPORT.md', *sorted((ROOT/'docs'/'pages').glob('*.md')),
             *sorted((ROOT/'configs').rglob('*.md'))]
    for page in pages:
        lines, fence = page.read_text().splitlines(), False
        block: list[tuple[int, str]] = []
        for i, line in enumerate(lines + [''], 1):
            if line.startswith('```'):
                fence = not fence
            if not fence and line.startswith('|'):
                block.append((i, line))
                continue
            if len(block) >= 2:
                want = _cells(block[0][1])
                bad += [f'{page.relative_to(ROOT)}:{j}: {_cells(l)} cells, the header has {want}'
                        for j, l in block[1:] if _cells(l) != want]
            block = []
    assert not bad, '\n'.join(bad)
