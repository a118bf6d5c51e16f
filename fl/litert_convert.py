"""Make a model's LiteRT artefact (model.tflite) in a TensorFlow process, checked against the Keras model.

Who calls it: the central when it records or releases a model version (`convert(model_dir)`), `fedxray train`
for its best model, and the workstation once, in a background process, for a model installed without one
(`python -m fl.litert_convert MODEL_DIR --into CACHE_DIR`; in the bundle `fedxray --convert-litert ...`).
It costs tens of seconds of CPU (SE-ResNet50V2: about 15-30 s here): not for every round's checkpoint.

The artefact computes, from the scaled (B, S, S, 3) input, the probabilities and the class maps (the last
feature map times the `logits` kernel, see fl.litert). Constants whose float32 values are all exactly float16
values (weights saved in float16 and not changed by the converter's folding of batch normalisation into the
convolution before it) are stored as float16 with a Dequantize step; XNNPACK widens them back once at load, so
the artefact computes with exactly the float32 artefact's weights at a smaller size. Every artefact is run once
on fixed inputs and compared with the Keras model before it is written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from fl.modelfile import INFERENCE_FILE, INFERENCE_RECORD, ModelFileError, load_model, record_inference

REFUSED = 4  # main()'s exit code when the model cannot be converted (a crash or a full disk give others)
FROZEN_OPTION = "--convert-litert"  # the bundle's executable runs main() when started with this option
STORAGE = "float16 where the value is exactly a float16, float32 elsewhere (lossless)"
MIN_FLOAT16_ELEMENTS = 1024  # smaller constants stay float32 (no size to gain)
CHECK_PROBABILITY_TOLERANCE = 1e-5  # LiteRT against Keras on the check inputs
CHECK_MAP_TOLERANCE = 1e-4  # relative to the largest class-map value


class ConversionError(Exception):
    """The model cannot be converted, or its artefact does not compute what the Keras model computes."""


def command(model_dir: str | os.PathLike, into: str | os.PathLike | None = None) -> list[str]:
    """The command line that runs this conversion in a new process (source install or bundle)."""
    args = [str(model_dir)] + ([] if into is None else ["--into", str(into)])
    if getattr(sys, "frozen", False):
        return [sys.executable, FROZEN_OPTION, *args]
    return [sys.executable, "-m", "fl.litert_convert", *args]


def convert(model_dir: str | os.PathLike, *, into: str | os.PathLike | None = None,
            exact_float16: bool = True) -> Path:
    """Make and check the artefact of the model in `model_dir`; returns its path.

    Without `into` it is written beside the weights and recorded (SHA-256, size, the weights' SHA-256) in the
    model's card.json, both replaced atomically: what the publisher of a model does. With `into`, the artefact and
    its record (artefact.json) go into that folder and the model folder is left as it is: the workstation's cache.
    `exact_float16=False` stores every constant as float32 (for comparison: the same computation, a larger file).
    Raises ModelFileError for a model that does not load, ConversionError for one that cannot be converted.
    """
    import tensorflow as tf

    model_dir = Path(model_dir)
    model, card = load_model(model_dir)
    data = _flatbuffer(model, card.arch)
    if exact_float16:
        data = store_exact_float16(data)
    check = _check(data, model, card.arch)
    record: dict[str, Any] = {
        "format": "litert", "file": INFERENCE_FILE, "sha256": "", "bytes": len(data),
        "weights_sha256": card.weights["sha256"], "outputs": ["probabilities", "class_maps"],
        "storage": STORAGE if exact_float16 else "float32", "converter": f"tensorflow {tf.__version__}",
        "created": datetime.now(UTC).isoformat(timespec="seconds"), "check": check,
    }  # fmt: skip
    record["sha256"] = hashlib.sha256(data).hexdigest()
    if into is None:
        path = _write_atomic(model_dir / INFERENCE_FILE, data)
        record_inference(model_dir, record)
        return path
    folder = Path(into)
    folder.mkdir(parents=True, exist_ok=True)
    path = _write_atomic(folder / INFERENCE_FILE, data)
    _write_atomic(folder / INFERENCE_RECORD, json.dumps(record, indent=1).encode("utf-8"))
    return path


# ------------------------------------------------------------------ the network as a two-output function


def _inference_function(model, arch: str):
    """tf.function (B, S, S, 3) -> (probabilities, class maps), refusing a head that CAM does not describe."""
    import keras
    import tensorflow as tf

    from fl.model import get_architecture

    layer = get_architecture(arch).gradcam_layer
    try:
        features = model.get_layer(layer).output
        pool, dropout, logits = (model.get_layer(n) for n in ("avg_pool", "head_dropout", "logits"))
    except ValueError as exc:
        raise ConversionError(f"the network has no layer the artefact needs ({exc})") from None
    head = (isinstance(pool, keras.layers.GlobalAveragePooling2D) and isinstance(dropout, keras.layers.Dropout)
            and isinstance(logits, keras.layers.Dense) and pool.input is features and dropout.input is pool.output
            and logits.input is dropout.output)  # fmt: skip
    if not head:
        raise ConversionError(f"the network's head is not {layer} -> global average pooling -> dropout -> dense "
                              "logits, so its GradCAM is not a class activation map")  # fmt: skip
    two = keras.Model(model.inputs, [model.output, features])
    kernel = tf.constant(np.asarray(logits.kernel.numpy(), np.float32))
    size = int(model.input_shape[1])

    def run(x):
        probs, maps = two(x, training=False)
        return probs, tf.einsum("bhwk,kc->bhwc", maps, kernel)

    return tf.function(run, input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])


def _flatbuffer(model, arch: str) -> bytes:
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    fn = _inference_function(model, arch)
    # Variables become constants: without this the converter writes a file without the weights.
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function())
    try:
        converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
        data = converter.convert()
    except Exception as exc:  # the converter raises several types; the caller needs one
        raise ConversionError(f"the LiteRT converter failed ({type(exc).__name__}: {exc})") from exc
    return bytes(data)


# ------------------------------------------------------------------ lossless float16 storage


def store_exact_float16(data: bytes, *, min_elements: int = MIN_FLOAT16_ELEMENTS) -> bytes:
    """The flat buffer with each float32 constant whose values are all exactly float16 values stored as float16,
    followed by a Dequantize step (as the converter's own float16 option does, but only where nothing is lost)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))
    if len(model.subgraphs) != 1:
        return data
    graph = model.subgraphs[0]
    dequantize = _opcode(model, schema, schema.BuiltinOperator.DEQUANTIZE, version=3)
    users: dict[int, int] = {}
    for t in graph.tensors:
        users[t.buffer] = users.get(t.buffer, 0) + 1
    steps = []
    for index in range(len(graph.tensors)):
        t = graph.tensors[index]
        buf = model.buffers[t.buffer] if t.buffer else None
        if t.type != schema.TensorType.FLOAT32 or buf is None or buf.data is None or len(buf.data) < 4 * min_elements:
            continue
        values = np.frombuffer(np.asarray(buf.data, np.uint8).tobytes(), "<f4")
        half = values.astype("<f2")
        if not np.array_equal(half.astype("<f4"), values):
            continue
        stored = schema.BufferT()
        stored.data = half.view(np.uint8)
        model.buffers.append(stored)
        const = schema.TensorT()
        const.shape, const.shapeSignature, const.type = t.shape, t.shapeSignature, schema.TensorType.FLOAT16
        const.buffer, const.name, const.isVariable = len(model.buffers) - 1, t.name + b"/float16", False
        graph.tensors.append(const)
        users[t.buffer] -= 1
        if users[t.buffer] == 0:
            buf.data = None  # no other tensor reads the float32 copy
        empty = schema.BufferT()
        model.buffers.append(empty)
        t.buffer = len(model.buffers) - 1  # now computed by the Dequantize step
        step = schema.OperatorT()
        step.opcodeIndex, step.inputs, step.outputs = dequantize, [len(graph.tensors) - 1], [index]
        steps.append(step)
    if not steps:
        return data
    graph.operators = steps + list(graph.operators)
    aligned = _aligned_buffer_class()
    for b in model.buffers:
        b.__class__ = aligned
    import flatbuffers

    builder = flatbuffers.Builder(len(data) + (1 << 20))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _opcode(model, schema, builtin: int, *, version: int) -> int:
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            code.version = max(code.version, version)
            return i
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), version
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _aligned_buffer_class():
    from ai_edge_litert import schema_py_generated as schema

    class AlignedBuffer(schema.BufferT):
        """A buffer whose data starts on a 16-byte boundary, as the converter writes them (the Python
        flatbuffers builder aligns bytes to 1)."""

        def Pack(self, builder):
            data = None
            if self.data is not None and len(self.data):
                payload = np.asarray(self.data, np.uint8).tobytes()
                builder.StartVector(1, len(payload), 16)
                builder.head -= len(payload)
                builder.Bytes[builder.head:builder.head + len(payload)] = payload
                builder.vectorNumElems = len(payload)
                data = builder.EndVector()
            schema.BufferStart(builder)
            if data is not None:
                schema.BufferAddData(builder, data)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return schema.BufferEnd(builder)

    return AlignedBuffer


def _check(data: bytes, model, arch: str) -> dict[str, Any]:
    """Run the artefact with LiteRT on fixed inputs and compare with the Keras model; raise ConversionError."""
    import tensorflow as tf

    from fl.litert import LiteRTExplainer

    size = int(model.input_shape[1])
    rng = np.random.default_rng(20261128)
    x = rng.uniform(-1.0, 1.0, (2, size, size, 3)).astype(np.float32)
    x[1] = np.tanh(np.linspace(-2.0, 2.0, size, dtype=np.float32))[None, :, None]  # a smooth gradient image
    probs, maps = (t.numpy() for t in _inference_function(model, arch)(tf.constant(x)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / INFERENCE_FILE
        path.write_bytes(data)
        runner = LiteRTExplainer(path, threads=1)
        lite_probs, lite_maps = runner._forward(x, maps=True)
        del runner
    dp = float(np.abs(lite_probs - probs).max())
    dm = float(np.abs(lite_maps - maps).max() / max(float(np.abs(maps).max()), 1e-12))
    if not (dp <= CHECK_PROBABILITY_TOLERANCE and dm <= CHECK_MAP_TOLERANCE):
        raise ConversionError(f"the LiteRT artefact does not compute what the model computes (probabilities differ "
                              f"by up to {dp:.2g}, class maps by {dm:.2g} of their range)")  # fmt: skip
    return {"inputs": int(x.shape[0]), "max_probability_difference": dp, "max_class_map_difference": dm}


def _write_atomic(path: Path, data: bytes) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a model folder is read by every user of the computer
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def main(argv: list[str] | None = None) -> int:
    """`python -m fl.litert_convert MODEL_DIR [--into DIR] [--nice]`: print the artefact's path, or the reason."""
    parser = argparse.ArgumentParser(prog="fl.litert_convert", description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--into", type=Path, help="write the artefact and artefact.json here (a cache folder)")
    parser.add_argument("--nice", action="store_true", help="run at low CPU priority (a background conversion)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.nice and hasattr(os, "nice"):
        os.nice(10)
    try:
        path = convert(args.model_dir, into=args.into)
    except (ModelFileError, ConversionError) as exc:
        print(f"fl.litert_convert: {args.model_dir}: {exc}", file=sys.stderr)
        return REFUSED
    except OSError as exc:
        print(f"fl.litert_convert: {args.model_dir}: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
