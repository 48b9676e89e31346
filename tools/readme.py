"""Write README.md from nbs/index.ipynb: markdown cells as they are (pictures under nbs/images/ re-pointed from the
repository root), code cells as python blocks.

nbdev's own `nbdev-readme` renders through Quarto, which cannot be installed offline (its PyPI package downloads the
binary at build time), so this small renderer keeps README.md generated from the notebook. `--check` exits 1 when
README.md is out of date.
"""
import json, sys
from pathlib import Path

def render(nb_path='nbs/index.ipynb'):
    nb = json.loads(Path(nb_path).read_text())
    parts = ["<!-- generated from nbs/index.ipynb by tools/readme.py: edit the notebook, not this file -->"]
    for c in nb['cells']:
        src = ''.join(c['source']).rstrip()
        if not src or src.startswith('#| hide') or '#| hide' in src.splitlines()[:2]: continue
        if c['cell_type'] == 'markdown': parts.append(src.replace('](images/', '](nbs/images/'))  # notebook-relative pictures
        elif c['cell_type'] == 'code':
            lines = [l for l in src.splitlines() if not l.startswith('#|')]
            if lines: parts.append('```python\n' + '\n'.join(lines) + '\n```')
    return '\n\n'.join(parts) + '\n'

if __name__ == '__main__':
    text, out = render(), Path('README.md')
    if '--check' in sys.argv:
        if not out.exists() or out.read_text() != text: sys.exit('README.md is out of date: run python tools/readme.py')
    else: out.write_text(text)
