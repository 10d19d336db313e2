# NixOS module: `programs.rcc.enable = true;` installs rcc and makes the machine ready for it.
#
#   programs.rcc.firewall.enable   rcc's nftables table (what `sudo rcc setup --firewall` installs on other
#                                  distributions), loaded through networking.nftables so NixOS owns it
#   programs.rcc.podman.enable     podman for `--backend podman`
#   programs.rcc.userNamespaces    on by default: bubblewrap needs unprivileged user namespaces, which the
#                                  hardened profile and kernel turn off
self:
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.programs.rcc;
  python = cfg.package.pythonModule or pkgs.python3;

  # Rendered by rcc's own renderer at build time (no rules written twice, no import-from-derivation).
  firewallRuleset =
    pkgs.runCommand "rcc-firewall.nft"
      {
        nativeBuildInputs = [ python ];
      }
      ''
        PYTHONPATH=${cfg.package}/${python.sitePackages} python3 ${./render-firewall.py} \
          ${lib.escapeShellArgs ([ cfg.firewall.interfacePrefix ] ++ map toString cfg.firewall.proxyPorts)} > $out
      '';
in
{
  options.programs.rcc = {
    enable = lib.mkEnableOption "rcc, a kernel-enforced sandbox for AI coding agents";

    package = lib.mkOption {
      type = lib.types.package;
      default = self.packages.${pkgs.stdenv.hostPlatform.system}.rcc;
      defaultText = lib.literalExpression "rcc.packages.\${pkgs.stdenv.hostPlatform.system}.rcc";
      description = "The rcc package to install.";
    };

    firewall = {
      enable = lib.mkEnableOption "rcc's nftables table (drops everything from rcc's sandbox interfaces except TCP to the egress proxy), through networking.nftables";
      interfacePrefix = lib.mkOption {
        type = lib.types.str;
        default = "rcc";
        description = "Name prefix of the interfaces rcc creates for its sandboxes.";
      };
      proxyPorts = lib.mkOption {
        type = lib.types.listOf lib.types.port;
        default = [ 3128 ];
        description = "TCP ports of rcc's egress proxy that sandboxes may reach on the host.";
      };
    };

    podman.enable = lib.mkEnableOption "podman, for rcc's container backend";

    userNamespaces = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = ''
        Allow unprivileged user namespaces, which bubblewrap needs. The hardened profile turns them off
        (security.allowUserNamespaces, and kernel.unprivileged_userns_clone on the hardened kernel).
      '';
    };
  };

  config = lib.mkIf cfg.enable (
    lib.mkMerge [
      { environment.systemPackages = [ cfg.package ]; }

      # Plain definitions: they win over the hardened profile's mkDefault, and conflict loudly with an
      # explicit `false` elsewhere (never a silent weaker setup).
      (lib.mkIf cfg.userNamespaces {
        security.allowUserNamespaces = true;
        security.unprivilegedUsernsClone = true;
      })

      (lib.mkIf cfg.podman.enable { virtualisation.podman.enable = true; })

      (lib.mkIf cfg.firewall.enable {
        networking.nftables.enable = true;
        # The file replaces table inet rcc in one transaction and touches nothing else.
        networking.nftables.ruleset = ''include "${firewallRuleset}"'';
      })
    ]
  );
}
