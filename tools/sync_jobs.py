"""Generate the job notebook's `parameters` cell from the request table, then copy the job notebooks from nbs/jobs/
into the package (ltx_nb/job_notebooks/), so a wheel ships them.

Run after nbdev-export (`make export` does both); CI fails when the cell or the copies differ from what is committed.
"""
import json, shutil
from pathlib import Path
from ltx_nb.runner import JOB_NOTEBOOK, job_parameters_source

def sync_parameters(nb_path:Path):
    "Rewrite the cell tagged `parameters` with `job_parameters_source()` (only when it changed)."
    nb = json.loads(nb_path.read_text())
    cell = next(c for c in nb['cells'] if 'parameters' in c.get('metadata', {}).get('tags', []))
    lines = job_parameters_source().splitlines()
    src = [l + '\n' for l in lines[:-1]] + lines[-1:]
    if cell['source'] == src: return
    cell['source'] = src
    nb_path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')

src, dst = Path('nbs/jobs'), Path('ltx_nb/job_notebooks')
sync_parameters(src/JOB_NOTEBOOK)
dst.mkdir(exist_ok=True)
want = {p.name for p in src.glob('*.ipynb')}
for p in dst.glob('*.ipynb'):
    if p.name not in want: p.unlink()
for name in sorted(want):
    if not (dst/name).exists() or (dst/name).read_bytes() != (src/name).read_bytes(): shutil.copyfile(src/name, dst/name)
