"Experiment tracking (report_to) read back with TensorBoard's own event reader, and the run's phases in progress.json."
import importlib.util
import pytest
from ltx_nb.core import EMBEDDED_MODEL, RequestError, load_request
from ltx_nb.rundir import TRACKING, read_metrics, read_progress, progress_line
from conftest import STEPS

POINTS = [0, STEPS // 2, STEPS]  # the validation steps of `validated_request`

pytest.importorskip('tensorboard')

@pytest.fixture(scope='module')
def tracked_run(triplets, tmp_path_factory):
    "A `validated_request` run reporting to TensorBoard (validation at steps 0, STEPS/2, STEPS); progress seen mid-validation."
    from conftest import validated_request
    from ltx_nb.train import train
    from ltx_nb import validation
    r = load_request(validated_request(triplets, checkpoint_interval=0, report_to='tensorboard',
                                       run_dir=str(tmp_path_factory.mktemp('tracked')/'run')))
    from ltx_nb import dataset
    seen, fits, sample, fit = [], [], validation.Validator._sample, dataset.fit_validation_entry
    def watched(self, *a, **kw):  # what progress.json says while validation samples
        seen.append(read_progress(r.run_dir)); return sample(self, *a, **kw)
    def counted(*a, **kw): fits.append(a[-1] if len(a) > 3 else kw.get('name')); return fit(*a, **kw)
    mp = pytest.MonkeyPatch(); mp.setattr(validation.Validator, '_sample', watched); mp.setattr(dataset, 'fit_validation_entry', counted)
    try: res = train(r, progress=False)
    finally: mp.undo()
    return res, seen, fits

def test_tensorboard_holds_the_runs_scalars_and_sheets(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    res, _, _ = tracked_run
    ea = EventAccumulator(str(res.run_dir/TRACKING/'ltx_nb'), size_guidance={'scalars': 0, 'images': 0}).Reload()
    tags = ea.Tags()
    for k in ('loss', 'lr', 'grad_norm', 'tokens_per_s', 'sigma', 'validation/entry0/kept_max_error'):
        assert k in tags['scalars'], (k, tags['scalars'])
    assert any(t.startswith('loss_sigma_') for t in tags['scalars'])
    rows = [m for m in read_metrics(res.run_dir) if 'loss' in m and m.get('kind') is None]
    loss = ea.Scalars('loss')
    assert [e.step for e in loss] == [m['step'] for m in rows] == list(range(1, STEPS + 1))
    assert all(abs(e.value - m['loss']) <= 1e-6 * max(1, abs(m['loss'])) for e, m in zip(loss, rows))
    assert all(m['grad_norm'] > 0 for m in rows)
    assert [e.step for e in ea.Scalars('validation/entry0/kept_max_error')] == POINTS
    assert [e.step for e in ea.Images('validation/sheet')] == POINTS

def test_progress_names_the_phases(tracked_run):
    res, seen, _ = tracked_run
    assert [p['phase']['name'] for p in seen] == ['validating'] * len(POINTS)
    assert all(progress_line(p).startswith('validating 0/1 · step ') for p in seen), [progress_line(p) for p in seen]
    p = read_progress(res.run_dir)
    names = [q['name'] for q in p['phases']]
    assert names[:4] == ['checking', 'caching', 'loading', 'training'], names
    assert names[-3:] == ['training', 'saving', 'validating'] and p['phase'] is None and p['status'] == 'completed'
    assert repr(res).startswith(f'TrainResult(completed: {STEPS} steps') and '<table>' in res._repr_html_()

def test_validation_entries_are_fitted_once(tracked_run):
    "The data check fits (fetches, decodes, masks) each validation entry; the validator samples those, never refitting."
    _, _, fits = tracked_run
    assert fits == ['validation[0]'], fits

@pytest.mark.skipif(importlib.util.find_spec('mlflow') is not None, reason='mlflow is installed')
def test_a_missing_tracker_is_refused_with_its_install_line(triplets, tmp_path):
    from ltx_nb.train import train
    r = dict(training_data_url=str(triplets), model=EMBEDDED_MODEL, number_of_steps=STEPS, report_to='tensorboard,mlflow',
             run_dir=str(tmp_path/'run'))
    with pytest.raises(RequestError, match='pip install mlflow'): train(r, progress=False)
    assert not (tmp_path/'run').exists()  # refused before anything was written
    with pytest.raises(RequestError, match="'neptune' is not a tracker"): load_request(dict(r, report_to='neptune'))

def test_the_job_record_shows_its_pictures_without_trust(triplets, tmp_path):
    "The executed job notebook: loss and contact sheet as PNGs, a link to the reel, no stuck weight-loading bars."
    import json
    from conftest import ltx_nb, validated_request
    (tmp_path/'req.json').write_text(json.dumps(validated_request(triplets, validation_interval=0, checkpoint_interval=0)))
    p = ltx_nb('train', tmp_path/'req.json', '--run-dir', tmp_path/'run', '--quiet', cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    nb = json.loads(next((tmp_path/'run').glob('*.ipynb')).read_text())
    outs = [o for c in nb['cells'] if c['cell_type'] == 'code' for o in c.get('outputs', [])]
    text = ''.join(''.join(o.get('text', '')) for o in outs)
    assert 'Loading weights' not in text and '%|' not in text, text[-2000:]
    assert sum('image/png' in o.get('data', {}) for o in outs) >= 2                     # the loss and the poster
    assert not any('video/mp4' in json.dumps(o.get('data', {})) or '<video' in json.dumps(o.get('data', {})) for o in outs)
    assert any('](validation.mp4)' in ''.join(o.get('data', {}).get('text/markdown', '')) for o in outs)
