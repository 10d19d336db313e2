# Homebrew formula for rcc. NOT YET RUN WITH BREW: no Homebrew or macOS where it was written (docs/install.md);
# the macOS release workflow (.github/workflows/macos.yml) installs the built package on macOS runners.
# `url` and `sha256` are filled from the built sdist by packaging/homebrew/render.py at release time; the
# all-zero checksum below makes an unrendered formula fail at download ("SHA256 mismatch"), never install.
class Rcc < Formula
  include Language::Python::Virtualenv

  desc "Run AI coding agents in a kernel-enforced sandbox"
  homepage "https://github.com/OWNER/rcc"
  url "https://github.com/OWNER/rcc/releases/download/v0.0.0/rcc-0.0.0.tar.gz"
  sha256 "0000000000000000000000000000000000000000000000000000000000000000"
  license "MIT"

  depends_on "python@3.12"

  # macOS: nothing more. The sandbox is /usr/bin/sandbox-exec (Seatbelt) and the optional firewall /sbin/pfctl,
  # both part of macOS; no Linux-only tool is installed there.
  on_linux do
    # rcc's default sandbox; Homebrew's copy is used unless a system /usr/bin/bwrap comes first on PATH
    # (Ubuntu's AppArmor allows only that one to create user namespaces: `rcc doctor` says which is used).
    depends_on "bubblewrap"
  end

  def install
    # rcc has no runtime dependencies, so there are no resources; pip builds the sdist with hatchling.
    virtualenv_install_with_resources
    # `rcc completion bash|zsh|fish|man`: generated from the tables rcc's own parser uses
    generate_completions_from_executable(bin/"rcc", "completion")
    (man1/"rcc.1").write Utils.safe_popen_read(bin/"rcc", "completion", "man")
  end

  def caveats
    <<~EOS
      Run `rcc setup`, then `rcc doctor`.
      On macOS rcc sandboxes with Seatbelt (/usr/bin/sandbox-exec, part of macOS): see docs/macos.md for what it
      guarantees and where it differs from Linux.
      The optional kernel firewall needs root: sudo "$(command -v rcc)" setup --firewall
    EOS
  end

  test do
    assert_match "rcc #{version}", shell_output("#{bin}/rcc --version")
    assert_match "usage: rcc COMMAND", shell_output("#{bin}/rcc --help")
    assert_predicate bash_completion/"rcc", :exist?
    assert_predicate zsh_completion/"_rcc", :exist?
    assert_predicate fish_completion/"rcc.fish", :exist?
    assert_predicate man1/"rcc.1", :exist?
    # The plan is pure: no sandbox is started, so this works in brew's test environment on either OS.
    (testpath/"project").mkpath
    plan = shell_output("#{bin}/rcc run --project #{testpath}/project --no-network --dry-run -- true")
    assert_match "\"argv\"", plan
    # The macOS profile, rendered on either OS (nothing runs): Seatbelt's deny-by-default base.
    profile = shell_output("#{bin}/rcc run --project #{testpath}/project --backend seatbelt --dry-run -- true")
    assert_match "(deny default", profile
  end
end
