"""Copy the job notebooks from nbs/jobs/ into the package (ltx_nb/job_notebooks/), so a wheel ships them.

Run after nbdev-export (`make export` does both); CI fails when the copies differ from nbs/jobs/.
"""
import shutil
from pathlib import Path

src, dst = Path('nbs/jobs'), Path('ltx_nb/job_notebooks')
dst.mkdir(exist_ok=True)
want = {p.name for p in src.glob('*.ipynb')}
for p in dst.glob('*.ipynb'):
    if p.name not in want: p.unlink()
for name in sorted(want):
    if not (dst/name).exists() or (dst/name).read_bytes() != (src/name).read_bytes(): shutil.copyfile(src/name, dst/name)
