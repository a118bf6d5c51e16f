"""What may leave a site: the whitelist of reply metrics, the one reply builder and the checks both sides run.

A ClientApp reply carries exactly one ArrayRecord "arrays" (train replies only: the model's arrays, same names
and shapes as the global model the server sent, float32 or the run's transfer dtype, all finite) and exactly
one MetricRecord "metrics" whose keys are all in METRIC_KEYS and whose values are finite numbers. With the
"int8" transfer (fl.quantize) the floating point arrays travel as int8 codes of the update and one more
ArrayRecord "scales" holds their float32 scales (names of the floating point arrays, shapes fixed by
fl.quantize.scale_shape). Nothing else: no ConfigRecord, no strings, no file names, paths or patient ids.
Errors leave as a fixed text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fl.classes import CLASSES
from fl.metrics import PER_CLASS_KEYS

ARRAYS = "arrays"
METRICS = "metrics"
SCALES = "scales"  # only with the "int8" transfer: the scales of the int8 update codes in "arrays"
INT8 = "int8"

# Scalars every reply may carry. "num-examples" weights FedAvg (train: training examples; evaluate: validation
# examples). Validation metrics of the model the server sent use fl.metrics' names (loss, accuracy, macro_*).
SCALAR_KEYS = (
    "num-examples",
    "train-loss",
    "train-accuracy",
    "train-seconds",
    "eval-seconds",
    "loss",
    "accuracy",
    *(f"macro_{k}" for k in PER_CLASS_KEYS),
)
PER_CLASS_METRIC_KEYS = tuple(f"{k}/{c}" for k in (*PER_CLASS_KEYS, "support") for c in CLASSES)
CONFUSION_KEYS = tuple(f"confusion/{t}/{p}" for t in CLASSES for p in CLASSES)
METRIC_KEYS = frozenset((*SCALAR_KEYS, *PER_CLASS_METRIC_KEYS, *CONFUSION_KEYS))

# The only texts an error reply from a site may carry.
SITE_ERROR = "The ClientApp failed at the site ({kind}); the site's SuperNode log has the details."
REFUSED = "The site's privacy guard refused the reply ({reason})."


class ReplyRefused(Exception):
    """A reply would carry something outside the privacy contract."""


@dataclass(frozen=True)
class ArraySpec:
    """Names and shapes the model's arrays must have, the floating point dtype(s) they may travel in, and which
    of them are floating point (those are the ones an "int8" transfer sends as codes with scales)."""

    shapes: Mapping[str, tuple[int, ...]]
    dtypes: tuple[str, ...] = ("float32",)
    floats: frozenset[str] | None = None  # None: every array

    @classmethod
    def of(cls, record, *dtypes: str) -> ArraySpec:
        """The spec of an ArrayRecord (the global model the server sent); default dtype float32."""
        return cls(shapes={k: tuple(int(d) for d in a.shape) for k, a in record.items()},
                   dtypes=tuple(dtypes) or ("float32",),
                   floats=frozenset(k for k, a in record.items() if np.dtype(a.dtype).kind == "f"))

    @property
    def quantized(self) -> bool:
        """Whether replies carry int8 update codes and their scales (the "int8" transfer)."""
        return INT8 in self.dtypes

    def is_float(self, name: str) -> bool:
        return self.floats is None or name in self.floats


def check_metrics(metrics: Mapping) -> None:
    """Refuse any key outside METRIC_KEYS and any value that is not a finite int/float."""
    extra = sorted(set(metrics) - METRIC_KEYS)
    if extra:
        raise ReplyRefused(f"metric keys outside the whitelist: {extra[:5]}")
    if "num-examples" not in metrics:
        raise ReplyRefused("the metrics lack 'num-examples'")
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ReplyRefused(f"metric {k!r} is not a finite number")
    n = metrics["num-examples"]
    if not isinstance(n, int) or n < 0:
        raise ReplyRefused("'num-examples' must be a non-negative integer")


def check_arrays(record, spec: ArraySpec) -> None:
    """Refuse arrays whose names, shapes or dtypes differ from `spec`, or that hold NaN/inf."""
    names, expected = set(record.keys()), set(spec.shapes)
    if names != expected:
        missing, extra = sorted(expected - names), sorted(names - expected)
        raise ReplyRefused(f"array names differ from the model's ({len(missing)} missing, {len(extra)} unexpected)")
    for k, arr in record.items():
        if tuple(int(d) for d in arr.shape) != tuple(spec.shapes[k]):
            raise ReplyRefused(f"array {k!r} has shape {tuple(arr.shape)}, the model's is {spec.shapes[k]}")
        a = arr.numpy()
        if spec.quantized and spec.is_float(k):
            if a.dtype != np.int8:
                raise ReplyRefused(f"array {k!r} is {a.dtype}, the run transfers int8 update codes")
        elif a.dtype.kind == "f":
            if a.dtype.name not in spec.dtypes:
                raise ReplyRefused(f"array {k!r} is {a.dtype}, the run transfers {' or '.join(spec.dtypes)}")
            if not np.isfinite(a).all():
                raise ReplyRefused(f"array {k!r} holds NaN or infinite values")
        elif a.dtype.kind not in "iu":
            raise ReplyRefused(f"array {k!r} has dtype {a.dtype}")


def check_scales(record, spec: ArraySpec) -> None:
    """Refuse int8 scales that are not exactly one finite, non-negative float32 array of the expected shape per
    floating point array of the model."""
    from fl.quantize import scale_shape

    expected = {k for k in spec.shapes if spec.is_float(k)}
    if set(record.keys()) != expected:
        raise ReplyRefused("the scales do not name exactly the model's floating point arrays")
    for k, arr in record.items():
        a = arr.numpy()
        if a.dtype != np.float32 or a.shape != scale_shape(spec.shapes[k]):
            raise ReplyRefused(f"the scales of {k!r} are {a.dtype} {a.shape}, not float32 {scale_shape(spec.shapes[k])}")
        if not np.isfinite(a).all() or (a < 0).any():
            raise ReplyRefused(f"the scales of {k!r} are negative, NaN or infinite")


def check_reply(content, *, spec: ArraySpec | None) -> None:
    """The whole contract: records named and typed as above; arrays only when `spec` is given (train)."""
    from flwr.app import ArrayRecord, MetricRecord

    expected = {METRICS: MetricRecord} if spec is None else {ARRAYS: ArrayRecord, METRICS: MetricRecord}
    if spec is not None and spec.quantized:
        expected[SCALES] = ArrayRecord
    names = set(content.keys())
    if names != set(expected):
        raise ReplyRefused(f"records {sorted(names)} instead of {sorted(expected)}")
    for name, kind in expected.items():
        if not isinstance(content[name], kind):
            raise ReplyRefused(f"record {name!r} is a {type(content[name]).__name__}, not a {kind.__name__}")
    check_metrics(content[METRICS])
    if spec is not None:
        check_arrays(content[ARRAYS], spec)
        if spec.quantized:
            check_scales(content[SCALES], spec)


def clean_metrics(values: Mapping) -> dict[str, int | float]:
    """Plain Python numbers of a metrics dict; None (undefined) values are left out."""
    out: dict[str, int | float] = {}
    for k, v in values.items():
        if v is None:
            continue
        if isinstance(v, (np.integer, int)) and not isinstance(v, bool):
            out[k] = int(v)
        elif isinstance(v, (np.floating, float)):
            out[k] = float(v)
        else:
            raise ReplyRefused(f"metric {k!r} is not a number")
    return out


def build_reply(msg, *, metrics: Mapping, arrays=None, spec: ArraySpec | None = None):
    """The one way a ClientApp reply is made: checks the contract, then wraps the records in a Message."""
    from flwr.app import Message, MetricRecord, RecordDict

    content = RecordDict({METRICS: MetricRecord(clean_metrics(metrics))})
    if arrays is not None:
        content[ARRAYS] = arrays
    check_reply(content, spec=spec if arrays is not None else None)
    if arrays is None and spec is not None:
        raise ReplyRefused("a train reply must carry the model's arrays")
    return Message(content, reply_to=msg)


def error_reply(msg, reason: str):
    """An error reply with one of the fixed texts above (never an exception's own message)."""
    from flwr.app import Error, Message
    from flwr.common.constant import ErrorCode

    return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason), reply_to=msg)


def validation_metrics(m: dict) -> dict[str, int | float]:
    """The whitelisted subset of fl.metrics.flat_metrics(m): loss, accuracy, macro_*, per class, confusion."""
    from fl.metrics import flat_metrics

    return {k: v for k, v in flat_metrics(m).items() if k in METRIC_KEYS}
