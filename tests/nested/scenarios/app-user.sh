# Issue 15 (the image's User): an OCI image whose config says User
# 1000:1000, made into an EIF by `qt enclave make-img`. init runs the app
# with those ids (not as root), and the QTSM socket still serves it (its
# group is the app's).
[ "$(cat "$DATA/have-eif")" = yes ] || skip "this qtbox has no eif-build applet"
run_vmm app-user --eif "$DATA/user-app.eif" --cpus 1 --mem 256 --debug-mode --console -
[ "$rc" -eq 0 ] || fail "vmm exited $rc: $(head -n 1 "$err")"
has "$out" "^app-ids: 1000:1000" || fail "the app did not run as 1000:1000: $(grep '^app-' "$out" | tr '\n' ' ')"
has "$out" "^app-qtsm: ok" || fail "the QTSM refused the app's user"
has "$out" "^app-root-write: no" || fail "the app could write to / (is it root?)"
pass "the app ran as 1000:1000 from the image's User, could not write to /, and the QTSM served it"
