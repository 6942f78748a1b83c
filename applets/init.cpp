// init: the enclave's PID 1 (DESIGN.md "Boot path" 4; SPEC §3 ramdisk
// layout). It is /init of the bootstrap ramdisk that eif-build writes; the
// kernel runs it, nobody else should. The steps are in
// include/qtbox/init/init.hpp.
//
// See: SPEC §3, §6; ../reference/nitro.md §1.7 (Nitro's init); man/init.8.
#include <qtbox/base/applet.hpp>
#include <qtbox/base/log.hpp>
#include <qtbox/init/init.hpp>

#include <unistd.h>

QT_APPLET(init, "init", "Enclave PID 1: modules, rootfs, the app, reboot");

int init_main(int argc, char** argv)
{
    using namespace qtbox;
    // The kernel passes unknown command-line words to init as arguments;
    // none of them are ours, so only --help is parsed, and only when this
    // is not PID 1.
    if (::getpid() != 1) {
        CLI::App app;
        configure_app(app, "Enclave PID 1: mount, load the guest modules, bring up lo, switch to /rootfs, run the app "
                           "from /cmd and /env, reboot when it exits. Only the enclave's kernel runs it.");
        app.allow_extras();
        if (auto status = parse_command_line(app, argc, argv))
            return *status;
        log::error("refusing to run: not PID 1 (init is the enclave's first process, started by its kernel)");
        return EXIT_USAGE;
    }
    init::run();
}
