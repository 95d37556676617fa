"""Whether `/v1/embed_images` uses BentoML's adaptive batching: by measurement, per provider.

BentoML 1.4 runs one batch at a time per worker (its dispatcher holds a semaphore of 1), and the
engine runs each image-tower call with CCSCLIP_THREADS onnxruntime threads (1 by default). On a
CPU, batching therefore serialises the work of all waiting requests onto one core, while
unbatched requests run in parallel on the request threads, one core each: on 2 cores at
ViT-B-32 size batching halved the throughput (benchmarks/serve.py --model ViT-B-32, numbers in
docs/service.md, "Batching"). On a GPU one large call is what the device is fast at. So unless
CCSCLIP_HTTP_BATCHING says otherwise, batching is on when the engine will run on CUDA (the
engine prefers CUDA whenever this onnxruntime build has it) and off on CPU.
"""

from __future__ import annotations

CUDA = "CUDAExecutionProvider"  # as ccsclip.engine.engine


def http_batching(setting: bool | None) -> bool:
    """The setting when given; else on with CUDA, off on CPU."""
    if setting is not None:
        return setting
    import onnxruntime as ort

    return CUDA in ort.get_available_providers()
