"""The .deb: built from the wheel by packaging/deb/build_deb.py, inspected with dpkg-deb and lintian, installed
for real with dpkg into a separate root (the machine's own /usr and dpkg database are never touched), run from
there as root and as the unprivileged test user, and removed again.

The builder's input checks are pure tests (no marker); the rest is marked `sandbox` (real bubblewrap, and the
wheel needs hatchling from PyPI)."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest
from pkgworld import REPO, Account, Built, make_account, ok, project_version, run

from rcctest import require

BUILDER = REPO / "packaging" / "deb" / "build_deb.py"
SITE = "usr/lib/python3/dist-packages"


def builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_deb", BUILDER)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ----------------------------------------------------------------------------------------------- pure tier
@pytest.mark.parametrize(
    ("pep440", "debian"),
    [
        ("0.1.0", "0.1.0"),
        ("1.2rc1", "1.2~rc1"),
        ("1.2b3", "1.2~b3"),
        ("1.2.dev3", "1.2~dev3"),
        ("2.0.post1", "2.0+post1"),
    ],
)
def test_debian_version_sorts_like_pep440(pep440: str, debian: str) -> None:
    assert builder().debian_version(pep440) == debian


@pytest.mark.parametrize("bad", ["1.0+local", "1!2.0", "latest", ""])
def test_unmappable_version_is_refused(bad: str) -> None:
    mod = builder()
    with pytest.raises(mod.BuildError) as e:
        mod.debian_version(bad)
    assert e.value.code == 65


def _wheel(path: Path, members: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return path


GOOD_META = {
    "rcc-0.1.0.dist-info/METADATA": "Metadata-Version: 2.4\nName: rcc\nVersion: 0.1.0\n",
    "rcc-0.1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    "rcc/__init__.py": "",
}


@pytest.mark.parametrize(
    ("why", "members"),
    [
        ("not rcc", {**GOOD_META, "rcc-0.1.0.dist-info/METADATA": "Name: other\nVersion: 1\n"}),
        ("path escape", {**GOOD_META, "../../etc/evil": "x"}),
        ("absolute path", {**GOOD_META, "/usr/bin/evil": "x"}),
        ("data directory", {**GOOD_META, "rcc-0.1.0.data/scripts/x": "x"}),
        ("platform wheel", {**GOOD_META, "rcc-0.1.0.dist-info/WHEEL": "Root-Is-Purelib: false\n"}),
    ],
)
def test_bad_wheel_fails_closed_with_65_and_no_package(tmp_path: Path, why: str, members: dict[str, str]) -> None:
    wheel = _wheel(tmp_path / "rcc-0.1.0-py3-none-any.whl", members)
    res = run([sys.executable, str(BUILDER), "--wheel", str(wheel), "--out", str(tmp_path / "out")])
    assert res.returncode == 65, (why, res.stderr)
    assert "build_deb: error:" in res.stderr
    assert not list(tmp_path.glob("out/*.deb"))


def test_not_a_zip_fails_closed(tmp_path: Path) -> None:
    wheel = tmp_path / "rcc-0.1.0-py3-none-any.whl"
    wheel.write_text("not a zip")
    res = run([sys.executable, str(BUILDER), "--wheel", str(wheel), "--out", str(tmp_path / "out")])
    assert res.returncode == 65 and "not a readable wheel" in res.stderr


# ------------------------------------------------------------------------------------------- the real .deb
@pytest.fixture(scope="module")
def deb(built: Built, shared_dir: Path) -> Path:
    require(shutil.which("dpkg-deb") is not None, "dpkg-deb is needed to build the .deb (Debian/Ubuntu)")
    res = ok(run([sys.executable, str(BUILDER), "--wheel", str(built.wheel), "--out", str(shared_dir / "deb")]))
    path = Path(res.stdout.strip())
    assert path.name == f"rcc_{builder().debian_version(project_version())}_all.deb"
    return path


def _field(deb: Path, name: str) -> str:
    return ok(run(["dpkg-deb", "--field", str(deb), name])).stdout.strip()


@pytest.mark.sandbox
def test_deb_control_fields(deb: Path) -> None:
    assert _field(deb, "Package") == "rcc"
    assert _field(deb, "Version") == builder().debian_version(project_version())
    assert _field(deb, "Architecture") == "all"
    assert _field(deb, "Depends") == "python3 (>= 3.11), bubblewrap"
    assert _field(deb, "Recommends") == "nftables, iproute2, uidmap, python3-cryptography"
    assert _field(deb, "Suggests") == "podman"
    info = ok(run(["dpkg-deb", "--info", str(deb)])).stdout
    for member in ("control", "md5sums", "postinst", "prerm"):
        assert re.search(rf"\s{member}\s", info), info


@pytest.mark.sandbox
def test_deb_contents_are_the_wheel_launcher_man_page_and_docs(deb: Path, built: Built) -> None:
    listing = ok(run(["dpkg-deb", "--contents", str(deb)])).stdout.splitlines()
    files: dict[str, str] = {}
    for line in listing:
        mode, owner, *_rest = line.split()
        path = line.split(" ./", 1)[1]
        assert owner == "root/root", line
        if not mode.startswith("d"):
            files[path] = mode
    info = f"rcc-{project_version()}.dist-info"
    wheel_names = set(zipfile.ZipFile(built.wheel).namelist()) - {f"{info}/RECORD", f"{info}/licenses/LICENSE"}
    expected = {f"{SITE}/{n}" for n in wheel_names} | {
        f"{SITE}/{info}/INSTALLER",
        "usr/bin/rcc",
        "usr/share/man/man1/rcc.1.gz",
        "usr/share/bash-completion/completions/rcc",
        "usr/share/zsh/vendor-completions/_rcc",
        "usr/share/fish/vendor_completions.d/rcc.fish",
        "usr/share/doc/rcc/copyright",
        "usr/share/doc/rcc/changelog.gz",
        "usr/share/lintian/overrides/rcc",
    }
    assert set(files) == expected
    assert files["usr/bin/rcc"] == "-rwxr-xr-x"
    assert {m for p, m in files.items() if p != "usr/bin/rcc"} == {"-rw-r--r--"}


@pytest.mark.sandbox
def test_lintian_finds_nothing(deb: Path) -> None:
    require(shutil.which("lintian") is not None, "lintian is not installed (apt-get install lintian)")
    res = run(["lintian", "--tag-display-limit", "0", "-I", "--pedantic", str(deb)])
    tags = [line for line in res.stdout.splitlines() if re.match(r"^[EWIPX]: ", line)]
    assert res.returncode == 0 and tags == [], res.stdout + res.stderr


def _dpkg_root(base: Path) -> Path:
    """An empty root with a dpkg database that knows only this machine's python3 and bubblewrap, so dpkg checks
    the package's Depends against the real installed versions."""
    admin = base / "var" / "lib" / "dpkg"
    for d in ("info", "updates", "triggers"):
        (admin / d).mkdir(parents=True, exist_ok=True)
    (admin / "available").touch()
    stanzas = Path("/var/lib/dpkg/status").read_text().split("\n\n")
    keep = [s.strip() + "\n" for s in stanzas if re.match(r"Package: (python3|bubblewrap)\n", s.strip() + "\n")]
    require(len(keep) == 2, "python3 and bubblewrap must be installed Debian packages here")
    (admin / "status").write_text("\n".join(keep))
    for pkg in ("python3", "bubblewrap"):
        (admin / "info" / f"{pkg}.list").touch()
    base.chmod(0o755)
    return base


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.sandbox
def test_deb_installs_runs_and_removes_cleanly_in_a_separate_root(deb: Path, shared_dir: Path) -> None:
    require(shutil.which("dpkg") is not None, "dpkg is needed")
    root = _dpkg_root(shared_dir / "dpkg-root")
    # --force-script-chrootless: maintainer scripts run on the host with DPKG_ROOT set (the empty root has no
    # /bin/sh to chroot into); postinst and prerm honour DPKG_ROOT.
    dpkg = ["dpkg", f"--root={root}", "--force-script-chrootless", "--log=/dev/null"]
    res = ok(run([*dpkg, "-i", str(deb)]))
    assert "warning" not in res.stderr, res.stderr
    assert ok(run([*dpkg, "-s", "rcc"])).stdout.count("Status: install ok installed") == 1

    pkg = root / SITE / "rcc"
    pycs = sorted(pkg.rglob("*.pyc"))
    py = sorted(pkg.rglob("*.py"))
    assert len(pycs) == len(py), "postinst byte-compiles every module"

    # Run the installed launcher with the system Python and the installed tree on the path (the launcher's own
    # `#!/usr/bin/python3 -I` would ignore PYTHONPATH: here the interpreter is named, as the shebang would).
    launcher = root / "usr" / "bin" / "rcc"
    assert launcher.read_text().startswith("#!/usr/bin/python3 -I\n")
    sysver = run(["/usr/bin/python3", "-c", "import sys; sys.exit(sys.version_info < (3, 11))"])
    require(sysver.returncode == 0, "the package targets the system /usr/bin/python3, which must be >= 3.11")
    before = _tree(root)
    for who in ("root", "user"):
        acct = make_account(who, shared_dir / "deb-accounts" / who)
        env = {**acct.env(), "PYTHONPATH": str(root / SITE)}

        def rcc(*args: str, acct: Account = acct, env: dict[str, str] = env) -> subprocess.CompletedProcess[str]:
            return run(acct.argv(["/usr/bin/python3", str(launcher), *args], env), cwd=acct.project, timeout=120)

        where = ok(run(acct.argv(["/usr/bin/python3", "-c", "import rcc; print(rcc.__file__)"], env)))
        assert where.stdout.strip() == str(pkg / "__init__.py")
        assert ok(rcc("--version")).stdout == f"rcc {project_version()}\n"
        assert "usage: rcc COMMAND" in ok(rcc("--help")).stdout
        assert "every required check passed" in ok(rcc("doctor")).stdout
        assert ok(rcc("run", "--no-network", "--", "sh", "-c", "echo ok > f; echo $RCC_SANDBOX")).stdout == "1\n"
        assert (acct.project / "f").read_text() == "ok\n"
    # Running rcc (root included) wrote nothing into the installed tree: postinst's byte-code was used.
    assert _tree(root) == before

    ok(run([*dpkg, "-r", "rcc"]))
    left = {p for p in _tree(root) if p not in ("var", "var/lib") and not p.startswith("var/lib/dpkg")}
    assert left == set(), f"left behind after dpkg -r: {sorted(left)}"


@pytest.mark.sandbox
def test_deb_build_is_reproducible(built: Built, deb: Path, tmp_path: Path) -> None:
    again = Path(
        ok(run([sys.executable, str(BUILDER), "--wheel", str(built.wheel), "--out", str(tmp_path)])).stdout.strip()
    )
    assert again.read_bytes() == deb.read_bytes()


@pytest.mark.sandbox
def test_man_page_renders(deb: Path, tmp_path: Path) -> None:
    require(shutil.which("man") is not None, "man is not installed (apt-get install man-db)")
    ok(run(["dpkg-deb", "-x", str(deb), str(tmp_path)]))
    page = ok(run(["man", "--warnings", "-l", str(tmp_path / "usr/share/man/man1/rcc.1.gz")],
                  env={"MANWIDTH": "100", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}))  # fmt: skip
    assert "rcc run [OPTIONS] [--] COMMAND" in page.stdout
    assert page.stderr == "", page.stderr


@pytest.mark.sandbox
def test_deb_completions_are_what_rcc_completion_prints_and_bash_loads_them(deb: Path, tmp_path: Path) -> None:
    from rcc.commands.completion import render

    ok(run(["dpkg-deb", "-x", str(deb), str(tmp_path)]))
    share = tmp_path / "usr/share"
    for shell, rel in (
        ("bash", "bash-completion/completions/rcc"),
        ("zsh", "zsh/vendor-completions/_rcc"),
        ("fish", "fish/vendor_completions.d/rcc.fish"),
    ):
        assert (share / rel).read_text() == render(shell), rel
    # bash-completion loads completions/<command> on demand: source it as that does, then complete
    prog = (
        f"source {share / 'bash-completion/completions/rcc'}; "
        'COMP_WORDS=(rcc run --back); COMP_CWORD=2; _rcc; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    assert ok(run(["bash", "--norc", "--noprofile", "-c", prog])).stdout == "--backend\n"
