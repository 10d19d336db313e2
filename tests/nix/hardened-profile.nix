# What NixOS's hardened profile and kernel do to user namespaces (nixos/modules/profiles/hardened.nix sets
# these with mkDefault), for testing that programs.rcc turns them back on only when asked.
{ lib, ... }:
{
  security.allowUserNamespaces = lib.mkDefault false;
  security.unprivilegedUsernsClone = lib.mkDefault false;
}
