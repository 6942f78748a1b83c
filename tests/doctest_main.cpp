// The unit suites' main: doctest's, after setting up what the dispatcher
// sets up for an applet (applets/main.cpp): one-line reports (the SIGSYS
// reporter's) go to stderr, and a failed VERIFY names its place there.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <qtbox/base/program.hpp>
#include <qtbox/base/verify.hpp>

#include <string>
#include <unistd.h>

int main(int argc, char** argv)
{
    qtbox::set_report_fd(STDERR_FILENO);
    qtbox::set_invariant_handler([](std::string_view what, char const* file, int line) {
        std::string text = "internal error: " + std::string(what) + " at " + file + ":" + std::to_string(line) + "\n";
        [[maybe_unused]] auto written = ::write(STDERR_FILENO, text.data(), text.size());
    });
    return doctest::Context(argc, argv).run();
}
