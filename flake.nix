{
  description = "rcc (Restricted Claude Code): run AI coding agents in a kernel-enforced sandbox";

  # One input. Tests override it with a small stand-in (tests/nix/nixpkgs) that has no network needs:
  #   nix eval --override-input nixpkgs path:./tests/nix/nixpkgs --no-write-lock-file ...
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "x86_64-darwin"
        "aarch64-darwin"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # `nix run .#NAME -- ARGS` runs `rcc SUBCOMMAND ARGS`; "$@" keeps every argument intact.
      subcommandApps = {
        claude = "claude";
        codex = "codex";
        gemini = "gemini";
        aider = "aider";
        shell = "shell";
        setup = "setup";
      };

      # Pytest markers of tiers that need bubblewrap, namespaces, root, podman, an agent or nix itself: none of
      # them can run inside the Nix build sandbox. tests/nix checks this list against pyproject.toml.
      impureMarkers = [
        "sandbox"
        "netns"
        "podman"
        "agent"
        "nix"
      ];
    in
    {
      overlays.default = final: prev: {
        rcc = final.callPackage ./nix/package.nix { src = self; };
      };

      packages = forAllSystems (pkgs: rec {
        rcc = pkgs.callPackage ./nix/package.nix { src = self; };
        default = rcc;
      });

      apps = forAllSystems (
        pkgs:
        let
          rcc = self.packages.${pkgs.stdenv.hostPlatform.system}.rcc;
          app = program: description: {
            type = "app";
            inherit program;
            meta = { inherit description; };
          };
        in
        {
          default = app (lib.getExe rcc) "rcc";
        }
        // lib.mapAttrs (
          name: subcommand:
          app "${pkgs.writeShellScript "rcc-${name}" ''exec ${lib.getExe rcc} ${subcommand} "$@"''}" "rcc ${subcommand}"
        ) subcommandApps
      );

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages =
            [
              (pkgs.python3.withPackages (ps: [
                ps.hatchling
                ps.pytest
                ps.hypothesis
                ps.pexpect
                ps.mypy
              ]))
              pkgs.ruff
            ]
            ++ lib.optionals pkgs.stdenv.hostPlatform.isLinux [
              pkgs.bubblewrap
              pkgs.nftables
              pkgs.iproute2
              pkgs.socat
            ];
          shellHook = ''
            echo "rcc dev shell: python -m rcc, pytest -m 'not sandbox' (pure tier), ruff check, mypy"
            export PYTHONPATH="$PWD/src''${PYTHONPATH:+:$PYTHONPATH}"
          '';
        };
      });

      checks = forAllSystems (
        pkgs:
        let
          rcc = self.packages.${pkgs.stdenv.hostPlatform.system}.rcc;
          python = pkgs.python3.withPackages (ps: [
            ps.pytest
            ps.hypothesis
            ps.pexpect
          ]);
        in
        {
          inherit rcc;
          # The pure test tier: bubblewrap cannot run inside the Nix build sandbox.
          pure-tests =
            pkgs.runCommand "rcc-pure-tests"
              {
                nativeBuildInputs = [ python ];
                passthru = { inherit impureMarkers; };
              }
              ''
                cp -r ${self} source
                chmod -R u+w source
                cd source
                export HOME="$TMPDIR" PYTHONPATH="$PWD/src"
                python -m pytest -p no:cacheprovider -m ${
                  lib.escapeShellArg (lib.concatMapStringsSep " and " (m: "not ${m}") impureMarkers)
                }
                touch $out
              '';
        }
      );

      formatter = forAllSystems (pkgs: pkgs.nixfmt-rfc-style);

      nixosModules.default = import ./nix/module.nix self;
    };
}
