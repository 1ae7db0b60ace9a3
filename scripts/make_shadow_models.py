"""Write each sample model's shadow: the same model, made to disagree on a known set of rows.

``sample_models/<name>/shadow.onnx`` answers exactly as ``model.onnx`` does, except for the rows
whose input value at flat index ``shadow_feature`` is above ``shadow_threshold`` (both stored in
the file's metadata): for those the class scores are rotated by one class, so the most likely
label is always another one. The generated services' shadow tests send rows on both sides of the
threshold and expect exactly the rows above it to be counted as disagreements.

Built by editing the graph (no training), so the output is the same bytes on every machine:
``python scripts/make_shadow_models.py [--check]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_MODELS = REPO_ROOT / "sample_models"
SCORES = "probabilities"
# Flat input index and threshold per sample model: sepal length above 6 cm (about 40% of the iris
# rows); for the digits, the middle pixel of the 16x16 image above half brightness.
RULES = {
    "iris": (0, 6.0),
    "iris-slow": (0, 6.0),
    "iris-setosa": (0, 6.0),
    "iris-versicolor": (0, 6.0),
    "iris-virginica": (0, 6.0),
    "digits": (136, 0.5),
}


def shadow_of(model: onnx.ModelProto, feature: int, threshold: float) -> onnx.ModelProto:
    """``model`` whose class scores are rotated by one class where input[:, feature] > threshold."""
    shadow = onnx.ModelProto()
    shadow.CopyFrom(model)
    graph = shadow.graph
    primary = f"{SCORES}_primary"
    for node in graph.node:
        node.output[:] = [primary if name == SCORES else name for name in node.output]
        node.input[:] = [primary if name == SCORES else name for name in node.input]
    classes = next(o for o in graph.output if o.name == SCORES).type.tensor_type.shape.dim[1]
    count = classes.dim_value
    source = graph.input[0].name
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([feature], dtype=np.int64), "shadow_feature"),
            numpy_helper.from_array(np.array(threshold, dtype=np.float32), "shadow_threshold"),
            numpy_helper.from_array(
                np.roll(np.arange(count, dtype=np.int64), -1), "shadow_rotation"
            ),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("Flatten", [source], ["shadow_flat"], axis=1),
            helper.make_node("Gather", ["shadow_flat", "shadow_feature"], ["shadow_value"], axis=1),
            helper.make_node("Cast", ["shadow_value"], ["shadow_value_f"], to=TensorProto.FLOAT),
            helper.make_node("Greater", ["shadow_value_f", "shadow_threshold"], ["shadow_above"]),
            helper.make_node("Gather", [primary, "shadow_rotation"], ["shadow_rotated"], axis=1),
            helper.make_node("Where", ["shadow_above", "shadow_rotated", primary], [SCORES]),
        ]
    )
    del shadow.metadata_props[:]
    for key, value in (("shadow_feature", str(feature)), ("shadow_threshold", str(threshold))):
        shadow.metadata_props.add(key=key, value=value)
    shadow.doc_string = f"shadow test model: scores rotated where input[{feature}] > {threshold}"
    onnx.checker.check_model(shadow, full_check=True)
    return shadow


def verify(model_path: Path, shadow_path: Path, feature: int, threshold: float) -> None:
    """The shadow's labels differ from the model's exactly on the rows above the threshold."""
    import onnxruntime as ort  # only here: writing needs the runtime, --check does not

    primary = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    shadow = ort.InferenceSession(str(shadow_path), providers=["CPUExecutionProvider"])
    meta = primary.get_inputs()[0]
    width = int(np.prod([size for size in meta.shape[1:] if isinstance(size, int)]))
    rng = np.random.default_rng(0)
    rows = rng.uniform(0, 1, size=(200, width)).astype(np.float32) * (2 * threshold)
    feeds = {meta.name: rows}
    first = primary.run([SCORES], feeds)[0].argmax(axis=1)
    second = shadow.run([SCORES], feeds)[0].argmax(axis=1)
    expected = rows[:, feature] > threshold
    if not np.array_equal(first != second, expected):
        raise SystemExit(f"{shadow_path}: disagrees on other rows than those above the threshold")


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, compare) every sample model's shadow."""
    cli = argparse.ArgumentParser(description=__doc__)
    cli.add_argument("--check", action="store_true", help="fail if a stored shadow differs")
    args = cli.parse_args(argv)
    stale = []
    for name, (feature, threshold) in RULES.items():
        folder = SAMPLE_MODELS / name
        shadow = shadow_of(onnx.load(folder / "model.onnx"), feature, threshold)
        data = shadow.SerializeToString(deterministic=True)
        target = folder / "shadow.onnx"
        if args.check:
            if not target.is_file() or target.read_bytes() != data:
                stale.append(str(target))
            continue
        target.write_bytes(data)
        verify(folder / "model.onnx", target, feature, threshold)
        print(f"wrote {target.relative_to(REPO_ROOT)}")
    if stale:
        print("out of date (run scripts/make_shadow_models.py):", *stale, sep="\n  ")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
