"""Build small container images from binaries already installed on this machine.

Why: CI and air-gapped benchmark boxes often cannot pull from a registry, yet the docker backend must be
proven against a real engine. A ``FROM scratch`` image holding ``/usr/bin/redis-server`` plus the shared
libraries ``ldd`` lists is a few MB, builds in seconds, and is rebuilt only when the files change (the
content hash is stored as an image label).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pytest_hwbench.errors import ServiceUnavailable

SOURCE_LABEL = "hwbench.source_sha256"
_LDD_LINE = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")

_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"


def shared_libraries(binary: str | os.PathLike[str]) -> list[str]:
    """Absolute paths of the shared libraries (and the dynamic loader) ``binary`` needs, per ``ldd``.

    A static binary has none. Libraries loaded later with ``dlopen`` are not found; add them as extra files.
    """
    ldd = shutil.which("ldd")
    if ldd is None:
        raise ServiceUnavailable("ldd is not installed (apt-get install libc-bin)")
    done = subprocess.run([ldd, str(binary)], capture_output=True, text=True, check=False, timeout=30)
    if done.returncode != 0 and "not a dynamic executable" not in (done.stdout + done.stderr):
        raise ServiceUnavailable(f"ldd {binary} failed: {(done.stderr or done.stdout).strip()}")
    if "not found" in done.stdout:
        missing = [ln.split()[0] for ln in done.stdout.splitlines() if "not found" in ln]
        raise ServiceUnavailable(f"{binary} needs libraries that are missing here: {', '.join(missing)}")
    libs: list[str] = []
    for line in done.stdout.splitlines():
        m = _LDD_LINE.search(line)
        if m and m.group(1) not in libs:
            libs.append(m.group(1))
    return libs


def _rootfs_files(binaries: Sequence[str], extra_files: dict[str, str] | None) -> dict[str, Path]:
    """Map of path inside the image → source file on this machine (symlinks resolved to content)."""
    files: dict[str, Path] = {}
    for b in binaries:
        path = shutil.which(b) if os.sep not in b else b
        if not path or not os.path.isfile(path):
            raise ServiceUnavailable(f"binary {b!r} not found on this machine (install it first)")
        files[os.path.abspath(path)] = Path(path).resolve()
        for lib in shared_libraries(path):
            files[lib] = Path(lib).resolve()
    for target, src in (extra_files or {}).items():
        files[target] = Path(src).resolve()
    return files


def _context_tar(files: dict[str, Path], dockerfile: str) -> tuple[bytes, str]:
    """The build context (Dockerfile + rootfs/) as a tar, and the content hash that names this input."""
    digest = hashlib.sha256(dockerfile.encode())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add_bytes(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

        def add_dir(name: str, mode: int) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)

        add_bytes("Dockerfile", dockerfile.encode())
        add_dir("rootfs", 0o755)
        for d, mode in (("tmp", 0o1777), ("data", 0o777), ("etc", 0o755)):
            add_dir(f"rootfs/{d}", mode)
        add_bytes("rootfs/etc/passwd", _PASSWD.encode())
        add_bytes("rootfs/etc/group", _GROUP.encode())
        for target in sorted(files):
            src = files[target]
            data = src.read_bytes()
            digest.update(target.encode() + b"\0" + hashlib.sha256(data).digest())
            add_bytes("rootfs" + target, data, mode=src.stat().st_mode & 0o7777)
    return buf.getvalue(), digest.hexdigest()


def build_binary_image(binaries: str | Iterable[str], tag: str, *, entrypoint: Sequence[str] | None = None,
                       cmd: Sequence[str] | None = None, extra_files: dict[str, str] | None = None,
                       env: dict[str, str] | None = None, client: Any = None) -> Any:
    """Build (or reuse) a ``FROM scratch`` image with ``binaries`` and their shared libraries at the same
    paths as on this machine; returns the docker SDK image object.

    ``extra_files`` maps a path in the image to a file here (config, dlopen'ed libraries). The image is
    rebuilt only when the files or the Dockerfile change. Raises :class:`ServiceUnavailable` when Docker
    or a binary is missing.
    """
    from pytest_hwbench.services.docker_backend import docker_client

    names = [binaries] if isinstance(binaries, str) else list(binaries)
    client = client or docker_client()
    lines = ["FROM scratch", "COPY rootfs/ /", "WORKDIR /data"]
    for key, value in (env or {}).items():
        lines.append(f"ENV {key}={value}")
    if entrypoint:
        lines.append("ENTRYPOINT " + _json_list(entrypoint))
    if cmd:
        lines.append("CMD " + _json_list(cmd))
    files = _rootfs_files(names, extra_files)
    context, digest = _context_tar(files, "\n".join(lines) + "\n")
    from docker.errors import BuildError, ImageNotFound

    try:
        existing = client.images.get(tag)
        if (existing.labels or {}).get(SOURCE_LABEL) == digest:
            return existing
    except ImageNotFound:
        pass
    try:
        image, _logs = client.images.build(fileobj=io.BytesIO(context), custom_context=True, tag=tag, rm=True,
                                           forcerm=True, labels={SOURCE_LABEL: digest, "hwbench.local": "1"})
    except BuildError as err:
        log = "".join(str(x.get("stream", x.get("error", ""))) for x in err.build_log)[-2000:]
        raise ServiceUnavailable(f"building image {tag} failed: {err.msg}\n{log}") from err
    return image


def _json_list(items: Sequence[str]) -> str:
    import json

    return json.dumps([str(i) for i in items])


#: The images the shipped recipes name that this machine can build from its own binaries
#: (``hwbench images build``): tag → binaries put into a ``FROM scratch`` image.
LOCAL_IMAGES: dict[str, tuple[str, ...]] = {
    "hwbench/redis-server:local": ("redis-server",),
}
BUILD_COMMAND = "hwbench images build"


def build_fix(image: str) -> str | None:
    """The command that builds ``image`` here, when it is one of :data:`LOCAL_IMAGES`."""
    return f"run '{BUILD_COMMAND}' to build it from this machine's binaries" if image in LOCAL_IMAGES else None


def build_local_images(tags: Sequence[str] = (), *, client: Any = None) -> list[str]:
    """Build every image of :data:`LOCAL_IMAGES` (or the given tags); returns one line per image."""
    lines = []
    for tag in tags or list(LOCAL_IMAGES):
        if tag not in LOCAL_IMAGES:
            raise ServiceUnavailable(f"{tag!r} is not an image hwbench can build (known: {', '.join(LOCAL_IMAGES)})")
        image = build_binary_image(LOCAL_IMAGES[tag], tag, client=client)
        lines.append(f"built {tag} ({image.short_id})")
    return lines
