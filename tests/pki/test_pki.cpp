#include <qtbox/crypto/chain.hpp>
#include <qtbox/pki/leaf.hpp>
#include <qtbox/pki/pki.hpp>

#include <doctest/doctest.h>

#include <cstdlib>
#include <string>
#include <unistd.h>

using namespace qtbox;

TEST_CASE("pki smoke: init, leaf, verify")
{
    char pattern[] = "/tmp/qtbox-pki-XXXXXX";
    std::string dir = mkdtemp(pattern);
    UnixMillis t0 = 1770000000000;
    auto authority = pki::init(dir, false, { "host1", t0 });
    REQUIRE_MESSAGE(!authority.is_error(), authority.error().message());
    auto leaf = pki::issue_leaf(authority.value(), "abc.enc-0123456789abcdef", t0 + 5000);
    REQUIRE(!leaf.is_error());
    auto const& l = *leaf.value();
    std::vector<crypto::Certificate> inter { authority.value().parent };
    std::vector<crypto::Certificate> roots { authority.value().root };
    auto ok = crypto::verify_chain(l.certificate, inter, roots, t0 + 6000);
    CHECK_MESSAGE(!ok.is_error(), ok.error().message());
    std::system(("rm -rf " + dir).c_str());
}
