"""Train masked, reference-guided video-to-video LoRAs for LTX-2.3 from Jupyter notebooks

Modules:

- `ltx_nb.memory`: Estimate the peak GPU memory of every phase of a run from LTX-2.3's real configs (built on the meta device, no weights), pick the fastest VRAM preset that fits a card, and apply its knobs (fp8/int8/nf4 base, block offload, 8-bit text encoder) to the loaded models."""

__version__ = "0.1.0"

def __getattr__(name):
    "`ltx_nb.plan(...)`: the memory plan, imported on first use so `import ltx_nb` stays light."
    if name == 'plan':
        from .memory import plan
        return plan
    raise AttributeError(f"module 'ltx_nb' has no attribute {name!r}")
