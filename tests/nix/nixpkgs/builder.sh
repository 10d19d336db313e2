# The stand-in stdenv's builder (run by the host's /bin/sh; Nix's build sandbox is off in these tests).
set -eu
# Real Nix builds as an unprivileged build user. Here the build may run as root: a user namespace without a
# mapping makes us "nobody" (uid 65534) for everything that asks, while files keep working as before.
if [ "$(/usr/bin/id -u)" = 0 ] && [ -z "${RCC_STAND_IN_UNPRIVILEGED:-}" ]; then
    RCC_STAND_IN_UNPRIVILEGED=1 exec /usr/bin/unshare --user /bin/sh "$0" "$@"
fi
PATH="${extraPath:+$extraPath:}/usr/bin:/bin"
export PATH
cd "${TMPDIR:-/tmp}"
eval "$buildCommand"
