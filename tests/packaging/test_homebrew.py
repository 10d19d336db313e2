"""The Homebrew formula. No Homebrew and no macOS here, so this proves less than `brew install` would: the
rendered formula is valid Ruby (`ruby -c`), declares what it should against a stand-in for Homebrew's DSL
(formula_probe.rb), its url and sha256 are those of the sdist this build makes, and the commands its `test do`
block runs pass with rcc installed from that sdist's wheel. The renderer's refusals are pure tests."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import re
import shlex
import shutil
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest
from pkgworld import REPO, Built, ok, project_version, run

from rcctest import python_for, require

FORMULA = REPO / "packaging" / "homebrew" / "rcc.rb"
RENDER = REPO / "packaging" / "homebrew" / "render.py"
PROBE = Path(__file__).with_name("formula_probe.rb")
URL_BASE = "https://github.com/OWNER/rcc/releases/download"


def renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_formula", RENDER)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _sdist(path: Path, pkg_info: str, top: str) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        data = pkg_info.encode()
        info = tarfile.TarInfo(f"{top}/PKG-INFO")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return path


# ----------------------------------------------------------------------------------------------- pure tier
def test_committed_formula_cannot_install_before_rendering() -> None:
    """The checked-in formula has an all-zero sha256: brew would stop at the download, never install it."""
    text = FORMULA.read_text()
    assert re.findall(r'^  sha256 "([0-9a-f]{64})"$', text, re.M) == ["0" * 64]


@pytest.mark.parametrize(
    ("why", "name", "pkg_info", "top"),
    [
        ("not rcc", "rcc-0.1.0.tar.gz", "Name: other\nVersion: 0.1.0\n", "rcc-0.1.0"),
        ("name/version mismatch", "rcc-9.9.9.tar.gz", "Name: rcc\nVersion: 0.1.0\n", "rcc-0.1.0"),
        ("top directory mismatch", "rcc-0.1.0.tar.gz", "Name: rcc\nVersion: 0.1.0\n", "other-0.1.0"),
    ],
)
def test_render_refuses_an_sdist_that_is_not_rccs(tmp_path: Path, why: str, name: str, pkg_info: str, top: str) -> None:
    sdist = _sdist(tmp_path / name, pkg_info, top)
    res = run([sys.executable, str(RENDER), "--sdist", str(sdist), "--out", str(tmp_path / "rcc.rb")])
    assert res.returncode == 65, (why, res.stderr)
    assert not (tmp_path / "rcc.rb").exists()


def test_render_refuses_a_hostile_url_base_and_an_ambiguous_formula(tmp_path: Path) -> None:
    sdist = _sdist(tmp_path / "rcc-0.1.0.tar.gz", "Name: rcc\nVersion: 0.1.0\n", "rcc-0.1.0")
    mod = renderer()
    for base in ('https://x/"; system "id', "http://plain.example/rcc", "https://x/#{`id`}"):
        with pytest.raises(mod.RenderError):
            mod.render(FORMULA.read_text(), sdist, base)
    doubled = FORMULA.read_text().replace("  license", '  url "https://second.example/x.tar.gz"\n  license')
    with pytest.raises(mod.RenderError, match="exactly one url"):
        mod.render(doubled, sdist, URL_BASE)
    # Control: the real formula and a plain base render.
    assert 'url "https://x.example/dl/v0.1.0/rcc-0.1.0.tar.gz"' in mod.render(
        FORMULA.read_text(), sdist, "https://x.example/dl"
    )


# -------------------------------------------------------------------------------------- with the real sdist
@pytest.fixture(scope="module")
def rendered(built: Built, shared_dir: Path) -> Path:
    out = shared_dir / "homebrew" / "rcc.rb"
    out.parent.mkdir(parents=True, exist_ok=True)
    ok(run([sys.executable, str(RENDER), "--sdist", str(built.sdist), "--url-base", URL_BASE, "--out", str(out)]))
    return out


def _ruby() -> str:
    ruby = shutil.which("ruby")
    require(ruby is not None, "ruby is not installed (apt-get install ruby)")
    assert ruby
    return ruby


@pytest.mark.sandbox
def test_rendered_formula_is_valid_ruby(rendered: Path) -> None:
    assert ok(run([_ruby(), "-c", str(rendered)])).stdout.strip() == "Syntax OK"


@pytest.mark.sandbox
def test_rendered_formula_matches_the_built_sdist(rendered: Path, built: Built) -> None:
    declared = json.loads(ok(run([_ruby(), str(PROBE), str(rendered)])).stdout)
    v = project_version()
    assert declared["url"] == f"{URL_BASE}/v{v}/rcc-{v}.tar.gz"
    assert declared["url"].rsplit("/", 1)[1] == built.sdist.name
    assert declared["sha256"] == hashlib.sha256(built.sdist.read_bytes()).hexdigest()
    # Homebrew takes the version from the url's file name.
    m = re.search(r"/rcc-(\d[\w.]*)\.tar\.gz$", declared["url"])
    assert m and m.group(1) == v
    assert declared["superclass"] == "Formula" and declared["includes_virtualenv"] is True
    assert declared["depends_on"] == ["python@3.12"]
    assert declared["on_linux"]["depends_on"] == ["bubblewrap"]
    assert declared["on_macos"]["depends_on"] == []
    assert declared["license"] == "MIT"
    assert declared["test_block"] is True
    assert "install" in declared["instance_methods"]


@pytest.mark.sandbox
def test_formula_test_block_commands_pass_with_the_built_package(built: Built, shared_dir: Path) -> None:
    """Each `shell_output("#{bin}/rcc ...")` of the formula's `test do`, run against rcc installed from the
    wheel; shell_output fails on a non-zero exit, and each assert_match pattern must be in some output."""
    text = FORMULA.read_text()
    block = text.split("  test do\n", 1)[1]
    commands = re.findall(r'shell_output\("#\{bin\}/rcc ([^"]*)"\)', block)
    patterns = re.findall(r'assert_match "((?:[^"\\]|\\.)*)"', block)
    assert len(commands) >= 3 and len(patterns) >= 3, block

    venv = shared_dir / "homebrew" / "venv"
    ok(run([python_for("user"), "-m", "venv", str(venv)]))
    ok(run([str(venv / "bin" / "pip"), "install", "-q", "--no-index", str(built.wheel)]))
    testpath = shared_dir / "homebrew" / "testpath"
    (testpath / "project").mkdir(parents=True, exist_ok=True)
    env = {"HOME": str(testpath), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    outputs = []
    for cmd in commands:
        argv = shlex.split(cmd.replace("#{testpath}", str(testpath)))
        res = ok(run([str(venv / "bin" / "rcc"), *argv], env=env, cwd=testpath))
        outputs.append(res.stdout)
    for pat in patterns:
        want = pat.replace("#{version}", project_version()).replace('\\"', '"')
        assert any(want in out for out in outputs), (want, outputs)


@pytest.mark.sandbox
def test_formula_install_generates_completions_and_man_page_with_the_built_package(
    built: Built, shared_dir: Path
) -> None:
    """The formula's install step asks the installed rcc for its completions (Homebrew's
    generate_completions_from_executable runs `rcc completion bash|zsh|fish`) and its man page: those commands,
    run against rcc installed from the wheel, print what `rcc completion` renders."""
    text = FORMULA.read_text()
    install = text.split("  def install\n", 1)[1].split("\n  end\n", 1)[0]
    assert 'generate_completions_from_executable(bin/"rcc", "completion")' in install
    assert '(man1/"rcc.1").write Utils.safe_popen_read(bin/"rcc", "completion", "man")' in install
    venv = shared_dir / "homebrew" / "venv-completions"
    ok(run([python_for("user"), "-m", "venv", str(venv)]))
    ok(run([str(venv / "bin" / "pip"), "install", "-q", "--no-index", str(built.wheel)]))
    from rcc.commands.completion import render

    for shell in ("bash", "zsh", "fish"):  # Homebrew's default: the shell's name as the last argument
        assert ok(run([str(venv / "bin" / "rcc"), "completion", shell])).stdout == render(shell)
    assert ok(run([str(venv / "bin" / "rcc"), "completion", "man"])).stdout.startswith(".TH RCC 1 ")
