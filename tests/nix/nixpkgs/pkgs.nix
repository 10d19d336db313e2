# Stand-in packages for one system. Same attribute names and shapes as nixpkgs where rcc's Nix files use them.
{ lib, system }:
let
  isLinux = builtins.elem system lib.platforms.linux;
  isDarwin = builtins.elem system lib.platforms.darwin;
  hostPlatform = {
    inherit system isLinux isDarwin;
  };
  runtimeShell = "/bin/sh";

  # What stdenv's setup does for `nix develop` and builds, reduced: the inputs' bin/ on PATH.
  setup = derivation {
    name = "stdenv-stand-in";
    inherit system;
    builder = "/bin/sh";
    args = [
      "-c"
      "/bin/mkdir $out && echo \"$text\" > $out/setup"
    ];
    text = ''for p in $nativeBuildInputs; do PATH="$p/bin:$PATH"; done; export PATH'';
  };

  # stdenv.mkDerivation, reduced: `buildCommand` runs in the host's /bin/sh with the bin/ of
  # nativeBuildInputs (and packages, for mkShell) on PATH. passthru and meta stay out of the build.
  mkDerivation =
    attrs:
    let
      name = attrs.name or "${attrs.pname}-${attrs.version}";
      inputs = (attrs.nativeBuildInputs or [ ]) ++ (attrs.packages or [ ]);
      drv = derivation (
        removeAttrs attrs [
          "passthru"
          "meta"
          "packages"
        ]
        // {
          inherit name system;
          outputs = [ "out" ];
          stdenv = setup;
          builder = attrs.builder or "/bin/sh";
          args = [ ./builder.sh ];
          nativeBuildInputs = inputs;
          extraPath = lib.makeBinPath inputs;
          buildCommand = attrs.buildCommand or "touch $out";
        }
      );
    in
    drv
    // (attrs.passthru or { })
    // {
      meta = attrs.meta or { };
      overrideBuilder = builder: mkDerivation (attrs // { inherit builder; });
    };

  # A host program, made to look like a package: bin/NAME -> the host's binary (may dangle on hosts without it).
  hostTool =
    pname: bins:
    mkDerivation {
      inherit pname;
      version = "host";
      buildCommand = ''
        mkdir -p $out/bin
        ${lib.concatMapStringsSep "\n" (b: "ln -s ${b.host} $out/bin/${b.name}") bins}
      '';
    };
  marker =
    pname:
    mkDerivation {
      inherit pname;
      version = "stand-in";
    };

  # The hook's functions are tests/nix/nixpkgs/install-shell-files.sh, sourced by buildPythonApplication.
  installShellFiles = marker "install-shell-files-hook";

  python3 =
    let
      self = mkDerivation {
        pname = "python3";
        version = "3.11";
        buildCommand = ''
          mkdir -p $out/bin
          ln -s /usr/bin/python3 $out/bin/python3
          ln -s /usr/bin/python3 $out/bin/python
        '';
        passthru = {
          sitePackages = "lib/python3.11/site-packages";
          interpreter = "${self}/bin/python3";
          pkgs = python3Packages;
          # The host's python has none of the packages. With --impure and RCC_NIX_TEST_PYTHON set (the test
          # runner's own interpreter, which has pytest), the environment runs that one instead, so a test can
          # build the `pure-tests` check for real.
          withPackages =
            f:
            let
              host = builtins.getEnv "RCC_NIX_TEST_PYTHON";
              python = if host != "" then host else "${self}/bin/python3";
            in
            mkDerivation {
              name = "python3-3.11-env";
              nativeBuildInputs = [ self ];
              buildCommand = ''
                mkdir -p $out/bin
                printf '#!/bin/sh\nexec %s "$@"\n' ${lib.escapeShellArg python} > $out/bin/python3
                chmod +x $out/bin/python3
                ln -s python3 $out/bin/python
              '';
              passthru.extraLibs = f python3Packages;
            };
        };
      };
    in
    self;

  python3Packages = {
    python = python3;
    hatchling = marker "hatchling";
    pytest = marker "pytest";
    hypothesis = marker "hypothesis";
    pexpect = marker "pexpect";
    mypy = marker "mypy";
    cryptography = marker "cryptography";

    # Like nixpkgs': a pyproject build (the stand-in copies the wheel's packages instead of building a wheel),
    # console scripts from [project.scripts], each wrapped with makeWrapperArgs, and pythonImportsCheck run.
    buildPythonApplication =
      {
        pname,
        version,
        src,
        pyproject ? null,
        format ? null,
        build-system ? [ ],
        dependencies ? [ ],
        makeWrapperArgs ? [ ],
        pythonImportsCheck ? [ ],
        nativeBuildInputs ? [ ],
        postInstall ? "",
        doCheck ? true,
        passthru ? { },
        meta ? { },
        ...
      }:
      assert lib.assertMsg (pyproject == true) "buildPythonApplication: pyproject = true is required here";
      assert lib.assertMsg (format == null) "buildPythonApplication: format is the old interface";
      assert lib.assertMsg (build-system != [ ]) "buildPythonApplication: build-system is empty";
      let
        toml = lib.importTOML (src + "/pyproject.toml");
        packages = toml.tool.hatch.build.targets.wheel.packages;
        scripts = toml.project.scripts or { };
        site = "$out/${python3.sitePackages}";
        entry =
          name: spec:
          let
            parts = builtins.match "([A-Za-z0-9_.]+):([A-Za-z0-9_]+)" spec;
          in
          ''
            cat > $out/bin/.${name}-wrapped <<PY
            #!${python3}/bin/python3
            import sys
            sys.path.insert(0, "${site}")
            from ${builtins.elemAt parts 0} import ${builtins.elemAt parts 1}
            sys.exit(${builtins.elemAt parts 1}())
            PY
            chmod +x $out/bin/.${name}-wrapped
            makeWrapper $out/bin/.${name}-wrapped $out/bin/${name} ${lib.escapeShellArgs makeWrapperArgs}
          '';
      in
      mkDerivation {
        inherit pname version src;
        nativeBuildInputs = build-system ++ dependencies ++ [ python3 ];
        buildCommand = ''
          . ${./make-wrapper.sh}
          mkdir -p ${site} $out/bin
          ${lib.concatMapStringsSep "\n" (p: "cp -r $src/${p} ${site}/") packages}
          ${lib.concatMapStringsSep "\n" (n: entry n scripts.${n}) (builtins.attrNames scripts)}
          python3 -c 'import importlib, sys; sys.path.insert(0, sys.argv[1]); [importlib.import_module(m) for m in sys.argv[2:]]' \
            ${site} ${lib.escapeShellArgs pythonImportsCheck}
          ${lib.optionalString (builtins.elem installShellFiles nativeBuildInputs) ". ${./install-shell-files.sh}"}
          ${postInstall}
        '';
        passthru = passthru // {
          pythonModule = python3;
          inherit makeWrapperArgs doCheck;
        };
        inherit meta;
      };
  };

  pkgs = {
    inherit lib system python3 python3Packages runtimeShell;
    stdenv = {
      inherit hostPlatform mkDerivation;
      inherit (hostPlatform) isLinux isDarwin;
    };
    callPackage =
      f: overrides:
      let
        fn = if builtins.isFunction f then f else import f;
        wanted = builtins.functionArgs fn;
      in
      fn (builtins.intersectAttrs wanted pkgs // overrides);

    bubblewrap = hostTool "bubblewrap" [
      {
        name = "bwrap";
        host = "/usr/bin/bwrap";
      }
    ];
    nftables = hostTool "nftables" [
      {
        name = "nft";
        host = "/usr/sbin/nft";
      }
    ];
    iproute2 = hostTool "iproute2" [
      {
        name = "ip";
        host = "/usr/bin/ip";
      }
    ];
    socat = hostTool "socat" [
      {
        name = "socat";
        host = "/usr/bin/socat";
      }
    ];
    ruff = marker "ruff";
    bashInteractive = hostTool "bash" [
      {
        name = "bash";
        host = "/bin/bash";
      }
    ];
    nixfmt-rfc-style = marker "nixfmt";
    makeWrapper = marker "make-wrapper-hook";
    inherit installShellFiles;

    writeShellScript =
      name: text:
      derivation {
        inherit name system;
        builder = "/bin/sh";
        args = [
          "-c"
          ''printf '%s\n' "#!${runtimeShell}" "$text" > $out && /bin/chmod +x $out''
        ];
        inherit text;
      };

    runCommand =
      name: env: buildCommand:
      mkDerivation (env // { inherit name buildCommand; });

    # `nix develop` insists on a bash builder; it runs get-env.sh instead of buildCommand.
    mkShell =
      attrs:
      (mkDerivation (
        {
          name = "nix-shell";
        }
        // attrs
      )).overrideBuilder
        "/bin/bash";
  };
in
pkgs
