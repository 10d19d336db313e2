# rcc as a Nix package.
#
# The wrapper puts rcc's runtime tools at the END of PATH (--suffix), so a system copy wins when the user has
# one: Ubuntu's AppArmor (23.10+) lets /usr/bin/bwrap create user namespaces but blocks a bwrap that lives in
# /nix/store. RCC_NIX_RUNTIME_PATH tells `rcc doctor` which directories are the Nix fallbacks, so it can say
# which bwrap is used and why; RCC_EXECUTABLE is the wrapper's own absolute path. Podman is the user's own (never wrapped); on darwin sandbox-exec and pfctl are
# system tools in /usr/bin, so nothing from nixpkgs is needed there.
{
  lib,
  stdenv,
  python3Packages,
  bubblewrap,
  nftables,
  iproute2,
  installShellFiles,
  src,
}:

let
  pyproject = lib.importTOML (src + "/pyproject.toml");

  # bwrap (sandbox), nft (egress firewall table), ip (network namespace setup). Linux only.
  runtimeTools = lib.optionals stdenv.hostPlatform.isLinux [
    bubblewrap
    nftables
    iproute2
  ];
  runtimePath = lib.makeBinPath runtimeTools;
in
python3Packages.buildPythonApplication {
  pname = "rcc";
  inherit (pyproject.project) version;
  inherit src;

  pyproject = true;
  build-system = [ python3Packages.hatchling ];
  # cryptography: credentials' per-session CA (imported only by a session with [credentials]).
  dependencies = [ python3Packages.cryptography ];
  nativeBuildInputs = [ installShellFiles ];

  # `rcc completion bash|zsh|fish|man` of the installed package: generated from the tables rcc's parser uses.
  # Run with the build's Python against $out (the wrapper does not exist yet); the page's date is
  # SOURCE_DATE_EPOCH's, so the output stays reproducible.
  postInstall = ''
    rcc_gen() {
      PYTHONPATH="$out/${python3Packages.python.sitePackages}" PYTHONDONTWRITEBYTECODE=1 \
        ${python3Packages.python.interpreter} -m rcc completion "$1"
    }
    rcc_gen bash > rcc.bash
    rcc_gen zsh > _rcc
    rcc_gen fish > rcc.fish
    rcc_gen man > rcc.1
    installShellCompletion --cmd rcc --bash rcc.bash --zsh _rcc --fish rcc.fish
    installManPage rcc.1
  '';

  makeWrapperArgs =
    [
      # nixpkgs' Python wrapper sets sys.argv[0] to "rcc", and `sudo` does not search the user's Nix profile:
      # the absolute path lets `rcc setup` print a sudo step that works (`sudo /nix/store/...-rcc/bin/rcc ...`).
      "--set"
      "RCC_EXECUTABLE"
      "${placeholder "out"}/bin/rcc"
    ]
    ++ lib.optionals (runtimeTools != [ ]) [
      "--suffix"
      "PATH"
      ":"
      runtimePath
      "--set"
      "RCC_NIX_RUNTIME_PATH"
      runtimePath
    ];

  # The tests need bubblewrap, network namespaces and root; the pure tier runs in `checks` (flake.nix).
  doCheck = false;
  pythonImportsCheck = [ "rcc" ];

  passthru = {
    inherit runtimeTools;
  };

  meta = {
    description = pyproject.project.description;
    license = lib.licenses.mit;
    mainProgram = "rcc";
    platforms = lib.platforms.linux ++ lib.platforms.darwin;
  };
}
