"""Training features (issue 11 part 3) on the tiny model, the 16:9 'low' bucket at 9 frames: batch 2 × accumulation 1
equals batch 1 × accumulation 2, an interrupted run with accumulation and every dropout resumes bit for bit, dropouts
draw from the step's own generator, the schedules are diffusers', compile is refused on the CPU, the knobs are
validated, and a LoRA trained with alpha ≠ rank loads in diffusers and ltx-core's fuser as it was trained."""
from pathlib import Path

import pytest
import torch

from ltx_nb.core import RequestError, load_request
from ltx_nb.model import forward_video, load_lora_state, lora_metadata, lora_state, load_transformer, resolve_model
from ltx_nb.rundir import read_metrics, read_progress
from ltx_nb.train import (build_model, build_optimizer, check_data, finish, micro_step, open_run, prepare_data,
                          prepare_run_dir, resume, start_run, step_batch, train, train_step)

from conftest import TINY
BASE = dict(TINY, number_of_steps=100, warmup_steps=0, checkpoint_interval=0, seed=3)  # 100: the lr schedules' length

pytestmark = pytest.mark.usefixtures('one_torch_thread')  # runs compared bit for bit need identical float reductions

@pytest.fixture(scope='module')
def data(tmp_path_factory)->Path:
    from ltx_nb.synth import make_triplets
    d = tmp_path_factory.mktemp('feature_data')
    make_triplets(d, n=3, frames=9)
    return d

def request(data:Path, run_dir:Path, **kw):
    return load_request(dict(BASE, training_data_url=str(data), run_dir=str(run_dir), **kw))

def stages(data:Path, run_dir:Path, **kw):
    "A run's state after every stage up to the loop (the stages `train` calls, in its order)."
    st = start_run(request(data, run_dir, **kw))
    report = check_data(st, progress=False)
    assert prepare_run_dir(st) is None
    open_run(st, report); prepare_data(st, report, progress=False)
    build_model(st); build_optimizer(st); resume(st)
    return st

def grads(st)->list:
    return [p.grad.detach().clone() for p in st.params]

# ---------------------------------------------------------------- batches and accumulation

def test_batch_2_equals_accumulation_2(data, tmp_path):
    a = stages(data, tmp_path/'b2', batch_size=2)
    b = stages(data, tmp_path/'a2', gradient_accumulation_steps=2)
    for _ in range(2): train_step(a); train_step(b)  # B ≠ 0 now, so every LoRA weight gets a gradient below
    ba, la, sa = micro_step(a, 2, 0, lambda n: None)
    for m in range(2): bb, lb, sb = micro_step(b, 2, m, lambda n: None)
    assert ba.tokens.shape[0] == 2 and bb.tokens.shape[0] == 1
    ga, gb = grads(a), grads(b)
    assert sum(g.abs().sum() for g in ga) > 0
    for x, y in zip(ga, gb): torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)  # 4 layers: float-order noise up to 2.9e-7 measured
    # Adam divides by √v: where a weight's gradient is near zero, float-order noise in it (within the atol above) moves
    # that weight's update by a fraction of lr. 5 % of one step's lr still tells equal updates from a wrong batch or
    # accumulation, which differ by about lr almost everywhere (seen on an AMD EPYC: 1.5e-6 in 1 of 512).
    lr = a.r.learning_rate
    for x, y in zip(a.params, b.params): torch.testing.assert_close(x, y, rtol=1e-4, atol=5e-2 * lr)  # 4 layers: 1.6 % of lr in 1 of 2048 measured
    ma, mb = read_metrics(a.run_dir), read_metrics(b.run_dir)
    assert [m['sigma'] for m in ma] == [m['sigma'] for m in mb]
    assert [m['loss'] for m in ma] == pytest.approx([m['loss'] for m in mb], rel=1e-5)
    assert ma[0]['tokens'] == mb[0]['tokens']

def test_each_sample_is_normalised_by_its_own_regenerated_tokens(data, tmp_path):
    st = stages(data, tmp_path/'run', batch_size=3)
    b, _ = step_batch(st.transformer, st.items, st.r, 0)
    assert len(set(b.regen.sum(-1).tolist())) > 1  # the three masks differ in size
    from ltx_nb.train import step_loss
    with torch.no_grad():
        per = step_loss(st.transformer, b, per_sample=True)
        one = [step_loss(st.transformer, type(b)(*(getattr(b, k)[i:i+1] for k in ('tokens', 'timesteps', 'sigma', 'coords',
               'context', 'context_mask', 'velocity', 'regen')), b.n_ref)) for i in range(3)]
        torch.testing.assert_close(per, torch.stack(one), rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(step_loss(st.transformer, b), per.mean())

def test_resume_is_bit_exact_with_accumulation_and_dropouts(data, tmp_path):
    "The stages `train` runs, for 20 updates: one run straight through, one cut at its checkpoint at 10 and resumed."
    from ltx_nb.train import step_hooks
    kw = dict(gradient_accumulation_steps=2, caption_dropout_rate=0.3, reference_dropout_rate=0.3, lora_dropout=0.2,
              lora_alpha=16, lr_scheduler='cosine', warmup_steps=5, weight_decay=0.01, checkpoint_interval=10)
    def run(run_dir, upto):
        st = stages(data, run_dir, **kw)
        while st.step < upto: train_step(st); step_hooks(st)
        return st
    ref = run(tmp_path/'ref', 20)
    run(tmp_path/'cut', 13)  # dies after step 13: the checkpoint at 10 is the newest
    got = run(tmp_path/'cut', 20)
    assert got.start == 10
    assert all(torch.equal(x, y) for x, y in zip(ref.params, got.params))
    ma, mb = read_metrics(ref.run_dir), read_metrics(got.run_dir)
    assert [m['step'] for m in mb] == list(range(1, 21))
    assert [(m['loss'], m['sigma'], m['lr']) for m in ma] == [(m['loss'], m['sigma'], m['lr']) for m in mb]
    assert ma[-1]['lr'] < ma[6]['lr']  # cosine
    assert len({m['tokens'] for m in ma}) > 1  # some micro-steps ran without the reference tokens
    # per-σ-bucket losses: each row has the buckets its items fell in
    assert all({k for k in m if k.startswith('loss_sigma_')} for m in ma)
    assert {k for m in ma for k in m if k.startswith('loss_sigma_')} <= {'loss_sigma_low', 'loss_sigma_mid', 'loss_sigma_high'}

# ---------------------------------------------------------------- dropouts

def test_caption_and_reference_dropout(data, tmp_path):
    st = stages(data, tmp_path/'on', caption_dropout_rate=1.0, reference_dropout_rate=1.0, batch_size=2)
    b, _ = step_batch(st.transformer, st.items, st.r, 0, empty=st.empty)
    assert b.n_ref == 0 and b.tokens.shape[1] == b.velocity.shape[1]  # only the target's tokens
    assert all(torch.equal(c, st.empty[0]) for c in b.context)
    off = stages(data, tmp_path/'off', batch_size=2)
    assert off.empty is None
    b0, _ = step_batch(off.transformer, off.items, off.r, 0)
    assert b0.n_ref > 0 and not any(torch.equal(c, st.empty[0]) for c in b0.context)
    # the draws of σ and noise do not depend on the rates: only the coins after them decide
    torch.testing.assert_close(b.velocity, b0.velocity); torch.testing.assert_close(b.sigma, b0.sigma)

def test_dropout_shares_follow_the_rates(data, tmp_path):
    st = stages(data, tmp_path/'half', caption_dropout_rate=0.5, reference_dropout_rate=0.25)
    caps = refs = 0
    for step in range(200):
        b, _ = step_batch(st.transformer, st.items, st.r, step, empty=st.empty)
        caps += torch.equal(b.context[0], st.empty[0]); refs += b.n_ref == 0
    assert 70 < caps < 130 and 25 < refs < 75, (caps, refs)

# ---------------------------------------------------------------- schedules, compile, validation

@pytest.mark.parametrize('name', ['constant', 'linear', 'cosine', 'cosine_with_restarts'])
def test_lr_schedules(data, tmp_path, name):
    st = stages(data, tmp_path/name, lr_scheduler=name, warmup_steps=10, lr_scheduler_cycles=2)
    lrs = []
    for _ in range(100): lrs.append(st.scheduler.get_last_lr()[0]); st.optimizer.step(); st.scheduler.step()
    assert lrs[0] == 0.0 and lrs[10] == pytest.approx(1e-3)
    last = dict(constant=1e-3, linear=1e-3 / 90, cosine=None, cosine_with_restarts=None)[name]
    if last is None: assert lrs[-1] < 1e-5
    else: assert lrs[-1] == pytest.approx(last, rel=1e-3)
    if name == 'cosine_with_restarts': assert lrs[56] > 0.9e-3 > lrs[54]  # the restart half-way after warm-up

def test_compile_is_refused_on_the_cpu(data, tmp_path):
    with pytest.raises(RequestError, match='compile: true needs CUDA'):
        train(request(data, tmp_path/'c', compile=True, device='cpu'), progress=False)
    assert not (tmp_path/'c').exists()  # refused before anything was written

def test_the_knobs_are_validated(data, tmp_path):
    with pytest.raises(RequestError) as e:
        request(data, tmp_path, batch_size=0, gradient_accumulation_steps=1.5, lr_scheduler='step', weight_decay=-1,
                caption_dropout_rate=1.5, reference_dropout_rate='x', compile='yes', lora_alpha=0, lora_dropout=0.95)
    assert len(e.value.problems) == 9, e.value.problems
    for name in ('batch_size', 'gradient_accumulation_steps', 'lr_scheduler', 'weight_decay', 'caption_dropout_rate',
                 'reference_dropout_rate', 'compile', 'lora_alpha', 'lora_dropout'):
        assert any(p.startswith(name + ':') for p in e.value.problems), name
    r = request(data, tmp_path)  # the defaults keep the old behaviour
    assert (r.batch_size, r.gradient_accumulation_steps, r.lr_scheduler, r.weight_decay, r.caption_dropout_rate,
            r.reference_dropout_rate, r.compile, r.lora_alpha, r.lora_dropout) == (1, 1, 'constant', 0.0, 0.0, 0.0, False, None, 0.0)

# ---------------------------------------------------------------- LoRA alpha folded into B

@pytest.fixture(scope='module')
def alpha_run(data, tmp_path_factory):
    "A LoRA trained a few steps with alpha = 4 × rank, saved by `finish`; and its model's prediction on one batch."
    st = stages(data, tmp_path_factory.mktemp('alpha')/'run', lora_alpha=32, learning_rate=1e-2, lora_dtype='fp32')
    for _ in range(3): train_step(st)
    b, _ = step_batch(st.transformer, st.items, st.r, 7)
    st.transformer.eval()
    with torch.no_grad(): want = forward_video(st.transformer, b.tokens, b.timesteps, b.sigma, b.coords, b.context, b.context_mask)
    raw = {k: v.detach().clone() for k, v in lora_state(st.transformer).items()}
    res = finish(st, 1.0)
    return st, res.lora, b, want, raw

def test_alpha_is_folded_and_the_file_says_alpha_equals_rank(alpha_run):
    st, f, b, want, raw = alpha_run
    md = lora_metadata(f)
    assert (md['rank'], md['alpha'], md['trained_alpha']) == ('8', '8', '32')
    got = load_lora_state(f)
    for k, v in raw.items():
        torch.testing.assert_close(got[k], v * 4 if '.lora_B.' in k else v)

def test_alpha_lora_loads_in_diffusers(alpha_run):
    from diffusers import LTX2Pipeline
    st, f, b, want, raw = alpha_run
    pipe = LTX2Pipeline.from_pretrained(resolve_model(st.r.model))
    with torch.no_grad():
        base = forward_video(pipe.transformer, b.tokens, b.timesteps, b.sigma, b.coords, b.context, b.context_mask)
        pipe.load_lora_weights(str(f))
        got = forward_video(pipe.transformer, b.tokens, b.timesteps, b.sigma, b.coords, b.context, b.context_mask)
    assert (want - base).abs().max() > 1e-2  # the LoRA changes the prediction
    assert (got - want).abs().max() < 1e-5

def test_alpha_lora_fuses_in_ltx_core(alpha_run):
    pytest.importorskip('ltx_core')
    from ltx_core.loader.fuse_loras import apply_loras
    from ltx_core.loader.primitives import LoraStateDictWithStrength, StateDict
    from safetensors.torch import load_file
    st, f, b, want, raw = alpha_run
    base = {k: v.to(torch.bfloat16) for k, v in load_transformer(st.r.model).state_dict().items()}  # the fuser takes bf16
    lora = {k.removeprefix('diffusion_model.'): v for k, v in load_file(str(f)).items()}  # its ComfyUI renaming
    fused = apply_loras(StateDict(base, torch.device('cpu'), 0, {torch.bfloat16}),
                        [LoraStateDictWithStrength(StateDict(lora, torch.device('cpu'), 0, {torch.float32}), 1.0)]).sd
    changed = [k for k in base if not torch.equal(fused[k], base[k])]
    assert len(changed) == len(lora) // 2
    for k in changed:  # the fused delta is the trained one: scaling (alpha/rank = 4) × B·A
        p = k.removesuffix('.weight')
        trained = 4 * raw[f'{p}.lora_B.weight'] @ raw[f'{p}.lora_A.weight']
        delta = fused[k].float() - base[k].float()
        assert (delta - trained).abs().max() <= 0.02 * trained.abs().max() + 1e-2 * base[k].float().abs().max(), k
