# Stub declarations of the NixOS options rcc's module sets, with NixOS's names, types and defaults
# (nixos/modules/config/system-path.nix, security/misc.nix, services/networking/nftables.nix,
# virtualisation/podman). A definition of any other option is an error, as on NixOS.
{ lib, ... }:
{
  options = {
    environment.systemPackages = lib.mkOption {
      type = lib.types.listOf lib.types.package;
      default = [ ];
    };
    security.allowUserNamespaces = lib.mkOption {
      type = lib.types.bool;
      default = true;
    };
    security.unprivilegedUsernsClone = lib.mkOption {
      type = lib.types.bool;
      default = false;
    };
    virtualisation.podman.enable = lib.mkOption {
      type = lib.types.bool;
      default = false;
    };
    networking.nftables.enable = lib.mkOption {
      type = lib.types.bool;
      default = false;
    };
    networking.nftables.ruleset = lib.mkOption {
      type = lib.types.lines;
      default = "";
    };
  };
}
