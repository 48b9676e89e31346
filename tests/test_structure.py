"The package's shape: no import cycle among ltx_nb's modules, counting imports inside functions."
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1]/'ltx_nb'

def module_imports(path:Path)->set[str]:
    "The sibling ltx_nb modules that `path` imports anywhere (module level, functions, methods)."
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name.split('.')[1] for a in node.names if a.name.startswith('ltx_nb.')}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from .core import x / from . import core
                out |= {node.module.split('.')[0]} if node.module else {a.name for a in node.names}
            elif node.module == 'ltx_nb': out |= {a.name for a in node.names}
            elif node.module and node.module.startswith('ltx_nb.'): out.add(node.module.split('.')[1])
    return out

def import_graph()->dict[str, set[str]]:
    mods = {p.stem: p for p in PKG.glob('*.py') if not p.stem.startswith('_')}
    return {m: {d for d in module_imports(p) if d in mods and d != m} for m, p in mods.items()}

def find_cycle(graph:dict[str, set[str]])->list[str]|None:
    "One import cycle as [a, b, ..., a], or None."
    state, stack = {}, []
    def visit(m):
        state[m] = 'open'; stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 'open': return stack[stack.index(d):] + [d]
            if d not in state and (c := visit(d)): return c
        state[m] = 'done'; stack.pop()
    for m in sorted(graph):
        if m not in state and (c := visit(m)): return c
    return None

def test_finder_reports_a_cycle():
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
    assert find_cycle({'a': {'b'}, 'b': set()}) is None

def test_imports_inside_functions_count(tmp_path):
    p = tmp_path/'m.py'
    p.write_text('from .core import x\ndef f():\n    from ltx_nb.train import train\n    import ltx_nb.model\n')
    assert module_imports(p) == {'core', 'train', 'model'}

def test_no_import_cycle():
    graph = import_graph()
    assert {'core', 'train', 'rundir'} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, 'import cycle among ltx_nb modules: ' + ' → '.join(cycle)

def long_functions(limit:int=60)->list[str]:
    "Every function or method of the package longer than `limit` lines, as 'module.name (n lines)'."
    out = []
    for p in sorted(PKG.glob('*.py')):
        if p.stem.startswith('_'): continue
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (n := node.end_lineno - node.lineno + 1) > limit:
                out.append(f"{p.stem}.{node.name} ({n} lines)")
    return out

def test_every_function_fits_one_screen():
    assert long_functions() == [], 'split these into named steps: ' + ', '.join(long_functions())

def test_every_numbered_notebook_shows_outputs():
    "A chapter shows what its cells compute: every numbered notebook is committed with outputs (nbdev-clean keeps them)."
    import json
    bare = []
    for nb in sorted((PKG.parent/'nbs').glob('[0-9][0-9]_*.ipynb')):
        code = [c for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code']
        if len(code) > 1 and sum(bool(c.get('outputs')) for c in code) < 3: bare.append(nb.name)
    assert bare == [], f"run these notebooks and commit them with their outputs (nbdev-test --save): {bare}"
