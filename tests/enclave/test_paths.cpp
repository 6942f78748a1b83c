#include <qtbox/enclave/paths.hpp>

#include <doctest/doctest.h>

#include <cstdlib>

using namespace qtbox;
using namespace qtbox::enclave;

TEST_CASE("enclave paths: run dir follows QTBOX_RUN_DIR (docs/FORMATS.md §1)")
{
    ::unsetenv(RUN_DIR_VARIABLE);
    CHECK(run_dir() == "/run/qtbox");
    ::setenv(RUN_DIR_VARIABLE, "", 1);
    CHECK(run_dir() == "/run/qtbox");
    ::setenv(RUN_DIR_VARIABLE, "/tmp/qt", 1);
    CHECK(run_dir() == "/tmp/qt");
    ::unsetenv(RUN_DIR_VARIABLE);
}

TEST_CASE("enclave paths: hybrid path rules")
{
    CHECK(listener_dir("/run/qtbox") == "/run/qtbox/vsock");
    CHECK(listener_path("/run/qtbox/vsock", 8000) == "/run/qtbox/vsock/3_8000");
    CHECK(listener_path("/d", 4294967294u) == "/d/3_4294967294");
    CHECK(enclave_socket_path("/run/qtbox", 0) == "/run/qtbox/enclaves/0/vsock.sock");
    CHECK(enclave_socket_path("/r", 17) == "/r/enclaves/17/vsock.sock");
    CHECK(enclave_socket_path_for_cid("/run/qtbox", 4) == "/run/qtbox/enclaves/cid-4/vsock.sock");
}
