# The stand-in stdenv's builder (run by the host's /bin/sh; Nix's build sandbox is off in these tests).
set -eu
PATH="${extraPath:+$extraPath:}/usr/bin:/bin"
export PATH
cd "${TMPDIR:-/tmp}"
eval "$buildCommand"
