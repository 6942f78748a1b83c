#!/bin/sh
# Builds the confidential-data app's enclave image, as its data security
# admin would, with no Docker daemon:
#   1. the app's root file system: busybox, qtbox (for qtsm and qt-proxy),
#      record-tool (built statically here) and app/;
#   2. an OCI image of it, made offline with umoci (entrypoint /app/run.sh);
#   3. the signed EIF, with `qt enclave make-img` (its PCRs on stdout, JSON).
#
# Usage: build-image.sh OUT KEY CERT [--tamper]
#   OUT        work directory; the image goes to OUT/app.eif and its PCRs to
#              OUT/app.json (with --tamper: OUT/tampered.eif, .json)
#   KEY CERT   the admin's EC P-384 signing key and certificate (PEM); PCR8
#              measures the certificate
#   --tamper   the same image with one byte of /app/run.sh changed, as an
#              attacker with write access to the build would make it
# Environment: QTBOX (the static qtbox binary), QTBOX_BLOBS (the guest
# kernel, scripts/fetch-guest-kernel), CC (default gcc).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$1 KEY=$2 CERT=$3
name=app
[ "${4:-}" = --tamper ] && name=tampered
: "${QTBOX:?QTBOX must name the static qtbox binary}"
CC=${CC:-gcc}

root="$OUT/$name.rootfs"
rm -rf "$root"
mkdir -p "$root/bin" "$root/app" "$root/dev" "$root/proc" "$root/sys" "$root/tmp" "$root/run"
cp "$(command -v busybox)" "$root/bin/busybox"
for applet in sh awk cat cut head mkdir chmod rm sed sha256sum sleep tee wc wget; do
    ln -s busybox "$root/bin/$applet"
done
cp "$QTBOX" "$root/bin/qtbox"
ln -s qtbox "$root/bin/qtsm"
ln -s qtbox "$root/bin/qt-proxy"
if [ ! -x "$OUT/record-tool" ]; then
    "$CC" -static -O2 -o "$OUT/record-tool" "$HERE/record-tool.c" -lmbedcrypto
fi
cp "$OUT/record-tool" "$root/bin/record-tool"
cp "$HERE/app/run.sh" "$HERE/app/proxy.toml" "$root/app/"
chmod 755 "$root/app/run.sh"
if [ "$name" = tampered ]; then
    # One byte, in a comment even: the measurement does not care.
    offset=$(grep -b -o "The confidential-data app" "$root/app/run.sh" | head -n 1 | cut -d: -f1)
    printf 't' | dd of="$root/app/run.sh" bs=1 seek="$offset" conv=notrunc 2>/dev/null
fi

oci="$OUT/oci"
[ -f "$oci/index.json" ] || umoci init --layout "$oci"
umoci new --image "$oci:$name"
rm -rf "$OUT/$name.bundle"
umoci unpack --rootless --image "$oci:$name" "$OUT/$name.bundle" >/dev/null
cp -a "$root/." "$OUT/$name.bundle/rootfs/"
umoci repack --image "$oci:$name" "$OUT/$name.bundle"
umoci config --image "$oci:$name" --config.entrypoint /app/run.sh --config.env PATH=/bin
rm -rf "$OUT/$name.bundle"

SOURCE_DATE_EPOCH=0 "$QTBOX" qt enclave make-img --oci "$oci:$name" --eif "$OUT/$name.eif" \
    --name confidential-data --version 1 --private-key "$KEY" --signing-certificate "$CERT" >"$OUT/$name.json"
