"""One file that carries a sealed run to another machine: the evidence, the attestations,
the workspace files the verdict reads, and the key id that signed it.

`verify BUNDLE --key PUB` unpacks it into a private temporary folder and judges that folder
exactly as it judges a run folder, so the verdict is the same, and nothing needs root or
the task data. Unpacking admits only plain files and folders under `run/`.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from onegc.evidence.attest import ATTEST_DIR, RUN_ATTESTATION, read_envelope, signed_by
from onegc.evidence.errors import OnegcError
from onegc.evidence.layout import MANIFEST_NAME, RESCORE_DIR, RunLayout
from onegc.evidence.seal import sealable_files, sha256_file

BUNDLE_FORMAT = "onegc-bundle-1"
INDEX_NAME = "bundle.json"
ROOT = "run"
MAX_MEMBERS = 1_000_000


class BundleError(OnegcError):
    """The bundle cannot be written or read."""


def _verdict_inputs(run_dir: Path) -> list[Path]:
    """Workspace files the rules read (top-level scripts, checkpoints), each checked there
    against the sealed after-snapshot."""
    layout = RunLayout(run_dir)
    ws = layout.workspace
    if not ws.is_dir():
        return []
    scripts = [p for p in ws.glob("*.py") if p.is_file() and not p.is_symlink()]
    ckpts = [p for p in layout.checkpoints.rglob("*") if p.is_file() and not p.is_symlink()]
    return sorted(scripts + ckpts)


def bundle_members(run_dir: Path) -> list[Path]:
    extra = [run_dir / MANIFEST_NAME]
    for top in (ATTEST_DIR, RESCORE_DIR):
        extra += [p for p in (run_dir / top).rglob("*") if p.is_file() and not p.name.startswith(".")]
    return sorted(set(sealable_files(run_dir) + extra + _verdict_inputs(run_dir)))


def write_bundle(run_dir: Path, out: Path) -> dict:
    """Write `out` (a tar.gz); returns its index (also stored in it as bundle.json)."""
    if not (run_dir / MANIFEST_NAME).is_file():
        raise BundleError(f"{run_dir}: not a sealed run (no {MANIFEST_NAME})")
    if out.exists():
        raise BundleError(f"{out} exists; a bundle is never overwritten")
    members = bundle_members(run_dir)
    keys = signed_by(read_envelope(run_dir / ATTEST_DIR / RUN_ATTESTATION))
    index = {
        "format": BUNDLE_FORMAT,
        "run_dir_name": run_dir.name,
        "keyid": keys[0] if keys else None,
        "manifest_sha256": sha256_file(run_dir / MANIFEST_NAME),
        "files": len(members),
    }
    tmp = out.with_name("." + out.name + ".partial")
    with tarfile.open(tmp, "w:gz") as tar:
        data = json.dumps(index, indent=2).encode()
        info = tarfile.TarInfo(INDEX_NAME)
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
        for path in members:
            tar.add(path, arcname=f"{ROOT}/{path.relative_to(run_dir)}", recursive=False)
    tmp.replace(out)
    return index


def is_bundle(path: Path) -> bool:
    return path.is_file() and tarfile.is_tarfile(path)


def _safe(member: tarfile.TarInfo) -> bool:
    parts = PurePosixPath(member.name).parts
    return (
        (member.isfile() or member.isdir() or member.issym())
        and not member.name.startswith("/")
        and ".." not in parts
        and (member.name == INDEX_NAME or (len(parts) > 1 and parts[0] == ROOT))
        and not (member.issym() and (member.linkname.startswith("/") or ".." in PurePosixPath(member.linkname).parts))
    )


@contextmanager
def opened(path: Path) -> Iterator[tuple[Path, dict]]:
    """The run folder inside a bundle, unpacked to a private temporary folder, and its index."""
    try:
        tar = tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise BundleError(f"{path}: not a readable bundle ({exc})") from None
    with tar, tempfile.TemporaryDirectory(prefix="onegc-bundle-") as tmp:
        try:
            members = tar.getmembers()
            if len(members) > MAX_MEMBERS:
                raise BundleError(f"{path}: more than {MAX_MEMBERS} members")
            bad = [m.name for m in members if not _safe(m)]
            if bad:
                raise BundleError(f"{path}: unsafe member {bad[0]!r}; refused")
            tar.extractall(tmp, members=members, filter="tar")
            index = json.loads((Path(tmp) / INDEX_NAME).read_text())
        except (tarfile.TarError, OSError, ValueError, EOFError) as exc:
            raise BundleError(f"{path}: damaged bundle ({type(exc).__name__}: {exc})") from None
        if not isinstance(index, dict) or index.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"{path}: not an onegc-audit bundle")
        name = str(index.get("run_dir_name") or ROOT)
        run_dir = Path(tmp) / ROOT
        if PurePosixPath(name).name == name and name not in (".", "..", INDEX_NAME):
            run_dir = run_dir.rename(Path(tmp) / name)
        yield run_dir, index
