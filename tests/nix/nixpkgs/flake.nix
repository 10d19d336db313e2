# A small stand-in for nixpkgs, for testing rcc's flake offline (no GitHub, no binary cache).
#
# It mimics the attribute names rcc's flake.nix and nix/ use, with the same shapes, so one flake.nix evaluates
# against both. It is NOT nixpkgs: builders are the host's /bin/sh and coreutils (Nix's build sandbox must be
# off), "python3" is the host's /usr/bin/python3, tools are symlinks to the host's binaries, and the NixOS
# module system is a small evaluator over stub declarations of the few NixOS options rcc's module sets.
# What this cannot prove: that the real attribute names exist and the real build passes (docs/nix.md says how
# a maintainer checks that before a release).
{
  description = "stand-in nixpkgs for rcc's offline flake tests";

  outputs =
    { self }:
    let
      lib = import ./lib.nix;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "x86_64-darwin"
        "aarch64-darwin"
      ];
    in
    {
      lib = lib // {
        nixosSystem =
          { system, modules }:
          lib.evalModules {
            modules = modules ++ [ ./nixos-options.nix ];
            specialArgs.pkgs = self.legacyPackages.${system};
          };
      };
      legacyPackages = lib.genAttrs systems (system: import ./pkgs.nix { inherit lib system; });
    };
}
