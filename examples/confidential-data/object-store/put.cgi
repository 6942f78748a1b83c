#!/bin/sh
# POST /cgi-bin/put?name=NAME: stores the body (at most 1 MiB) as
# results/NAME in the object store; NAME is [A-Za-z0-9_-], 1-64 characters.
# The enclave's way to hand back its (redacted) results.
set -u
name=${QUERY_STRING#name=}
length=${CONTENT_LENGTH:-0}
case "$name" in
    *[!A-Za-z0-9_-]*|"") bad=yes ;;
    *) bad=no ;;
esac
case "$length" in *[!0-9]*|"") bad=yes ;; esac
if [ "$bad" = yes ] || [ ${#name} -gt 64 ] || [ "$length" -gt 1048576 ]; then
    printf 'Status: 400 Bad Request\r\nContent-Type: text/plain\r\n\r\nbad name or size\n'
    exit 0
fi
results="$OBJECT_STORE_DIR/results"
head -c "$length" >"$results/.$name.part" && mv "$results/.$name.part" "$results/$name"
printf 'Content-Type: text/plain\r\n\r\nstored %s\n' "$name"
