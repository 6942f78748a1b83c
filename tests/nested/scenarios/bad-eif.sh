# Issue 5 acceptance 2c/2d: a corrupted EIF (one flipped bit) and --mem below
# the docs/FORMATS.md §3 rule fail with one clear line before any vCPU runs.
[ "$(cat "$DATA/have-eif")" = yes ] || skip "this qtbox has no eif-build applet"
run_vmm corrupt --eif "$DATA/hello-corrupt.eif" --mem 256 --debug-mode --console -
[ "$rc" -eq 1 ] || fail "corrupted EIF: vmm exited $rc, expected 1"
[ "$(wc -l <"$err")" -eq 1 ] || fail "corrupted EIF: expected one stderr line"
has "$err" "CRC" || fail "corrupted EIF: the error does not name the CRC"
[ ! -s "$out" ] || fail "corrupted EIF: the guest printed something"
corrupt=$(cat "$err")
run_vmm small --eif "$DATA/hello.eif" --mem 100 --debug-mode
[ "$rc" -eq 1 ] || fail "--mem 100: vmm exited $rc, expected 1"
has "$err" "too small" || fail "--mem 100: no clear error"
run_vmm big --eif "$DATA/big.eif" --mem 128
[ "$rc" -eq 1 ] || fail "4x rule: vmm exited $rc, expected 1"
has "$err" "4 times the image" || fail "4x rule: no clear error"
pass "$corrupt / $(cat "$err")"
