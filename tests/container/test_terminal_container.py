"""Interactive sessions through the container backend: a real pty, as an agent's user has it."""

from __future__ import annotations

import pytest
from ctrbox import HERE, Box, base_image

pytestmark = pytest.mark.podman


@pytest.mark.parametrize("network", ["none", "proxy"])  # run, or create + init + start --attach
def test_detaching_the_session_with_ctrl_p_ctrl_q_is_not_possible(box: Box, network: str) -> None:
    """podman's default detach keys (Ctrl-P Ctrl-Q) would leave the agent running headless; Ctrl-P belongs to it."""
    pexpect = pytest.importorskip("pexpect")
    driver = [box.python, str(HERE / "drive.py"), "--engine", box.engine, "--image", base_image()]
    driver += ["--network", network, "--", "sh"]
    argv = box.as_user(driver)
    child = pexpect.spawn(argv[0], argv[1:], cwd=str(box.project), encoding="utf-8", timeout=60)
    try:
        child.sendline("tty; echo $((6*7))")
        child.expect("/dev/pts/")  # control: a terminal of the container's own, the command is interactive
        child.expect("42")
        child.send("\x10\x11")  # Ctrl-P Ctrl-Q
        child.sendline("")
        child.sendline("echo still-$((1+1))")
        child.expect("still-2")  # the session is still attached
        child.sendline("exit 3")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 3
