# Boots the image given to nested.py with --eif (your own): 2 vCPUs,
# 512 MiB, console on stdout; passes when vmm exits 0.
[ -f "$DATA/user.eif" ] || skip "no image given (nested.py --eif FILE boot-eif)"
run_vmm user --eif "$DATA/user.eif" --cpus 2 --mem 512 --debug-mode --console -
[ "$rc" -eq 0 ] || fail "vmm exited $rc: $(head -n 1 "$err")"
pass "the image booted and shut down cleanly in ${took}s (vmm exit 0)"
