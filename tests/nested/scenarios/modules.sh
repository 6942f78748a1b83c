# init loads .ko.gz modules (the kernel has no CONFIG_MODULE_DECOMPRESS, so
# init inflates them) and, for an .ko.xz it cannot load, prints one line and
# reboots instead of hanging.
run_vmm gz --kernel "$DATA/bzImage" --initrd "$DATA/bootstrap-gz.cpio" --initrd "$DATA/modules.cpio" \
    --cmdline "$(cat "$DATA/cmdline")" --mem 256 --console -
[ "$rc" -eq 0 ] || fail ".ko.gz: vmm exited $rc"
has "$out" "^virtio_mmio" || fail ".ko.gz: virtio_mmio is not loaded"
has "$out" "^vsock" || fail ".ko.gz: vsock is not loaded"
run_vmm xz --kernel "$DATA/bzImage" --initrd "$DATA/bootstrap-xz.cpio" --initrd "$DATA/modules.cpio" \
    --cmdline "$(cat "$DATA/cmdline")" --mem 256 --console -
[ "$rc" -eq 0 ] || fail ".ko.xz: vmm exited $rc"
has "$out" "init: cannot load /lib/modules/.*/virtio_mmio.ko.xz: this kernel cannot decompress xz modules" \
    || fail ".ko.xz: no clear line from init"
has "$out" "rebooting" || fail ".ko.xz: init did not reboot"
pass ".ko.gz loaded; .ko.xz refused with one line"
