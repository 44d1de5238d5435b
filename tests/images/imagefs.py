"""Read an OCI image archive (the OCI image layout as one tar) the way a runtime would see the
image: check every blob against its digest and every layer against its diff_id, then apply the
layers in order (whiteouts included) to get one file tree that can be looked up, with symlinks
resolved inside the image, and read. Stdlib only; nothing is extracted to disk except each
layer's uncompressed tar (in a temp dir, deleted by ``close()``)."""

from __future__ import annotations

import gzip
import hashlib
import json
import posixpath
import shutil
import stat
import struct
import tarfile
import tempfile
from pathlib import Path
from typing import IO, Any


class ImageFS:
    def __init__(self, archive: Path) -> None:
        self.archive = Path(archive)
        self._tmp = Path(tempfile.mkdtemp(prefix="imagefs-"))
        self._layer_tars: list[tarfile.TarFile] = []
        self.entries: dict[str, tuple[tarfile.TarInfo, int]] = {}  # path -> (info, layer)
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    # -- loading -----------------------------------------------------------------------------

    def _load(self) -> None:
        with tarfile.open(self.archive) as tf:
            names = set(tf.getnames())
            assert "oci-layout" in names, f"{self.archive}: not an OCI layout (no oci-layout)"
            self.layout = json.load(tf.extractfile("oci-layout"))  # type: ignore[arg-type]
            self.index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
            assert len(self.index["manifests"]) == 1, self.index
            self.manifest_desc = self.index["manifests"][0]
            self.manifest = json.loads(self._blob(tf, self.manifest_desc))
            self.image_config = json.loads(self._blob(tf, self.manifest["config"]))
            self.config: dict[str, Any] = self.image_config.get("config", {})
            diff_ids = self.image_config["rootfs"]["diff_ids"]
            assert len(diff_ids) == len(self.manifest["layers"]), "diff_ids vs layers"
            for i, (desc, diff_id) in enumerate(zip(self.manifest["layers"], diff_ids, strict=True)):
                assert desc["mediaType"].endswith("tar+gzip"), desc
                member = tf.extractfile(self._member(desc))
                assert member is not None
                out = self._tmp / f"layer{i}.tar"
                digest, uncomp_digest, n = _gunzip_to(member, out)
                assert n == desc["size"], f"layer {i}: size {n} != {desc['size']}"
                assert digest == desc["digest"], f"layer {i}: bad digest"
                assert uncomp_digest == diff_id, f"layer {i}: bad diff_id"
                lt = tarfile.open(out)  # noqa: SIM115 (open until close())
                self._layer_tars.append(lt)
                self._apply(lt, i)

    @staticmethod
    def _member(desc: dict[str, Any]) -> str:
        algo, hexd = desc["digest"].split(":", 1)
        return f"blobs/{algo}/{hexd}"

    def _blob(self, tf: tarfile.TarFile, desc: dict[str, Any]) -> bytes:
        f = tf.extractfile(self._member(desc))
        assert f is not None
        data = f.read()
        assert len(data) == desc["size"], f"{desc['digest']}: size"
        assert "sha256:" + hashlib.sha256(data).hexdigest() == desc["digest"], "bad digest"
        return data

    def _apply(self, lt: tarfile.TarFile, layer: int) -> None:
        for ti in lt.getmembers():
            path = _norm(ti.name)
            base = posixpath.basename(path)
            parent = posixpath.dirname(path)
            if base == ".wh..wh..opq":  # opaque dir: hide what lower layers had below it
                lower = [p for p, (_, n) in self.entries.items()
                         if n < layer and (not parent or p.startswith(parent + "/"))]
                for p in lower:
                    del self.entries[p]
                continue
            if base.startswith(".wh."):
                gone = posixpath.join(parent, base[4:])
                for p in [p for p in self.entries if p == gone or p.startswith(gone + "/")]:
                    del self.entries[p]
                continue
            self.entries[path] = (ti, layer)

    def close(self) -> None:
        for lt in self._layer_tars:
            lt.close()
        self._layer_tars = []
        shutil.rmtree(self._tmp, ignore_errors=True)

    # -- lookups -----------------------------------------------------------------------------

    def lookup(self, path: str, *, follow: bool = True) -> tarfile.TarInfo | None:
        """The entry at path, symlinks resolved inside the image (also in the last component
        when follow), hard links resolved to their target."""
        resolved = self.resolve(path, follow=follow)
        if resolved is None or resolved not in self.entries:
            return None if resolved != "" else _root()
        ti = self.entries[resolved][0]
        if ti.islnk():
            return self.entries.get(_norm(ti.linkname), (None, 0))[0]
        return ti

    def resolve(self, path: str, *, follow: bool = True, _depth: int = 0) -> str | None:
        if _depth > 40:
            return None
        parts = [p for p in _norm(path).split("/") if p not in ("", ".")]
        cur = ""
        for i, part in enumerate(parts):
            if part == "..":
                cur = posixpath.dirname(cur)
                continue
            nxt = f"{cur}/{part}" if cur else part
            ent = self.entries.get(nxt)
            last = i == len(parts) - 1
            if ent is None:
                return nxt if last else None
            ti = ent[0]
            if ti.issym() and (follow or not last):
                target = ti.linkname
                target = target if target.startswith("/") else posixpath.join(cur, target)
                rest = "/".join(parts[i + 1 :])
                return self.resolve(posixpath.join(target, rest) if rest else target,
                                    follow=follow, _depth=_depth + 1)
            cur = nxt
        return cur

    def exists(self, path: str) -> bool:
        return self.lookup(path) is not None

    def read(self, path: str) -> bytes:
        resolved = self.resolve(path)
        assert resolved in self.entries, f"{path}: not in the image"
        ti, layer = self.entries[resolved]
        if ti.islnk():
            ti, layer = self.entries[_norm(ti.linkname)]
        assert ti.isreg(), f"{path}: not a regular file"
        f = self._layer_tars[layer].extractfile(ti)
        assert f is not None
        return f.read()

    def is_executable(self, path: str) -> bool:
        ti = self.lookup(path)
        return ti is not None and ti.isreg() and bool(ti.mode & 0o111)

    def which(self, cmd: str) -> str | None:
        env = dict(e.split("=", 1) for e in self.config.get("Env", []))
        for d in env.get("PATH", "").split(":"):
            p = posixpath.join(d, cmd)
            if self.is_executable(p):
                return p
        return None

    def files_under(self, prefix: str) -> dict[str, tarfile.TarInfo]:
        pre = _norm(prefix) + "/"
        return {p: ti for p, (ti, _) in self.entries.items() if p.startswith(pre)}

    def dpkg_status(self) -> dict[str, dict[str, str]]:
        out = {}
        for para in self.read("/var/lib/dpkg/status").decode().split("\n\n"):
            fields: dict[str, str] = {}
            for line in para.splitlines():
                if line and not line[0].isspace() and ": " in line:
                    k, v = line.split(": ", 1)
                    fields[k] = v
            if "Package" in fields:
                out[fields["Package"]] = fields
        return out


class _Counting:
    def __init__(self, f: IO[bytes]) -> None:
        self.f, self.sha, self.n = f, hashlib.sha256(), 0

    def read(self, size: int = -1) -> bytes:
        b = self.f.read(size)
        self.sha.update(b)
        self.n += len(b)
        return b


def _gunzip_to(member: IO[bytes], out: Path) -> tuple[str, str, int]:
    """Decompress member into out; (sha256 of the gzip bytes, of the tar, gzip size)."""
    src = _Counting(member)
    uncomp = hashlib.sha256()
    with gzip.GzipFile(fileobj=src, mode="rb") as gz, open(out, "wb") as f:  # type: ignore[arg-type]
        while chunk := gz.read(1 << 20):
            uncomp.update(chunk)
            f.write(chunk)
    src.read()  # anything after the gzip stream counts towards the blob's digest too
    return "sha256:" + src.sha.hexdigest(), "sha256:" + uncomp.hexdigest(), src.n


def _norm(name: str) -> str:
    n = name
    while n.startswith("./"):
        n = n[2:]
    return n.strip("/")


def _root() -> tarfile.TarInfo:
    ti = tarfile.TarInfo("")
    ti.type = tarfile.DIRTYPE
    ti.mode = 0o755
    return ti


def elf_interpreter(data: bytes) -> str | None:
    """PT_INTERP of a 64-bit little-endian ELF executable; None when statically linked."""
    assert data[:4] == b"\x7fELF", "not an ELF file"
    assert data[4] == 2 and data[5] == 1, "not a 64-bit little-endian ELF"
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        p_type, _flags, p_offset, _va, _pa, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize)
        if p_type == 3:  # PT_INTERP
            return data[p_offset : p_offset + p_filesz].rstrip(b"\0").decode()
    return None


def is_device(ti: tarfile.TarInfo) -> bool:
    return ti.ischr() or ti.isblk() or stat.S_ISSOCK(ti.mode)
