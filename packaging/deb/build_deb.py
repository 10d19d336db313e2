#!/usr/bin/env python3
"""Build `rcc_<version>_all.deb` from rcc's wheel with dpkg-deb (no debhelper, no source package).

    python3 packaging/deb/build_deb.py --wheel dist/rcc-0.1.0-py3-none-any.whl [--out dist]

Layout of the package:
  /usr/lib/python3/dist-packages/rcc/            the wheel's package, as Debian's own Python packages are laid out
  /usr/lib/python3/dist-packages/rcc-V.dist-info the wheel's metadata, without RECORD (so `pip uninstall` refuses
                                                 to touch files dpkg owns) and with INSTALLER = debian
  /usr/bin/rcc                                   `#!/usr/bin/python3 -I` launcher (rcc.launcher)
  /usr/share/man/man1/rcc.1.gz                   `rcc completion man` of this build (from its command tables)
  /usr/share/{bash-completion,zsh,fish}/...      `rcc completion bash|zsh|fish` of this build
  /usr/share/doc/rcc/{copyright,changelog.gz}
  /usr/share/lintian/overrides/rcc               one override, with its reason (lintian-overrides)
  DEBIAN/{control,md5sums,postinst,prerm}        postinst byte-compiles for /usr/bin/python3; prerm removes it

The package lives in dist-packages (not a private directory) so that `python3 -m rcc` works with the system Python.

Invariants: the output is a function of the wheel, the files next to this script and SOURCE_DATE_EPOCH (every
mtime is set to it; default: hatchling's fixed wheel timestamp). Bad input stops the build with a message and a
distinct exit code, never a package with parts missing: 65 a wheel that is not rcc's or has unexpected members,
69 dpkg-deb missing, 70 a step that failed (rendering the man page, dpkg-deb itself).
"""

from __future__ import annotations

import argparse
import email.parser
import gzip
import hashlib
import io
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from email.utils import formatdate
from pathlib import Path, PurePosixPath

HERE = Path(__file__).resolve().parent
SITE = PurePosixPath("usr/lib/python3/dist-packages")
DEFAULT_EPOCH = 1580601600  # 2020-02-02, the timestamp hatchling gives wheel members
DEFAULT_MAINTAINER = "rcc maintainers <rcc-maintainers@users.noreply.github.com>"

EXIT_BAD_INPUT = 65
EXIT_MISSING_TOOL = 69
EXIT_FAILED = 70


class BuildError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# PEP 440 pre-releases and dev releases sort before the release; in Debian only `~` does that.
_PEP440 = re.compile(r"^(\d+(?:\.\d+)*)(?:(a|b|rc)(\d+))?(?:\.post(\d+))?(?:\.dev(\d+))?$")
_DEBIAN_VERSION = re.compile(r"^[0-9][A-Za-z0-9.+~]*$")


def debian_version(pep440: str) -> str:
    """0.1.0 -> 0.1.0, 1.2rc1 -> 1.2~rc1, 1.2.dev3 -> 1.2~dev3, 1.2.post1 -> 1.2+post1. Anything else (local
    versions `+x`, epochs `N!`) is refused rather than guessed at."""
    m = _PEP440.match(pep440)
    if not m:
        raise BuildError(f"version {pep440!r} has no Debian equivalent this script knows", EXIT_BAD_INPUT)
    release, pre, pre_n, post, dev = m.groups()
    out = release
    if pre:
        out += f"~{pre}{pre_n}"
    if post:
        out += f"+post{post}"
    if dev:
        out += f"~dev{dev}"
    assert _DEBIAN_VERSION.match(out), out
    return out


def _member_path(name: str) -> PurePosixPath:
    """A wheel member's path, refused if it could land outside the staging tree."""
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not p.parts or "\\" in name:
        raise BuildError(f"wheel member {name!r} is not a plain relative path", EXIT_BAD_INPUT)
    return p


def read_wheel(wheel: Path) -> tuple[str, str, dict[PurePosixPath, bytes]]:
    """(name, version, {path: content}) of a pure-Python rcc wheel."""
    try:
        zf = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as e:
        raise BuildError(f"{wheel}: not a readable wheel ({e})", EXIT_BAD_INPUT) from e
    with zf:
        files = {_member_path(i.filename): zf.read(i) for i in zf.infolist() if not i.is_dir()}
    infos = {p.parts[0] for p in files if p.parts[0].endswith(".dist-info")}
    if len(infos) != 1:
        raise BuildError(f"{wheel}: expected one .dist-info directory, found {sorted(infos)}", EXIT_BAD_INPUT)
    info = infos.pop()
    meta = email.parser.BytesParser().parsebytes(files.get(PurePosixPath(info, "METADATA"), b""))
    name, version = meta.get("Name", ""), meta.get("Version", "")
    if name != "rcc" or not version:
        raise BuildError(f"{wheel}: not rcc's wheel (Name={name!r}, Version={version!r})", EXIT_BAD_INPUT)
    wheel_meta = files.get(PurePosixPath(info, "WHEEL"), b"").decode()
    if "Root-Is-Purelib: true" not in wheel_meta or "Tag: py3-none-any" not in wheel_meta:
        raise BuildError(f"{wheel}: not a pure-Python py3-none-any wheel", EXIT_BAD_INPUT)
    tops = {p.parts[0] for p in files}
    if tops != {"rcc", info}:
        # A .data directory (scripts, headers) or a second package would need a place in the layout above.
        raise BuildError(f"{wheel}: unexpected top-level entries {sorted(tops - {'rcc', info})}", EXIT_BAD_INPUT)
    return name, version, files


def _run(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(argv, capture_output=True, text=True, check=False, env=env, cwd=cwd)
    if res.returncode != 0:
        raise BuildError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}", EXIT_FAILED)
    return res


# What `rcc completion SHELL` prints goes where each shell looks for vendor completions.
COMPLETIONS = {
    "bash": "usr/share/bash-completion/completions/rcc",
    "zsh": "usr/share/zsh/vendor-completions/_rcc",
    "fish": "usr/share/fish/vendor_completions.d/rcc.fish",
}


def render_generated(site: Path, what: str, epoch: int) -> str:
    """`rcc completion WHAT` (bash, zsh, fish, or man: rcc(1)) of the staged package: generated from the same
    command and option tables its parser uses, so neither the page nor the completions can drift from the program.
    Runs the staged code with the build's Python, without writing byte-code."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(site),
        "PYTHONDONTWRITEBYTECODE": "1",
        "SOURCE_DATE_EPOCH": str(epoch),  # the page's date
    }
    return _run([sys.executable, "-m", "rcc", "completion", what], env=env, cwd=site).stdout


def _gzip(data: bytes, mtime: int) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=mtime) as gz:
        gz.write(data)
    return buf.getvalue()


def _write(root: Path, rel: PurePosixPath | str, data: bytes, mode: int = 0o644) -> None:
    path = root / str(rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)


def build(wheel: Path, out_dir: Path, maintainer: str = DEFAULT_MAINTAINER, epoch: int | None = None) -> Path:
    if epoch is None:
        epoch = int(os.environ.get("SOURCE_DATE_EPOCH", DEFAULT_EPOCH))
    if "\n" in maintainer or "<" not in maintainer:
        raise BuildError(f"maintainer {maintainer!r} is not `Name <email>`", EXIT_BAD_INPUT)
    _, version, files = read_wheel(wheel)
    debver = debian_version(version)
    if shutil.which("dpkg-deb") is None:
        raise BuildError("dpkg-deb not found (Debian/Ubuntu: it is in the dpkg package)", EXIT_MISSING_TOOL)
    info = next(p.parts[0] for p in files if p.parts[0].endswith(".dist-info"))

    with tempfile.TemporaryDirectory(prefix="rcc-deb-") as tmp:
        root = Path(tmp) / "root"
        for rel, data in files.items():
            if rel == PurePosixPath(info, "RECORD"):
                continue  # paths and hashes of a pip install; dpkg owns these files (and has md5sums)
            if rel.parts[:2] == (info, "licenses"):
                continue  # Debian keeps the licence in /usr/share/doc/rcc/copyright, written below
            _write(root, SITE / rel, data)
        _write(root, SITE / info / "INSTALLER", b"debian\n")
        _write(root, "usr/bin/rcc", (HERE / "rcc.launcher").read_bytes(), 0o755)

        man = render_generated(root / str(SITE), "man", epoch)
        _write(root, "usr/share/man/man1/rcc.1.gz", _gzip(man.encode(), epoch))
        for shell, dest in COMPLETIONS.items():
            _write(root, dest, render_generated(root / str(SITE), shell, epoch).encode())
        doc = PurePosixPath("usr/share/doc/rcc")
        _write(root, doc / "copyright", (HERE / "copyright").read_bytes())
        _write(root, "usr/share/lintian/overrides/rcc", (HERE / "lintian-overrides").read_bytes())
        changelog = (
            f"rcc ({debver}) unstable; urgency=medium\n\n"
            f"  * Built from the rcc {version} wheel by packaging/deb/build_deb.py.\n\n"
            f" -- {maintainer}  {formatdate(epoch)}\n"
        )
        _write(root, doc / "changelog.gz", _gzip(changelog.encode(), epoch))

        payload = sorted(p for p in root.rglob("*") if p.is_file())
        md5sums = "".join(f"{hashlib.md5(p.read_bytes()).hexdigest()}  {p.relative_to(root)}\n" for p in payload)  # noqa: S324 - dpkg's format
        size_kib = sum((p.stat().st_size + 1023) // 1024 for p in payload) + sum(
            1 for p in root.rglob("*") if p.is_dir()
        )
        control = (
            (HERE / "control.in")
            .read_text()
            .replace("@VERSION@", debver)
            .replace("@MAINTAINER@", maintainer)
            .replace("@INSTALLED_SIZE@", str(size_kib))
        )
        if "@" in control.replace(maintainer, ""):
            raise BuildError("control.in has a placeholder this script does not fill", EXIT_FAILED)
        _write(root, "DEBIAN/control", control.encode())
        _write(root, "DEBIAN/md5sums", md5sums.encode())
        for script in ("postinst", "prerm"):
            _write(root, f"DEBIAN/{script}", (HERE / script).read_bytes(), 0o755)

        for p in [root, *root.rglob("*")]:
            if p.is_dir():
                p.chmod(0o755)
            os.utime(p, (epoch, epoch), follow_symlinks=False)
            assert not p.is_symlink() and not (p.stat().st_mode & (stat.S_ISUID | stat.S_ISGID | stat.S_IWOTH))

        out_dir.mkdir(parents=True, exist_ok=True)
        deb = out_dir / f"rcc_{debver}_all.deb"
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
        _run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(deb)], env=env)
    return deb


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="build_deb.py", description="build rcc_<version>_all.deb from rcc's wheel")
    ap.add_argument("--wheel", required=True, type=Path, help="rcc-<version>-py3-none-any.whl")
    ap.add_argument("--out", type=Path, default=Path("dist"), help="output directory (default: dist)")
    ap.add_argument("--maintainer", default=os.environ.get("RCC_DEB_MAINTAINER", DEFAULT_MAINTAINER))
    args = ap.parse_args(argv)
    try:
        deb = build(args.wheel, args.out, args.maintainer)
    except BuildError as e:
        sys.stderr.write(f"build_deb: error: {e}\n")
        return e.code
    sys.stdout.write(f"{deb}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
