"Experiment tracking (report_to) read back with TensorBoard's own event reader, and the run's phases in progress.json."
import importlib.util
import pytest
from ltx_nb.core import EMBEDDED_MODEL, RequestError, load_request
from ltx_nb.rundir import TRACKING, read_metrics, read_progress, progress_line

pytest.importorskip('tensorboard')

@pytest.fixture(scope='module')
def tracked_run(triplets, tmp_path_factory):
    "A 100-step tiny run reporting to TensorBoard, one validation entry at steps 0 (the base), 50 and 100; progress seen mid-validation."
    from ltx_nb.synth import triplet_files
    from ltx_nb.train import train
    from ltx_nb import validation
    f = triplet_files(1)
    entry = dict(prompt='entry 1', video_url=str(triplets/f['end']), mask_url=str(triplets/f['mask']),
                 reference_video_url=str(triplets/f['start']))
    r = load_request(dict(training_data_url=str(triplets), model=EMBEDDED_MODEL, number_of_steps=100, number_of_frames=9,
                          resolution='low', aspect_ratio='16:9', rank=8, learning_rate=1e-3, validation=[entry],
                          validation_number_of_frames=9, validation_resolution='low', validation_aspect_ratio='16:9',
                          validation_num_inference_steps=1, validation_guidance_scale=1.0, stg_scale=0.0,
                          validation_interval=50, checkpoint_interval=0, report_to='tensorboard',
                          run_dir=str(tmp_path_factory.mktemp('tracked')/'run')))
    seen, sample = [], validation.Validator._sample
    def watched(self, *a, **kw):  # what progress.json says while validation samples
        seen.append(read_progress(r.run_dir)); return sample(self, *a, **kw)
    mp = pytest.MonkeyPatch(); mp.setattr(validation.Validator, '_sample', watched)
    try: res = train(r, progress=False)
    finally: mp.undo()
    return res, seen

def test_tensorboard_holds_the_runs_scalars_and_sheets(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    res, _ = tracked_run
    ea = EventAccumulator(str(res.run_dir/TRACKING/'ltx_nb'), size_guidance={'scalars': 0, 'images': 0}).Reload()
    tags = ea.Tags()
    for k in ('loss', 'lr', 'grad_norm', 'tokens_per_s', 'sigma', 'validation/entry0/kept_max_error'):
        assert k in tags['scalars'], (k, tags['scalars'])
    assert any(t.startswith('loss_sigma_') for t in tags['scalars'])
    rows = [m for m in read_metrics(res.run_dir) if 'loss' in m and m.get('kind') is None]
    loss = ea.Scalars('loss')
    assert [e.step for e in loss] == [m['step'] for m in rows] == list(range(1, 101))
    assert all(abs(e.value - m['loss']) <= 1e-6 * max(1, abs(m['loss'])) for e, m in zip(loss, rows))
    assert all(m['grad_norm'] > 0 for m in rows)
    assert [e.step for e in ea.Scalars('validation/entry0/kept_max_error')] == [0, 50, 100]
    assert [e.step for e in ea.Images('validation/sheet')] == [0, 50, 100]

def test_progress_names_the_phases(tracked_run):
    res, seen = tracked_run
    assert [p['phase']['name'] for p in seen] == ['validating'] * 3  # steps 0, 50, 100
    assert all(progress_line(p).startswith('validating 0/1 · step ') for p in seen), [progress_line(p) for p in seen]
    p = read_progress(res.run_dir)
    names = [q['name'] for q in p['phases']]
    assert names[:4] == ['checking', 'caching', 'loading', 'training'], names
    assert names[-3:] == ['training', 'saving', 'validating'] and p['phase'] is None and p['status'] == 'completed'
    assert repr(res).startswith('TrainResult(completed: 100 steps') and '<table>' in res._repr_html_()

@pytest.mark.skipif(importlib.util.find_spec('mlflow') is not None, reason='mlflow is installed')
def test_a_missing_tracker_is_refused_with_its_install_line(triplets, tmp_path):
    from ltx_nb.train import train
    r = dict(training_data_url=str(triplets), model=EMBEDDED_MODEL, number_of_steps=100, report_to='tensorboard,mlflow',
             run_dir=str(tmp_path/'run'))
    with pytest.raises(RequestError, match='pip install mlflow'): train(r, progress=False)
    assert not (tmp_path/'run').exists()  # refused before anything was written
    with pytest.raises(RequestError, match="'neptune' is not a tracker"): load_request(dict(r, report_to='neptune'))

def test_the_job_record_shows_its_pictures_without_trust(triplets, tmp_path):
    "The executed job notebook: loss and contact sheet as PNGs, a link to the reel, no stuck weight-loading bars."
    import json
    from conftest import ltx_nb
    from ltx_nb.synth import triplet_files
    f = triplet_files(1)
    entry = dict(prompt='entry 1', video_url=str(triplets/f['end']), mask_url=str(triplets/f['mask']),
                 reference_video_url=str(triplets/f['start']))
    (tmp_path/'req.json').write_text(json.dumps(dict(
        training_data_url=str(triplets), model=EMBEDDED_MODEL, number_of_steps=100, number_of_frames=9, resolution='low',
        aspect_ratio='16:9', rank=8, validation=[entry], validation_number_of_frames=9, validation_resolution='low',
        validation_aspect_ratio='16:9', validation_num_inference_steps=1, validation_guidance_scale=1.0, stg_scale=0.0)))
    p = ltx_nb('train', tmp_path/'req.json', '--run-dir', tmp_path/'run', '--quiet', cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    nb = json.loads(next((tmp_path/'run').glob('*.ipynb')).read_text())
    outs = [o for c in nb['cells'] if c['cell_type'] == 'code' for o in c.get('outputs', [])]
    text = ''.join(''.join(o.get('text', '')) for o in outs)
    assert 'Loading weights' not in text and '%|' not in text, text[-2000:]
    assert sum('image/png' in o.get('data', {}) for o in outs) >= 2                     # the loss and the poster
    assert not any('video/mp4' in json.dumps(o.get('data', {})) or '<video' in json.dumps(o.get('data', {})) for o in outs)
    assert any('](validation.mp4)' in ''.join(o.get('data', {}).get('text/markdown', '')) for o in outs)
