"""Write and verify a serving bundle (docs/design.md §6, §7): profiles + model -> checked ONNX.

The code is split by job: `bundle_write` (export_bundle), `bundle_verify` (check_bundle,
verify_bundle) and `parity` (what both compute); this module keeps the public names.

`export_bundle` bakes each profile into a smaller image tower, exports it, and refuses the whole
bundle if the ONNX file disagrees with the *soft-pruned* torch model (the reference the paper's
experiments use) by more than the tolerance, on normalised embeddings of random images at batch
1 and 7. Everything is written into a temp directory that replaces the target only at the end,
so a failed export leaves no bundle and never destroys an existing one.

Reduced precision. fp16: `onnxruntime.transformers.float16.convert_float_to_float16` with
`keep_io_types=True` (float32 inputs and outputs, Casts inside; `onnxconverter-common` is not
installed and onnxruntime ships the same converter). int8: `onnxruntime.quantization.
quantize_dynamic` with QInt8 weights (activations quantised at run time, no calibration data).
Both are extra profiles `<name>-fp16` / `<name>-int8`, measured against the same soft-pruned torch
reference as fp32 and held to a looser, recorded tolerance; with an accuracy probe the entry also
records accuracy(reduced) - accuracy(fp32) computed with onnxruntime and the engine's own
preprocessing and tokenizer (what serving would see).

ONNX metadata keys (plain, as the engine reads them): kind, schema, profile, profile_sha256,
base_profile, heads_removed (JSON list), mode, precision, quantize, model, pretrained,
weights_sha256.

`verify_bundle` design: hashes first (`verify_files`); then every ONNX file's metadata against the
manifest; then parity against a torch reference rebuilt from the manifest's model
(`load_model(name, pretrained)`; its weights hash must equal the manifest's, random-init models
are seeded so this holds for them too). The reference ablation comes from the manifest alone for
zero mode (the removed heads are all it needs) and from the profile file `source` points at for
mean mode (its means are hash-checked, and its sha256 must equal the entry's). A mean-mode
profile whose profile file is gone cannot be rebuilt; it is then only checked for determinism
and finite outputs (ONNX run twice), and the report says so. FLOPs, parameter counts and the
recorded parity are re-derived and compared, so an edited manifest field is caught.
"""

from ccsclip.export.bundle_verify import BundleReport, ProfileCheck, check_bundle, verify_bundle
from ccsclip.export.bundle_write import export_bundle
from ccsclip.export.parity import REDUCED_TOLERANCE

__all__ = [
    "REDUCED_TOLERANCE",
    "BundleReport",
    "ProfileCheck",
    "check_bundle",
    "export_bundle",
    "verify_bundle",
]
