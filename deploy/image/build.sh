#!/usr/bin/env bash
# Build the service's OCI image without Docker or a registry: a Debian root filesystem from Debian's own
# tools (mmdebstrap), the service installed into it from the wheel built here, packed by umoci.
#   deploy/image/build.sh OUT.tar        (make image calls it; `ctr images import` reads OUT.tar)
set -euo pipefail
out=$(realpath -m "$1")
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/pyproject.toml")
suite=${IMAGE_SUITE:-bookworm}
# A fixed user and group that own nothing on the host: the image runs as them unless the socket
# permissions need root (Kubernetes nodes: containerd.sock is root:root 0660, so the chart sets runAsUser 0).
uid=65532
work=$(mktemp -d "${TMPDIR:-/tmp}/imageremoval-image.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The wheel and every dependency as wheels, fetched here by the project's pip; the root filesystem's pip then
# installs offline from them (the host's Python and Debian's are both 3.11, so the same wheels fit).
# The server's extra brings its telemetry stack; constraints.txt pins every version, as `make venv` does.
"$repo/.venv/bin/pip" wheel -q --disable-pip-version-check -c "$repo/constraints.txt" -w "$work/wheels" "$repo[server]"

# Only what the server runs on: python3 and the venv module; no apt, no shell tools beyond Essential.
# Docs, man pages and translations never land; pip's cache is not kept. The merged-usr hook lays out /usr
# itself, so the usrmerge package (and the perl it pulls in, 45 MiB) is never installed.
mmdebstrap --quiet --variant=essential --include=python3,python3-venv,libstdc++6 \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook="copy-in $work/wheels /tmp" \
  --customize-hook='chroot "$1" env -i PATH=/usr/bin:/bin python3 -m venv /opt/imageremoval' \
  --customize-hook='chroot "$1" env -i PATH=/usr/bin:/bin /opt/imageremoval/bin/pip install -q --no-cache-dir --disable-pip-version-check --no-index --find-links /tmp/wheels "imageremoval[server]"' \
  --customize-hook='chroot "$1" env -i PATH=/usr/bin:/bin /opt/imageremoval/bin/pip uninstall -q -y pip setuptools' \
  --customize-hook='rm -rf "$1"/tmp/* "$1"/var/cache/* "$1"/var/lib/apt/lists/* "$1"/var/log/*' \
  "$suite" "$work/rootfs" >"$work/mmdebstrap.log" 2>&1 || { cat "$work/mmdebstrap.log"; exit 1; }

layout="$work/oci"
umoci init --layout "$layout"
umoci new --image "$layout:$version"
umoci insert --rootless --image "$layout:$version" --history.comment "debian $suite + imageremoval $version" \
  "$work/rootfs" /
umoci config --image "$layout:$version" \
  --config.user "$uid:$uid" \
  --config.env PATH=/opt/imageremoval/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.env PYTHONDONTWRITEBYTECODE=1 \
  --config.env IMAGEREMOVAL_CONTAINERD_ADDRESS=/run/containerd/containerd.sock \
  --config.entrypoint /opt/imageremoval/bin/imageremoval-server \
  --config.workingdir / \
  --config.stopsignal SIGTERM \
  --config.label "org.opencontainers.image.title=imageremoval" \
  --config.label "org.opencontainers.image.version=$version" \
  --architecture "$(dpkg --print-architecture)" --os linux --no-history
umoci gc --layout "$layout"
mkdir -p "$(dirname "$out")"
tar -C "$layout" -cf "$out.tmp" .
mv "$out.tmp" "$out"
echo "built $out ($(du -m "$out" | cut -f1) MiB packed; root filesystem $(du -sm "$work/rootfs" | cut -f1) MiB)"
