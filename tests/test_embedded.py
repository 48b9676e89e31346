"""The shipped trained tiny model (`embedded:tiny`): its files match the recipe's manifest (sha256, configs), it loads
through `from_pretrained` like any diffusers folder, and its measured quality on held-out synthetic clips (VAE
reconstruction PSNR, base denoising loss) is what the manifest records, without retraining."""
import hashlib, json, sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ltx_nb.core import EMBEDDED_MODEL, EMBEDDED_RANDOM
from ltx_nb.model import SHIPPED_COMPONENTS, embedded_model_dir, load_transformer, load_vae, resolve_model, shipped_dir, shipped_manifest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'tools'))
import train_tiny as recipe  # noqa: E402  (the recipe's own held-out clips and metrics)


@pytest.fixture(scope='module')
def man(): return shipped_manifest()


def test_files_match_the_manifest(man):
    assert sorted({k.split('/')[0] for k in man['sha256']}) == sorted(SHIPPED_COMPONENTS)
    total = 0
    for rel, digest in man['sha256'].items():
        data = (shipped_dir()/rel).read_bytes()
        total += len(data)
        assert hashlib.sha256(data).hexdigest() == digest, rel
    assert total < 25_000_000  # the budget for package data
    for comp in SHIPPED_COMPONENTS:
        assert json.loads((shipped_dir()/comp/'config.json').read_text()) == man['config'][comp]


def test_recipe_seeds_exclude_the_demo(man):
    assert man['seeds']['demo_excluded'] == recipe.DEMO_SEED == 0
    assert 0 not in (man['seeds']['train'], man['seeds']['heldout'])
    with pytest.raises(AssertionError): recipe.vae_clip(0, 0)


def test_tiny_and_random_are_different_folders_of_the_same_layout():
    tiny, rand = Path(resolve_model(EMBEDDED_MODEL)), Path(resolve_model(EMBEDDED_RANDOM))
    assert tiny == embedded_model_dir('tiny') and rand == embedded_model_dir('random') and tiny != rand
    files = lambda d: sorted(p.relative_to(d).as_posix() for p in d.rglob('*') if p.is_file())
    assert files(tiny) == files(rand)
    same = lambda rel: (tiny/rel).read_bytes() == (rand/rel).read_bytes()
    assert same('text_encoder/model.safetensors') and same('connectors/diffusion_pytorch_model.safetensors')
    assert not same('vae/diffusion_pytorch_model.safetensors')
    assert not same('transformer/diffusion_pytorch_model.safetensors')


def test_vae_reconstructs_heldout_clips(man):
    vae = load_vae(EMBEDDED_MODEL)
    psnr = recipe.vae_psnr(vae, recipe.heldout_clips())
    assert psnr == pytest.approx(man['quality']['vae']['heldout_psnr_db'], abs=0.3)
    rand = recipe.vae_psnr(load_vae(EMBEDDED_RANDOM), recipe.heldout_clips(2))
    assert psnr > rand + 4, (psnr, rand)  # measured 20.43 vs 11.38 dB (the random VAE, first two clips)


def test_base_denoises_heldout_clips(man):
    q = man['quality']['base']
    te, _ = recipe.text_encoder()
    vae = load_vae(EMBEDDED_MODEL)
    held = recipe.base_items(vae, te, recipe.HELDOUT_SEED + 1, 4)
    tr = load_transformer(EMBEDDED_MODEL).eval()
    loss = recipe.base_eval(tr, held)
    assert loss == pytest.approx(q['heldout_loss_shipped_vae'], rel=0.05)  # the base on the VAE it ships with
    assert loss < 0.8*q['heldout_loss_untrained'], (loss, q)
