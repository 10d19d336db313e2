#!/usr/bin/env python3
"""Fill the Homebrew formula's `url` and `sha256` from a built sdist.

    python3 packaging/homebrew/render.py --sdist dist/rcc-0.1.0.tar.gz \\
        --url-base https://github.com/OWNER/rcc/releases/download [--out rcc.rb]

The url becomes URL_BASE/vVERSION/rcc-VERSION.tar.gz (Homebrew derives the formula's version from it) and the
sha256 that of the file given. The version is read from the sdist's own PKG-INFO and must match its file name.
Refuses (exit 65) an sdist that is not rcc's, and a formula without exactly one `url` and one `sha256` line.
"""

from __future__ import annotations

import argparse
import email.parser
import hashlib
import re
import sys
import tarfile
from pathlib import Path

FORMULA = Path(__file__).resolve().parent / "rcc.rb"
EXIT_BAD_INPUT = 65
_URL = re.compile(r'^(  url )"[^"]*"$', re.M)
_SHA = re.compile(r'^(  sha256 )"[0-9a-f]{64}"$', re.M)
_VERSION = re.compile(r"^[0-9][0-9A-Za-z.+!-]*$")


class RenderError(Exception):
    pass


def sdist_version(sdist: Path) -> str:
    """The version in the sdist's PKG-INFO, checked against its file name (rcc-VERSION.tar.gz)."""
    try:
        with tarfile.open(sdist, "r:gz") as tf:
            names = tf.getnames()
            top = names[0].split("/")[0] if names else ""
            member = tf.extractfile(f"{top}/PKG-INFO")
            if member is None:
                raise RenderError(f"{sdist}: no PKG-INFO")
            meta = email.parser.BytesParser().parsebytes(member.read())
    except (OSError, tarfile.TarError, KeyError) as e:
        raise RenderError(f"{sdist}: not a readable sdist ({e})") from e
    name, version = meta.get("Name", ""), meta.get("Version", "")
    if name != "rcc" or not _VERSION.match(version):
        raise RenderError(f"{sdist}: not rcc's sdist (Name={name!r}, Version={version!r})")
    if sdist.name != f"rcc-{version}.tar.gz" or top != f"rcc-{version}":
        raise RenderError(f"{sdist}: file name or top directory does not match its version {version}")
    return version


def render(formula_text: str, sdist: Path, url_base: str) -> str:
    version = sdist_version(sdist)
    if not url_base.startswith("https://") or any(c in url_base for c in '"\\#{} \n'):
        raise RenderError(f"--url-base {url_base!r} must be a plain https:// URL")
    url = f"{url_base.rstrip('/')}/v{version}/rcc-{version}.tar.gz"
    sha = hashlib.sha256(sdist.read_bytes()).hexdigest()
    out, n_url = _URL.subn(lambda m: f'{m.group(1)}"{url}"', formula_text)
    out, n_sha = _SHA.subn(lambda m: f'{m.group(1)}"{sha}"', out)
    if (n_url, n_sha) != (1, 1):
        raise RenderError(f"the formula needs exactly one url and one sha256 line (found {n_url} and {n_sha})")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="render.py", description="fill rcc.rb's url and sha256 from a built sdist")
    ap.add_argument("--sdist", required=True, type=Path)
    ap.add_argument("--url-base", default="https://github.com/OWNER/rcc/releases/download")
    ap.add_argument("--formula", type=Path, default=FORMULA)
    ap.add_argument("--out", type=Path, help="write here (default: stdout)")
    args = ap.parse_args(argv)
    try:
        text = render(args.formula.read_text(), args.sdist, args.url_base)
    except RenderError as e:
        sys.stderr.write(f"render: error: {e}\n")
        return EXIT_BAD_INPUT
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
