// init: the enclave's PID 1 (docs/ARCHITECTURE.md "Boot path" 4; docs/FORMATS.md §3 ramdisk
// layout). It is /init of the bootstrap ramdisk that eif-build writes; the
// kernel runs it, nobody else should. The steps are in
// include/qtbox/init/init.hpp; this file prints what the engine reports,
// one "init: ..." line each, on the console.
//
// See: docs/FORMATS.md §3, §6; docs/PLATFORMS.md §N1.7 (Nitro's init); man/init.8.
#include "support/applet.hpp"
#include "support/log.hpp"
#include <qtbox/init/init.hpp>

#include <unistd.h>

QT_APPLET(init, "init", "Enclave PID 1: modules, rootfs, the app, reboot");

namespace {


} // namespace

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
    log::set_program("init");
    init::Events events;
    events.notice = log::write_notice;
    events.app_exited = [](init::AppExit const& exit) {
        log::info("the app ({}) {}; rebooting", exit.program, init::describe_wait_status(exit.wait_status));
    };
    init::run(events);
}
