# Shared setup for the eif-build golden tests: synthetic blobs (no real
# kernel needed), a reproducible umask, and helpers that cut sections out of
# an EIF using only what `eif-build describe` reports.
. "$QTBOX_SOURCE_ROOT/tests/applets/lib.sh"

HERE="$QTBOX_SOURCE_ROOT/tests/applets/eif_build"
FIXTURES="python3 $HERE/fixtures.py"
RELEASE=6.1.0-qtbox-test
QTBOX_BLOBS="$WORK/blobs"
export QTBOX_BLOBS
unset SOURCE_DATE_EPOCH
$FIXTURES blobs "$QTBOX_BLOBS" "$RELEASE"

# section_field EIF_JSON INDEX FIELD
section_field() {
    json_get "$1" "[\"Sections\"][$2][\"$3\"]"
}

# extract_section EIF DESCRIBE_JSON INDEX OUT: the section's data bytes.
extract_section() {
    offset=$(section_field "$2" "$3" DataOffset)
    size=$(section_field "$2" "$3" Size)
    tail -c +"$((offset + 1))" "$1" | head -c "$size" >"$4"
    [ "$(wc -c <"$4")" -eq "$size" ] || fail "could not cut section $3 out of $1"
}

# measure FILE...: SHA384(0^48 || SHA384(concatenation)) in hex, with sha384sum only.
measure() {
    inner=$(cat "$@" | sha384sum | cut -d' ' -f1 | tr a-f A-F)
    { head -c 48 /dev/zero; printf '%s' "$inner" | basenc --base16 -d; } | sha384sum | cut -d' ' -f1
}

# make_oci DIR TAG: an OCI layout made by umoci, offline, with an app directory.
make_oci() {
    command -v umoci >/dev/null 2>&1 || skip "umoci is not installed (scripts/setup installs it)"
    umoci init --layout "$1"
    umoci new --image "$1:$2"
    umoci unpack --rootless --image "$1:$2" "$WORK/bundle"
    mkdir -p "$WORK/bundle/rootfs/app" "$WORK/bundle/rootfs/etc"
    printf '#!/bin/sh\necho hello from the enclave\n' >"$WORK/bundle/rootfs/app/run.sh"
    chmod 0755 "$WORK/bundle/rootfs/app/run.sh"
    printf 'greeting=hi\n' >"$WORK/bundle/rootfs/etc/app.conf"
    ln -s run.sh "$WORK/bundle/rootfs/app/start"
    umoci repack --image "$1:$2" "$WORK/bundle"
    umoci config --image "$1:$2" --config.entrypoint /app/run.sh --config.cmd serve --config.cmd=--port=8000 \
        --config.env MODE=prod --config.workingdir /app
    rm -rf "$WORK/bundle"
}

# oci_to_docker_archive OCI TAG OUT: the same image as a docker-archive, with tar.
oci_to_docker_archive() {
    python3 - "$1" "$2" "$WORK/docker-archive" <<'PY'
import json, os, shutil, sys
oci, tag, out = sys.argv[1:4]
index = json.load(open(os.path.join(oci, "index.json")))
entry = next(m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
blob = lambda d: os.path.join("blobs", "sha256", d.split(":")[1])
manifest = json.load(open(os.path.join(oci, blob(entry["digest"]))))
os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)
for descriptor in [manifest["config"]] + manifest["layers"]:
    shutil.copy(os.path.join(oci, blob(descriptor["digest"])), os.path.join(out, blob(descriptor["digest"])))
json.dump([{"Config": blob(manifest["config"]["digest"]), "RepoTags": ["app:" + tag],
            "Layers": [blob(layer["digest"]) for layer in manifest["layers"]]}], open(os.path.join(out, "manifest.json"), "w"))
PY
    # One 512-byte record per block: the archive ends right after its end marker.
    tar -C "$WORK/docker-archive" -b1 -cf "$3" manifest.json blobs
}
