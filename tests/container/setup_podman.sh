#!/bin/sh
# CI setup for the container backend's tests on this machine kind (Debian 12, root, cgroup v1/v2 hybrid, no
# container registry, no CAP_SYS_RESOURCE). Idempotent; run as root:
#     tests/container/setup_podman.sh [TEST_USER]        (default rccuser)
# 1. installs podman and debootstrap (apt);
# 2. hybrid cgroups: moves every controller still on the cgroup v2 hierarchy (here: hugetlb) to its own v1 mount,
#    or crun refuses: "cgroups in hybrid mode not supported, drop all controllers from cgroupv2";
# 3. lets containers inherit rlimits (default_ulimits = []), or crun fails: "setrlimit RLIMIT_NOFILE: Operation
#    not permitted" (podman asks for 1048576 open files; root here lacks CAP_SYS_RESOURCE);
# 4. overlay storage for root and rootless (rootless would fall back to vfs: a full image copy per container);
# 5. builds the base image offline with debootstrap from the apt mirror (cached as a tarball in
#    /var/cache/rcc/container: keep that directory between CI runs) and imports it for root and TEST_USER.
# Measured here: base build about 2 min (once), import 6-8 s per user, first rootless run ~4-7 s (podman maps the
# image's owners for keep-id once), later container starts ~0.3-0.5 s.
set -eu

TEST_USER="${1:-rccuser}"
HERE="$(cd "$(dirname "$0")" && pwd)"
SRC="$(cd "$HERE/../.." && pwd)/src"
# A system Python >= 3.11 that the test user can run too (a venv or pyenv one may live under /root).
PY="${RCC_SETUP_PYTHON:-/usr/bin/python3}"

need=""
for cmd in podman debootstrap newuidmap; do
    command -v "$cmd" >/dev/null 2>&1 || need="$need $cmd"
done
if [ -n "$need" ]; then
    echo "setup_podman: installing podman debootstrap uidmap (missing:$need)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman debootstrap uidmap >/dev/null
fi

# 2. hybrid cgroups
if [ ! -e /sys/fs/cgroup/cgroup.controllers ] && [ -r /sys/fs/cgroup/unified/cgroup.controllers ]; then
    for c in $(cat /sys/fs/cgroup/unified/cgroup.controllers); do
        echo "setup_podman: moving cgroup controller $c from cgroup v2 to v1" >&2
        mkdir -p "/sys/fs/cgroup/$c"
        mountpoint -q "/sys/fs/cgroup/$c" || mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c"
    done
fi

# 3. rlimits
mkdir -p /etc/containers/containers.conf.d
if [ ! -f /etc/containers/containers.conf.d/50-rcc.conf ]; then
    cat >/etc/containers/containers.conf.d/50-rcc.conf <<'EOF'
# rcc (tests/container/setup_podman.sh): this machine cannot raise RLIMIT_NOFILE/NPROC (no CAP_SYS_RESOURCE);
# containers inherit podman's limits instead of asking for podman's defaults.
[containers]
default_ulimits = []
EOF
fi

# 4. storage
if [ ! -f /etc/containers/storage.conf ]; then
    cat >/etc/containers/storage.conf <<'EOF'
# rcc (tests/container/setup_podman.sh): overlay for root and rootless (kernel >= 5.13 mounts overlay in a user
# namespace natively); without it rootless podman falls back to vfs, which copies the whole image per container.
[storage]
driver = "overlay"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
EOF
fi

# 5. the base image, for root and for the test user
PYTHONPATH="$SRC" "$PY" -m rcc.backends.container_image.base
if id "$TEST_USER" >/dev/null 2>&1; then
    home="$(getent passwd "$TEST_USER" | cut -d: -f6)"
    (cd / && runuser -u "$TEST_USER" -- env -i HOME="$home" PATH=/usr/local/bin:/usr/bin:/bin \
        PYTHONPATH="$SRC" "$PY" -m rcc.backends.container_image.base --import-only)
fi

# Smoke test: a real container, as root and rootless.
tag="$(PYTHONPATH="$SRC" "$PY" -m rcc.backends.container_image.base --print-tag)"
(cd / && podman run --rm --network none --read-only "$tag" true)
if id "$TEST_USER" >/dev/null 2>&1; then
    (cd / && runuser -u "$TEST_USER" -- env -i HOME="$home" PATH=/usr/local/bin:/usr/bin:/bin \
        podman run --rm --network none --userns keep-id --read-only "$tag" true)
fi
echo "setup_podman: ready ($tag)" >&2
