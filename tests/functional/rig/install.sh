#!/bin/bash
# Install what the functional-test rig needs on Debian 12 (run as root).
#
#   sudo bash tests/functional/rig/install.sh          # no-op (~0.1 s) when all is there
#   RIG_INSTALL_FORCE=1 sudo bash .../install.sh        # always apt-get update + install
#
# Does NOT pip install anything: libvirt-python comes from `pip install .[libvirt,test]`
# (it compiles against libvirt-dev with gcc, pkg-config and the Python headers listed here).
set -euo pipefail

# libvirtd + QEMU (TCG is enough, no /dev/kvm needed); qemu-utils for qemu-img/qemu-io
# (guest disks); libvirt-dev, pkg-config, gcc, libc6-dev, python3-dev to build libvirt-python;
# gcc + binutils also build the multiboot test guest (-m32 -ffreestanding: no multilib);
# iproute2 for the netns mode (ip, tc); openssl for TLS tests.
PKGS=(libvirt-daemon libvirt-daemon-driver-qemu qemu-system-x86 qemu-utils libvirt-dev
      pkg-config gcc binutils libc6-dev python3-dev iproute2 openssl)

t0=$(date +%s.%N)
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

if [ "$(id -u)" != 0 ]; then
    echo "install.sh: must run as root" >&2
    exit 1
fi

missing=()
for p in "${PKGS[@]}"; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ] || [ "${RIG_INSTALL_FORCE:-0}" = 1 ]; then
    echo "installing: ${missing[*]:-(forced) ${PKGS[*]}}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # --no-install-recommends: ~40 packages instead of a full virtualisation stack
    apt-get install -y -q --no-install-recommends "${PKGS[@]}" >/tmp/rig-apt.log 2>&1 || {
        tail -30 /tmp/rig-apt.log >&2
        exit 1
    }
    grep -E '^(Need to get|After this operation)' /tmp/rig-apt.log || true
    rm -f /tmp/rig-apt.log
else
    echo "all packages already installed"
fi

# libvirt's QEMU driver resolves its compiled-in default user at start-up even though the rig's
# qemu.conf says user="root"; without it libvirtd exits ("Failed to parse user
# 'libvirt-qemu'"). libvirt-daemon-system would create it, but it also wants systemd units.
getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
getent passwd libvirt-qemu >/dev/null ||
    useradd --system --gid libvirt-qemu --no-create-home --home-dir /var/lib/libvirt \
        --shell /usr/sbin/nologin libvirt-qemu

echo "libvirtd:  $(libvirtd --version)"
echo "qemu:      $(qemu-system-x86_64 --version | head -1)"
echo "qemu-img:  $(qemu-img --version | head -1)"
echo "gcc:       $(gcc --version | head -1)"
echo "ip:        $(ip -V)"
echo "install.sh done in $(elapsed)s"
