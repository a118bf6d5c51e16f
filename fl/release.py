"""The model release protocol, one home for both sides: what the central signs and what a workstation accepts.

A release is a manifest (canonical JSON: format, version, SHA-256 and size of the weights file, the whole model
card) signed with the central's Ed25519 model-signing key. The central builds it with `manifest_bytes` after
`release_problem` found nothing wrong; a workstation checks it with `verify_release` against the key it received at
enrolment, then rebuilds the model folder from the signed card and the downloaded file
(fl.modelfile.write_model_folder). The name rules below are the same on both sides, so the central cannot sign
a release every workstation would refuse.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

RELEASE_FORMAT = "fedxray-model-release/1"
# A model version: how the central names a version and a workstation accepts it (also in URLs).
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# The weights file a card names: a plain file name (no folder, no leading dot, no spaces).
WEIGHTS_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
_VERSION = re.compile(VERSION_PATTERN)
_WEIGHTS_NAME = re.compile(WEIGHTS_NAME_PATTERN)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ReleaseError(ValueError):
    """A release that cannot be trusted or used; `reason` is unsigned, bad-signature or not-understood."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Release:
    """What a verified manifest describes."""

    version: str
    file_sha256: str
    file_size: int
    card: dict[str, Any]
    released_at: str | None = None

    @property
    def weights_file(self) -> str:
        return str(self.card["weights"]["file"])


def is_version(text: Any) -> bool:
    return isinstance(text, str) and bool(_VERSION.match(text))


def is_weights_name(name: Any) -> bool:
    """A weights file name a card may give: a plain file name that every workstation accepts."""
    return isinstance(name, str) and bool(_WEIGHTS_NAME.fullmatch(name))


def manifest_bytes(*, version: str, file_sha256: str, file_size: int, card: dict[str, Any]) -> bytes:
    """The exact bytes the release signature covers."""
    payload = {"format": RELEASE_FORMAT, "version": version, "file_sha256": file_sha256, "file_size": file_size,
               "card": card}  # fmt: skip
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def release_problem(*, version: str, card: dict[str, Any], file_sha256: str | None, file_size: int | None) -> str | None:
    """Why a model version cannot be released (its file and card must describe one usable FedXray model), or None.

    Workstations rebuild the model folder from the signed card and the file, so the card must name a plain
    weights file name and record the file's SHA-256 (and size, when it gives one)."""
    from fl.classes import CLASSES
    from fl.modelfile import ModelCard, ModelFileError

    if file_sha256 is None:
        return "it has no file yet; upload it before releasing"
    if not is_version(version):
        return f"its version {version!r} is not a version name workstations accept"
    try:
        parsed = ModelCard.from_dict(card or {})
    except (ModelFileError, TypeError) as exc:
        return f"its model card is not usable ({exc})"
    if parsed.version != version:
        return f"its model card says version {parsed.version!r}, not {version!r}"
    if list(parsed.classes) != list(CLASSES):
        return f"its model card predicts {parsed.classes}, but FedXray expects {list(CLASSES)}"
    weights = parsed.weights if isinstance(parsed.weights, dict) else {}
    if not is_weights_name(weights.get("file")):
        return ("its model card does not name its weights file as a plain file name (letters, digits, '.', '_', "
                "'-'; no folder, no space, no leading dot)")  # fmt: skip
    if weights.get("sha256") != file_sha256:
        return (f"its model card records weights SHA-256 {str(weights.get('sha256'))[:12]}… but the uploaded file "
                f"has {file_sha256[:12]}…; upload the matching file")  # fmt: skip
    if weights.get("bytes") not in (None, file_size):
        return f"its model card records {weights.get('bytes')} bytes of weights, the uploaded file has {file_size}"
    return None


def verify_release(manifest: bytes, signature_b64: str | None, public_key) -> Release:
    """Check the signature with the Ed25519 `public_key`, then the content; the release it describes.
    ReleaseError (unsigned, bad-signature, not-understood) otherwise; nothing in the manifest is used before."""
    from cryptography.exceptions import InvalidSignature

    if not signature_b64:
        raise ReleaseError("unsigned", "the release has no signature")
    try:
        public_key.verify(base64.b64decode(signature_b64, validate=True), manifest)
    except (binascii.Error, ValueError, InvalidSignature):
        raise ReleaseError("bad-signature", "the signature does not verify against the model-signing key") from None
    try:
        data = json.loads(manifest.decode("ascii"))
        release = Release(version=data["version"], file_sha256=data["file_sha256"], file_size=int(data["file_size"]),
                          card=data["card"])  # fmt: skip
        ok = (data.get("format") == RELEASE_FORMAT and isinstance(release.card, dict)
              and is_version(release.version) and bool(_SHA256.match(release.file_sha256)) and release.file_size > 0
              and release.card.get("version") == release.version
              and release.card.get("weights", {}).get("sha256") == release.file_sha256
              and is_weights_name(release.card["weights"].get("file")))  # fmt: skip
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise ReleaseError("not-understood", "the signed manifest is not a FedXray release this version understands")
    return release
