"""Write OCI image layers and OCI image-layout archives with the standard library only
(Python >= 3.11), so that no Docker, buildah or registry is needed.

- ``LayerWriter`` packs files into a gzip'd tar layer: entries sorted, numeric owners and no
  user/group names, gzip header without a timestamp, hard links kept, ``security.capability``
  xattrs kept (as ``SCHILY.xattr.*`` PAX records, which containerd applies). File mtimes are
  kept (Python's ``.pyc`` files check them); directories made up by the writer get a fixed
  mtime (``SOURCE_DATE_EPOCH``, default 0).
- ``write_archive`` writes an OCI image layout (``oci-layout``, ``index.json``,
  ``blobs/sha256/...``) as one uncompressed tar, the format ``ctr images import`` reads.
  The index entry is tagged the way BuildKit and ``ctr images export`` tag it: ``io.containerd.image.name`` = the full name
  (``chaos.test/helper:dev``), ``org.opencontainers.image.ref.name`` = the tag (``dev``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

ANN_CONTAINERD_NAME = "io.containerd.image.name"
ANN_REF_NAME = "org.opencontainers.image.ref.name"

_KEEP_XATTRS = ("security.capability",)


def fixed_mtime() -> int:
    try:
        return int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    except ValueError:
        return 0


@dataclass(frozen=True)
class Layer:
    path: str  # the gzip'd tar on disk
    digest: str  # sha256:... of the compressed blob
    diff_id: str  # sha256:... of the uncompressed tar
    size: int  # compressed bytes
    uncompressed: int
    comment: str = ""  # goes into the config's history

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, object], base: Path | None = None) -> Layer:
        kw = dict(d)
        if base is not None:
            kw["path"] = str(base / Path(str(kw["path"])).name)
        return cls(**kw)  # type: ignore[arg-type]


class _HashingWriter(io.RawIOBase):
    def __init__(self, sink: io.RawIOBase | io.BufferedIOBase | gzip.GzipFile) -> None:
        self.sink = sink
        self.sha = hashlib.sha256()
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        self.sha.update(b)
        self.count += len(b)
        self.sink.write(b)
        return len(b)


@dataclass
class _Entry:
    src: str | None  # file on disk, or None for a made-up directory
    mode: int = 0o755
    uid: int = 0
    gid: int = 0


class LayerWriter:
    """Collect entries (arcname -> source), then ``write()`` them sorted into a layer blob."""

    def __init__(self, comment: str = "") -> None:
        self.entries: dict[str, _Entry] = {}
        self.comment = comment

    def add_dir(self, arcname: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        arcname = _norm(arcname)
        if arcname and arcname not in self.entries:
            self.entries[arcname] = _Entry(None, mode, uid, gid)

    def add_parents(self, arcname: str, like_root: str | None = None) -> None:
        """Add the parent directories of arcname (modes/owners from like_root/<dir> if it
        exists there, else 0755 root)."""
        parts = _norm(arcname).split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d in self.entries:
                continue
            src = os.path.join(like_root, d) if like_root else None
            if src and os.path.isdir(src) and not os.path.islink(src):
                self.entries[d] = _Entry(src)
            else:
                self.add_dir(d)

    def add_path(
        self,
        src: str | os.PathLike[str],
        arcname: str,
        *,
        owner: tuple[int, int] | None = None,
    ) -> None:
        arcname = _norm(arcname)
        e = _Entry(os.fspath(src))
        if owner is not None:
            e.uid, e.gid = owner
            e.mode = -1  # marker: take mode from disk, owner from here
        self.entries[arcname] = e

    def add_tree(
        self,
        root: str | os.PathLike[str],
        arc_prefix: str = "",
        *,
        exclude: Callable[[str], bool] | None = None,
        owner: tuple[int, int] | None = None,
        include_root: bool = True,
    ) -> None:
        """Add root's contents under arc_prefix. exclude(relpath) drops an entry (and, for a
        directory, everything below it); relpath uses "/" and has no leading "./"."""
        root = os.fspath(root)
        prefix = _norm(arc_prefix)
        if include_root and prefix:
            self.add_path(root, prefix, owner=owner)
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = os.path.relpath(dirpath, root)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
            keep_dirs = []
            for name in sorted(dirnames):
                rel = f"{rel_dir}/{name}" if rel_dir else name
                if exclude and exclude(rel):
                    continue
                full = os.path.join(dirpath, name)
                self.add_path(full, f"{prefix}/{rel}" if prefix else rel, owner=owner)
                if not os.path.islink(full):
                    keep_dirs.append(name)
            dirnames[:] = keep_dirs
            for name in sorted(filenames):
                rel = f"{rel_dir}/{name}" if rel_dir else name
                if exclude and exclude(rel):
                    continue
                self.add_path(
                    os.path.join(dirpath, name), f"{prefix}/{rel}" if prefix else rel, owner=owner
                )

    def write(self, out_path: str | os.PathLike[str], compresslevel: int = 6) -> Layer:
        out_path = os.fspath(out_path)
        tmp = out_path + ".tmp"
        mtime = fixed_mtime()
        with open(tmp, "wb") as raw:
            comp = _HashingWriter(raw)
            with gzip.GzipFile(fileobj=comp, mode="wb", compresslevel=compresslevel, mtime=0) as gz:
                uncomp = _HashingWriter(gz)
                with tarfile.open(fileobj=uncomp, mode="w|", format=tarfile.PAX_FORMAT) as tf:
                    for arcname in sorted(self.entries, key=lambda a: a.split("/")):
                        self._add(tf, arcname, self.entries[arcname], mtime)
        os.replace(tmp, out_path)
        return Layer(
            path=out_path,
            digest="sha256:" + comp.sha.hexdigest(),
            diff_id="sha256:" + uncomp.sha.hexdigest(),
            size=comp.count,
            uncompressed=uncomp.count,
            comment=self.comment,
        )

    @staticmethod
    def _add(tf: tarfile.TarFile, arcname: str, e: _Entry, mtime: int) -> None:
        if e.src is None:
            ti = tarfile.TarInfo(arcname)
            ti.type = tarfile.DIRTYPE
            ti.mode, ti.uid, ti.gid, ti.mtime = e.mode, e.uid, e.gid, mtime
            tf.addfile(ti)
            return
        st = os.lstat(e.src)
        if stat.S_ISSOCK(st.st_mode):
            return
        ti = tf.gettarinfo(e.src, arcname)
        if ti is None:
            return
        ti.uname = ti.gname = ""
        if e.mode == -1:
            ti.uid, ti.gid = e.uid, e.gid
        pax: dict[str, str] = {}
        for name in _KEEP_XATTRS:
            try:
                val = os.getxattr(e.src, name, follow_symlinks=False)
            except OSError:
                continue
            pax["SCHILY.xattr." + name] = val.decode("utf-8", "surrogateescape")
        if pax:
            ti.pax_headers = {**ti.pax_headers, **pax}
        if ti.isreg():
            with open(e.src, "rb") as f:
                tf.addfile(ti, f)
        else:
            tf.addfile(ti)


def _norm(arcname: str) -> str:
    a = arcname.replace(os.sep, "/").strip("/")
    while a.startswith("./"):
        a = a[2:]
    return "" if a == "." else a


def _json_bytes(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _blob(data: bytes, media_type: str) -> tuple[dict[str, object], bytes]:
    return (
        {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
         "size": len(data)},
        data,
    )


def image_config(
    layers: Iterable[Layer],
    *,
    architecture: str,
    config: dict[str, object],
    created: str,
    history_by: str = "tests/cluster/build-images.sh",
) -> dict[str, object]:
    layers = list(layers)
    return {
        "created": created,
        "architecture": architecture,
        "os": "linux",
        "config": {k: v for k, v in config.items() if v not in (None, [], {})},
        "rootfs": {"type": "layers", "diff_ids": [ly.diff_id for ly in layers]},
        "history": [
            {"created": created, "created_by": f"{history_by}: {ly.comment}".rstrip(": ")}
            for ly in layers
        ],
    }


def write_archive(
    out_path: str | os.PathLike[str],
    name: str,
    layers: list[Layer],
    config: dict[str, object],
) -> dict[str, object]:
    """Write the OCI layout tar; returns {"manifest": digest, "config": digest, "size": bytes}."""
    out_path = os.fspath(out_path)
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
    cfg_desc, cfg_bytes = _blob(_json_bytes(config), MT_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": cfg_desc,
        "layers": [
            {"mediaType": MT_LAYER_GZIP, "digest": ly.digest, "size": ly.size} for ly in layers
        ],
    }
    man_desc, man_bytes = _blob(_json_bytes(manifest), MT_MANIFEST)
    index = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [
            {
                **man_desc,
                "platform": {"architecture": config["architecture"], "os": config["os"]},
                "annotations": {ANN_CONTAINERD_NAME: name, ANN_REF_NAME: tag},
            }
        ],
    }
    mtime = fixed_mtime()
    tmp = out_path + ".tmp"

    def info(arcname: str, size: int = 0, *, is_dir: bool = False) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(arcname)
        ti.mtime = mtime
        if is_dir:
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
        else:
            ti.size, ti.mode = size, 0o644
        return ti

    small: dict[str, bytes] = {
        str(cfg_desc["digest"]).split(":", 1)[1]: cfg_bytes,
        str(man_desc["digest"]).split(":", 1)[1]: man_bytes,
    }
    big = {ly.digest.split(":", 1)[1]: ly for ly in layers}
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
        layout = _json_bytes({"imageLayoutVersion": "1.0.0"})
        tf.addfile(info("oci-layout", len(layout)), io.BytesIO(layout))
        idx = _json_bytes(index)
        tf.addfile(info("index.json", len(idx)), io.BytesIO(idx))
        tf.addfile(info("blobs", is_dir=True))
        tf.addfile(info("blobs/sha256", is_dir=True))
        for hexd in sorted(set(small) | set(big)):
            if hexd in small:
                data = small[hexd]
                tf.addfile(info(f"blobs/sha256/{hexd}", len(data)), io.BytesIO(data))
            else:
                ly = big[hexd]
                with open(ly.path, "rb") as f:
                    tf.addfile(info(f"blobs/sha256/{hexd}", ly.size), f)
    os.replace(tmp, out_path)
    return {
        "manifest": man_desc["digest"],
        "config": cfg_desc["digest"],
        "size": os.path.getsize(out_path),
    }


def read_archive(path: str | os.PathLike[str]) -> tuple[dict, dict, dict, list[str]]:
    """(index, manifest, config, [layer member names]) of a single-image OCI archive."""
    with tarfile.open(path) as tf:
        index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
        man_d = index["manifests"][0]["digest"].split(":", 1)[1]
        manifest = json.load(tf.extractfile(f"blobs/sha256/{man_d}"))  # type: ignore[arg-type]
        cfg_d = manifest["config"]["digest"].split(":", 1)[1]
        config = json.load(tf.extractfile(f"blobs/sha256/{cfg_d}"))  # type: ignore[arg-type]
        layers = [f"blobs/sha256/{ly['digest'].split(':', 1)[1]}" for ly in manifest["layers"]]
    return index, manifest, config, layers
