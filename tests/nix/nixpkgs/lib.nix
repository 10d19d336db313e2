# Stand-in for nixpkgs' lib: the functions rcc's Nix files use, with the same names and meanings, plus a small
# module evaluator (evalModules) that supports what NixOS modules like rcc's use: options with types and
# defaults, mkIf, mkMerge, mkDefault/mkOverride, and an error for a definition of an option nobody declared.
let
  inherit (builtins)
    attrNames
    concatLists
    concatStringsSep
    elem
    filter
    foldl'
    isAttrs
    isFunction
    isList
    listToAttrs
    ;

  lib = rec {
    genAttrs =
      names: f:
      listToAttrs (
        map (n: {
          name = n;
          value = f n;
        }) names
      );
    inherit (builtins) mapAttrs attrNames attrValues concatStringsSep;
    optionals = cond: list: if cond then list else [ ];
    optional = cond: x: if cond then [ x ] else [ ];
    optionalString = cond: s: if cond then s else "";
    concatMapStringsSep = sep: f: list: concatStringsSep sep (map f list);
    importTOML = path: builtins.fromTOML (builtins.readFile path);
    assertMsg = pred: msg: pred || throw msg;
    unique = foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ];

    getBin = pkg: pkg.bin or pkg;
    makeBinPath = pkgs: concatMapStringsSep ":" (p: "${getBin p}/bin") pkgs;
    # Like nixpkgs, but stricter: without meta.mainProgram nixpkgs only warns; here it is an error.
    getExe =
      pkg:
      "${getBin pkg}/bin/${
        pkg.meta.mainProgram or (throw "lib.getExe: ${pkg.name or "?"} has no meta.mainProgram")
      }";

    escapeShellArg =
      arg:
      let
        s = toString arg;
      in
      if builtins.match "[[:alnum:],._+:@%/-]+" s != null then
        s
      else
        "'${builtins.replaceStrings [ "'" ] [ "'\\''" ] s}'";
    escapeShellArgs = args: concatStringsSep " " (map escapeShellArg args);

    platforms = {
      linux = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      darwin = [
        "x86_64-darwin"
        "aarch64-darwin"
      ];
    };
    licenses.mit = {
      spdxId = "MIT";
      shortName = "mit";
      fullName = "MIT License";
    };

    # ---- modules -------------------------------------------------------------------------------------------
    literalExpression = text: {
      _type = "literalExpression";
      inherit text;
    };
    mkOption = attrs: attrs // { _type = "option"; };
    mkEnableOption =
      name:
      mkOption {
        type = types.bool;
        default = false;
        example = true;
        description = "Whether to enable ${name}.";
      };
    mkIf = condition: content: {
      _type = "if";
      inherit condition content;
    };
    mkMerge = contents: {
      _type = "merge";
      inherit contents;
    };
    mkOverride = priority: content: {
      _type = "override";
      inherit priority content;
    };
    mkDefault = mkOverride 1000;
    mkForce = mkOverride 50;

    types =
      let
        simple = name: check: { inherit name check; };
      in
      {
        bool = simple "bool" builtins.isBool;
        str = simple "str" builtins.isString;
        int = simple "int" builtins.isInt;
        port = simple "port" (x: builtins.isInt x && x >= 0 && x <= 65535);
        package = simple "package" (x: isAttrs x && (x.type or null) == "derivation");
        lines = {
          name = "lines";
          check = builtins.isString;
          merge = concatStringsSep "\n";
        };
        listOf = t: {
          name = "listOf ${t.name}";
          check = x: isList x && builtins.all t.check x;
          merge = concatLists;
        };
      };

    evalModules =
      {
        modules,
        specialArgs ? { },
      }:
      let
        args = specialArgs // {
          inherit lib config options;
        };
        load =
          m0:
          let
            m = if builtins.isPath m0 || builtins.isString m0 then import m0 else m0;
            v = if isFunction m then m args else m;
          in
          if v ? options || v ? config then
            {
              options = v.options or { };
              config = v.config or { };
            }
          else
            {
              options = { };
              config = v;
            };
        loaded = map load modules;
        options = foldl' mergeDecls { } (map (m: m.options) loaded);
        defs = map (m: m.config) loaded;
        config = evalNode [ ] options defs;
        # Like NixOS, every definition must be of a declared option (checked when the result is used).
        bad = undeclared [ ] options defs;
      in
      {
        config =
          if bad == [ ] then
            config
          else
            throw "The option `${concatStringsSep "." (builtins.head bad)}' does not exist.";
        inherit options;
      };

    undeclared =
      path: decl: defs:
      if isOption decl then
        [ ]
      else
        concatLists (
          map (
            n: if decl ? ${n} then undeclared (path ++ [ n ]) decl.${n} (childDefs n defs) else [ (path ++ [ n ]) ]
          ) (childNames defs)
        );

    # Declarations from several modules; declaring one option twice is an error, as in NixOS.
    mergeDecls =
      a: b:
      a
      // mapAttrs (
        n: v:
        if !(a ? ${n}) then
          v
        else if isOption v || isOption a.${n} then
          throw "option `${n}' is declared twice"
        else
          mergeDecls a.${n} v
      ) b;
    isOption = x: isAttrs x && (x._type or null) == "option";
    isProperty = x: isAttrs x && elem (x._type or null) [ "if" "merge" "override" ];

    # The definitions of child `name`, with mkIf/mkOverride pushed down into them (conditions not forced:
    # the attribute names of `config` must be known before any option value is).
    childDefs =
      name: defs:
      concatLists (
        map (
          d:
          if !isAttrs d then
            [ ]
          else if d._type or null == "merge" then
            childDefs name d.contents
          else if d._type or null == "if" then
            map (c: mkIf d.condition c) (childDefs name [ d.content ])
          else if d._type or null == "override" then
            map (c: mkOverride d.priority c) (childDefs name [ d.content ])
          else if d ? ${name} then
            [ d.${name} ]
          else
            [ ]
        ) defs
      );
    childNames =
      defs:
      unique (
        concatLists (
          map (
            d:
            if !isAttrs d then
              [ ]
            else if d._type or null == "merge" then
              childNames d.contents
            else if elem (d._type or null) [ "if" "override" ] then
              childNames [ d.content ]
            else
              attrNames d
          ) defs
        )
      );
    # A leaf's definitions as { value, priority } after evaluating conditions.
    flatten =
      priority: d:
      if !isAttrs d || !isProperty d then
        [ { inherit priority; value = d; } ]
      else if d._type == "merge" then
        concatLists (map (flatten priority) d.contents)
      else if d._type == "if" then
        (if d.condition then flatten priority d.content else [ ])
      else
        flatten d.priority d.content;

    evalNode =
      path: decl: defs:
      if isOption decl then
        evalOption path decl defs
      else
        let
          names = unique (attrNames decl ++ childNames defs);
        in
        genAttrs names (
          n:
          if decl ? ${n} then
            evalNode (path ++ [ n ]) decl.${n} (childDefs n defs)
          else
            throw "The option `${concatStringsSep "." (path ++ [ n ])}' does not exist."
        );

    evalOption =
      path: opt: defs:
      let
        where = concatStringsSep "." path;
        all = concatLists (map (flatten 100) defs);
        best = foldl' (m: d: if d.priority < m then d.priority else m) 10000 all;
        values = map (d: d.value) (filter (d: d.priority == best) all);
        checked = map (
          v:
          if opt.type.check v then
            v
          else
            throw "The option `${where}' has a value that is not of type ${opt.type.name}."
        ) values;
      in
      if values == [ ] then
        opt.default or (throw "The option `${where}' is used but not defined.")
      else if opt.type ? merge then
        opt.type.merge checked
      else if builtins.length (unique checked) == 1 then
        builtins.head checked
      else
        throw "The option `${where}' has conflicting definition values.";
  };
in
lib
