# For `import`ing the stand-in outside flakes (tests/nix/eval-module.nix).
let
  flake = import ./flake.nix;
  self = flake.outputs { inherit self; };
in
self
