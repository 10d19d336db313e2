# Evaluate rcc's NixOS module with the stand-in nixpkgs' module system, the way a NixOS configuration would
# (nixpkgs.lib.nixosSystem { modules = [ rcc.nixosModules.default { programs.rcc... } ]; }), and return the
# option values the module promises to set. Used by test_flake.py with `nix eval --apply`.
{
  module,
  settings, # a list of modules
  system ? "x86_64-linux",
}:
let
  nixpkgs = import ./nixpkgs;
  inherit (nixpkgs.lib.nixosSystem {
    inherit system;
    modules = [ module ] ++ settings;
  }) config;
in
{
  systemPackages = map (p: p.name) config.environment.systemPackages;
  systemPackagePaths = map (p: p.outPath) config.environment.systemPackages;
  allowUserNamespaces = config.security.allowUserNamespaces;
  unprivilegedUsernsClone = config.security.unprivilegedUsernsClone;
  podman = config.virtualisation.podman.enable;
  nftables = config.networking.nftables.enable;
  nftablesRuleset = config.networking.nftables.ruleset;
  # The derivations the ruleset text refers to (the rendered table), for the test to build.
  nftablesRulesetDrvs = builtins.attrNames (builtins.getContext config.networking.nftables.ruleset);
}
