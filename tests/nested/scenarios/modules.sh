# init loads compressed modules: the Debian 6.1 kernel has no
# CONFIG_MODULE_DECOMPRESS, so init decompresses .ko.gz, .ko.xz and .ko.zst
# itself. A damaged .ko.xz gives one clear line and a reboot, never a hang.
run_vmm compressed --kernel "$DATA/bzImage" --initrd "$DATA/bootstrap-compressed.cpio" --initrd "$DATA/modules.cpio" \
    --cmdline "$(cat "$DATA/cmdline")" --mem 256 --console -
[ "$rc" -eq 0 ] || fail "compressed modules: vmm exited $rc"
has "$out" "^virtio_mmio " || fail "virtio_mmio.ko.gz is not loaded"
has "$out" "^vsock " || fail "vsock.ko.xz is not loaded"
has "$out" "^vmw_vsock_virtio_transport " || fail "vmw_vsock_virtio_transport.ko.zst is not loaded"
run_vmm bad --kernel "$DATA/bzImage" --initrd "$DATA/bootstrap-bad.cpio" --initrd "$DATA/modules.cpio" \
    --cmdline "$(cat "$DATA/cmdline")" --mem 256 --console -
[ "$rc" -eq 0 ] || fail "damaged .ko.xz: vmm exited $rc"
has "$out" "init: cannot load /lib/modules/.*/virtio_mmio.ko.xz: corrupt xz data (truncated)" \
    || fail "damaged .ko.xz: no clear line from init"
has "$out" "rebooting" || fail "damaged .ko.xz: init did not reboot"
pass ".ko.gz, .ko.xz and .ko.zst loaded; a truncated .ko.xz refused with one line"
