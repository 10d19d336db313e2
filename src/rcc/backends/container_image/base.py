"""Build the container base image from the distribution's packages: no container registry needed.

    sudo rcc setup --container [--mirror URL] [--engine podman|docker]
    rcc setup --container                      (a normal user, after root built it: imports the tarball)

(also `python3 -m rcc.backends.container_image.base [--import-only] [--cache DIR]`, the same from a checkout)

As root: debootstrap (variant minbase, plus BASE_PACKAGES) into a temporary directory from the Debian mirror apt
already uses, trim caches and documentation, save the tree as a tarball in the cache directory and import it into
the engine's store as base_image_tag(). Rootless podman has its own store per user, so each user imports the saved
tarball (`--import-only`, no root needed). The tag is a hash of the inputs: nothing is rebuilt while they stay.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile

from rcc.backends.container_image import (
    BASE_PACKAGES,
    BASE_SUITE,
    BASE_VARIANT,
    base_image_tag,
    image_exists,
)
from rcc.errors import ExitCode, RccError

DEFAULT_CACHE = "/var/cache/rcc/container"
FALLBACK_MIRROR = "http://deb.debian.org/debian"
# Large, never needed by an agent: apt's downloaded packages and lists, manuals, translations.
TRIM = (
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
)


def apt_mirror(sources: list[tuple[str, str]]) -> str:
    """The Debian mirror among apt source files [(path, text)]: the first URI that serves BASE_SUITE's main
    archive (one-line `deb URI SUITE ...` or deb822 `URIs:`/`Suites:` stanzas). Pure."""
    for path, text in sources:
        if path.endswith(".sources"):
            for stanza in text.split("\n\n"):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    key, sep, value = line.partition(":")
                    if sep and not line.startswith((" ", "#")):
                        fields[key.strip().lower()] = value.strip()
                if "deb" in fields.get("types", "").split() and BASE_SUITE in fields.get("suites", "").split():
                    uris = fields.get("uris", "").split()
                    if uris:
                        return uris[0]
        else:
            for line in text.splitlines():
                words = [w for w in line.split() if not w.startswith("[")]
                if len(words) >= 3 and words[0] == "deb" and words[2] == BASE_SUITE:
                    return words[1]
    return FALLBACK_MIRROR


def read_apt_sources(etc: str = "/etc/apt") -> list[tuple[str, str]]:
    paths = [os.path.join(etc, "sources.list")]
    d = os.path.join(etc, "sources.list.d")
    with contextlib.suppress(OSError):
        paths += sorted(os.path.join(d, n) for n in os.listdir(d))
    out = []
    for p in paths:
        try:
            with open(p) as f:
                out.append((p, f.read()))
        except OSError:
            continue
    return out


def debootstrap_argv(root: str, mirror: str) -> list[str]:
    return [
        "debootstrap",
        f"--variant={BASE_VARIANT}",
        "--include=" + ",".join(BASE_PACKAGES),
        BASE_SUITE,
        root,
        mirror,
    ]


def tarball_path(cache: str) -> str:
    return os.path.join(cache, base_image_tag().rsplit(":", 1)[1] + ".tar")


def build_tarball(cache: str, mirror: str) -> str:
    """debootstrap the base and save it as a tarball in `cache` (root only). Returns the tarball's path."""
    out = tarball_path(cache)
    if os.path.exists(out):
        return out
    if os.geteuid() != 0:
        raise RccError(
            "building the base image with debootstrap needs root",
            hint=f"run `sudo {_self()} setup --container`",
            code=ExitCode.SETUP,
        )
    if not shutil.which("debootstrap"):
        raise RccError(
            "debootstrap is not installed", hint="`sudo apt-get install debootstrap`", code=ExitCode.DEPENDENCY
        )
    os.makedirs(cache, mode=0o755, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rcc-base-", dir=cache) as tmp:
        root = os.path.join(tmp, "root")
        sys.stderr.write(f"rcc: debootstrap {BASE_SUITE} from {mirror} (about a minute)\n")
        r = subprocess.run(debootstrap_argv(root, mirror), stdout=sys.stderr, check=False)
        if r.returncode != 0:
            raise RccError(
                f"debootstrap failed (exit {r.returncode})", hint="see its output above", code=ExitCode.SETUP
            )
        for rel in TRIM:
            d = os.path.join(root, rel)
            for name in os.listdir(d) if os.path.isdir(d) else []:
                p = os.path.join(d, name)
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p)
                else:
                    os.unlink(p)
        part = out + ".part"
        subprocess.run(["tar", "--numeric-owner", "-C", root, "-cf", part, "."], check=True)
        os.chmod(part, 0o644)  # readable by every user: rootless podman imports it into each user's store
        os.replace(part, out)
    return out


def import_tarball(engine_path: str, engine: str, tarball: str) -> str:
    tag = base_image_tag()
    if image_exists(engine_path, engine, tag):
        return tag
    if not os.path.exists(tarball):
        raise RccError(
            f"the base tarball {tarball} does not exist",
            hint=f"build it first, as root: `sudo {_self()} setup --container`",
            code=ExitCode.SETUP,
        )
    r = subprocess.run([engine_path, "import", tarball, tag], stdout=sys.stderr, check=False)
    if r.returncode != 0:
        raise RccError(f"`{engine} import` failed (exit {r.returncode})", code=ExitCode.SETUP)
    return tag


def _self() -> str:
    from rcc.paths import self_command

    return self_command(os.environ)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        prog="python3 -m rcc.backends.container_image.base", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--engine", choices=("podman", "docker"), default="podman")
    ap.add_argument("--mirror", default="", help="Debian mirror (default: the one apt uses)")
    ap.add_argument("--cache", default=DEFAULT_CACHE, help=f"where the tarball is kept (default {DEFAULT_CACHE})")
    ap.add_argument("--import-only", action="store_true", help="only import the saved tarball (no root needed)")
    ap.add_argument("--print-tag", action="store_true", help="print the base image's tag and exit")
    args = ap.parse_args(argv)
    if args.print_tag:
        sys.stdout.write(base_image_tag() + "\n")
        return 0
    engine_path = shutil.which(args.engine)
    if not engine_path:
        raise RccError(f"{args.engine} is not installed", code=ExitCode.DEPENDENCY)
    tarball = tarball_path(args.cache)
    if not args.import_only:
        tarball = build_tarball(args.cache, args.mirror or apt_mirror(read_apt_sources()))
    sys.stdout.write(import_tarball(engine_path, args.engine, tarball) + "\n")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except RccError as e:
        sys.stderr.write(f"rcc: error: {e.message}\n" + (f"rcc: hint: {e.hint}\n" if e.hint else ""))
        raise SystemExit(int(e.code)) from None
