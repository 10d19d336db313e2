#!/bin/sh
# CI setup for the container backend's docker tests on this machine kind (Debian 12, root, no systemd as pid 1,
# cgroup v1/v2 hybrid, no container registry, no CAP_SYS_RESOURCE). Idempotent and quick when done; as root:
#     tests/container/setup_docker.sh
# then run the docker variants with RCC_TEST_DOCKER=1 (they fail instead of skipping when docker is not ready).
# 1. installs docker.io (dockerd 20.10, containerd, runc) and debootstrap (apt). A newer docker CLI in
#    /usr/local/bin may shadow /usr/bin/docker: it talks to dockerd 20.10 by API version negotiation (1.41).
# 2. hybrid cgroups: moves every controller still on the cgroup v2 hierarchy (here: hugetlb) to its own v1 mount,
#    as setup_podman.sh does (runc then finds every v1 controller it expects).
# 3. /etc/docker/daemon.json: rcc only ever uses `--network none`, so dockerd must not touch the host's network
#    (no docker0 bridge, no iptables/NAT rules, no ip_forward change); cgroupfs driver (no systemd here);
#    overlay2; no container logs. Rlimits need nothing: dockerd's containers inherit its own (no raise needed).
# 4. starts dockerd in the background (log: /var/log/rcc/dockerd.log) unless `docker info` already works.
# 5. builds the base image offline with debootstrap (cached in /var/cache/rcc/container, shared with podman) and
#    imports it (`docker import`, ~2 s).
set -eu

HERE="$(cd "$(dirname "$0")" && pwd)"
SRC="$(cd "$HERE/../.." && pwd)/src"
PY="${RCC_SETUP_PYTHON:-/usr/bin/python3}"
LOG="${RCC_DOCKERD_LOG:-/var/log/rcc/dockerd.log}"

# 1. packages
need=""
for cmd in dockerd containerd runc debootstrap; do
    command -v "$cmd" >/dev/null 2>&1 || need="$need $cmd"
done
if [ -n "$need" ]; then
    echo "setup_docker: installing docker.io debootstrap (missing:$need)" >&2
    # policy-rc.d may refuse to start the service here (no systemd): we start dockerd below.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io debootstrap >/dev/null
fi

# 2. hybrid cgroups
if [ ! -e /sys/fs/cgroup/cgroup.controllers ] && [ -r /sys/fs/cgroup/unified/cgroup.controllers ]; then
    for c in $(cat /sys/fs/cgroup/unified/cgroup.controllers); do
        echo "setup_docker: moving cgroup controller $c from cgroup v2 to v1" >&2
        mkdir -p "/sys/fs/cgroup/$c"
        mountpoint -q "/sys/fs/cgroup/$c" || mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c"
    done
fi

# 3. daemon config (written once; an existing file is the admin's and is left alone)
mkdir -p /etc/docker
if [ ! -f /etc/docker/daemon.json ]; then
    cat >/etc/docker/daemon.json <<'EOF'
{
  "bridge": "none",
  "iptables": false,
  "ip6tables": false,
  "ip-forward": false,
  "ip-masq": false,
  "storage-driver": "overlay2",
  "exec-opts": ["native.cgroupdriver=cgroupfs"],
  "log-driver": "none"
}
EOF
fi

# 4. the daemon
if ! docker info >/dev/null 2>&1; then
    mkdir -p "$(dirname "$LOG")"
    echo "setup_docker: starting dockerd (log: $LOG)" >&2
    setsid dockerd >>"$LOG" 2>&1 </dev/null &
    i=0
    until docker info >/dev/null 2>&1; do
        i=$((i + 1))
        if [ "$i" -gt 120 ]; then
            echo "setup_docker: dockerd did not come up in 60 s; the end of $LOG:" >&2
            tail -20 "$LOG" >&2
            exit 1
        fi
        sleep 0.5
    done
fi

# 5. the base image
tag="$(PYTHONPATH="$SRC" "$PY" -m rcc.backends.container_image.base --print-tag)"
if ! docker image inspect "$tag" >/dev/null 2>&1; then
    PYTHONPATH="$SRC" "$PY" -m rcc.backends.container_image.base --engine docker
fi

# Smoke test: a real container, the way rcc starts one.
(cd / && docker run --rm --network none --read-only --cap-drop all --user 65534:65534 "$tag" true)
echo "setup_docker: ready ($tag; $(docker version --format 'client {{.Client.Version}}, server {{.Server.Version}}'))" >&2
