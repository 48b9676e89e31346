"""Convert between notebooks and a plain 'percent' text form that is easy to edit and review.

    python tools/nbsrc.py py nbs/00_core.ipynb            # -> .nbsrc/00_core.py (git-ignored scratch copy)
    python tools/nbsrc.py nb .nbsrc/00_core.py nbs/00_core.ipynb

Cells start with `# %%` (code), `# %% [markdown]` (markdown; each line prefixed with '# '),
optionally followed by ` tags=["parameters"]`. The notebook stays the source of truth: convert, edit, convert back,
then `nbdev-export` and `nbdev-clean`. Converting back keeps the id, outputs and execution count of every code cell
whose source is unchanged, so a committed notebook's outputs survive an edit elsewhere in it.
"""
import json, re, sys, hashlib
from pathlib import Path

HDR = re.compile(r'^# %%(?: \[(markdown)\])?(?: tags=(\[.*\]))?\s*$')

def _old_cells(dst)->dict:
    "Code cells of the notebook being replaced, by source text (the first of equal sources wins)."
    if not Path(dst).exists(): return {}
    old = {}
    for c in json.loads(Path(dst).read_text()).get('cells', []):
        if c['cell_type'] == 'code': old.setdefault(''.join(c['source']).rstrip('\n'), c)
    return old

def to_nb(src, dst):
    old = _old_cells(dst)
    cells, cur = [], None
    for line in Path(src).read_text().splitlines():
        m = HDR.match(line)
        if m:
            cur = dict(kind='markdown' if m.group(1) else 'code', tags=json.loads(m.group(2)) if m.group(2) else [], lines=[])
            cells.append(cur); continue
        if cur is None: continue
        cur['lines'].append(line)
    nb_cells, kept = [], set()
    for i, c in enumerate(cells):
        lines = c['lines']
        while lines and not lines[-1].strip(): lines.pop()
        if c['kind'] == 'markdown': lines = [l[2:] if l.startswith('# ') else l[1:] if l.startswith('#') else l for l in lines]
        text = '\n'.join(lines)
        meta = {'tags': c['tags']} if c['tags'] else {}
        cid = hashlib.sha1(f"{Path(dst).stem}-{i}".encode()).hexdigest()[:8]
        cell = dict(cell_type=c['kind'], id=cid, metadata=meta, source=text.splitlines(True))
        if c['kind'] == 'code':
            prev = old.pop(text, None)
            cell.update(execution_count=prev.get('execution_count') if prev else None, outputs=prev['outputs'] if prev else [])
            if prev and prev.get('id'): cell['id'], kept = prev['id'], kept | {len(nb_cells)}
        nb_cells.append(cell)
    used = {nb_cells[i]['id'] for i in kept}
    for i, c in enumerate(nb_cells):  # fresh ids never repeat a kept one
        if i not in kept and c['id'] in used:
            c['id'] = hashlib.sha1(f"{Path(dst).stem}-{i}-{''.join(c['source'])}".encode()).hexdigest()[:8]
    nb = dict(cells=nb_cells, metadata=dict(kernelspec=dict(display_name='python3', language='python', name='python3')),
              nbformat=4, nbformat_minor=5)
    Path(dst).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')

def to_py(src, dst=None):
    nb = json.loads(Path(src).read_text())
    out = []
    for c in nb['cells']:
        tags = c.get('metadata', {}).get('tags')
        t = f' tags={json.dumps(tags)}' if tags else ''
        text = ''.join(c['source'])
        if c['cell_type'] == 'markdown':
            out.append(f'# %% [markdown]{t}'); out += [('# ' + l) if l else '#' for l in text.splitlines()]
        else:
            out.append(f'# %%{t}'); out += text.splitlines()
        out.append('')
    dst = Path(dst or Path('.nbsrc')/(Path(src).stem + '.py'))
    dst.parent.mkdir(exist_ok=True, parents=True)
    dst.write_text('\n'.join(out))
    print(dst)

if __name__ == '__main__':
    cmd, *args = sys.argv[1:]
    {'nb': to_nb, 'py': to_py}[cmd](*args)
