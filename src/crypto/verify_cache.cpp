// The process-wide ECDSA verification cache: one shared, pre-warmed group
// per curve (verify_cache.hpp), and ECDSA verification on it.
#include "verify_cache.hpp"

#include "support.hpp"

#include <fmt/format.h>

#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>

#include <mutex>

// The thread-safety argument for the shared verification groups below
// rests on mbedTLS's own ecp.c; an alternative implementation voids it.
#if defined(MBEDTLS_ECP_ALT) || defined(MBEDTLS_ECP_INTERNAL_ALT) || defined(MBEDTLS_ECP_RESTARTABLE)
#error "src/crypto/verify_cache.cpp: the shared ECDSA verification groups assume mbedTLS's own, non-restartable ecp.c"
#endif

namespace qtbox::crypto {

namespace {

// mbedtls_ecdsa_verify computes u1·G + u2·Q. For u1·G, ecp_mul_comb
// (ecp.c, mbedTLS 2.28, MBEDTLS_ECP_FIXED_POINT_OPTIM = 1) caches a comb
// table of multiples of G in grp->T the first time the group multiplies G,
// and reuses it afterwards. A group per PublicKey (what mbedtls_pk_parse
// gives) rebuilds that table for every key, and attest-verify sees fresh keys
// in every document; one group per curve, warmed once, saves it.
//
// Sharing one group between threads without a lock is safe because, in
// ecp.c 2.28:
//  - the only stores through the group pointer on the verification path
//    (mbedtls_ecdsa_verify → mbedtls_ecp_muladd_restartable →
//    mbedtls_ecp_mul_shortcuts → mbedtls_ecp_mul_restartable → ecp_mul_comb)
//    are `grp->T = T; grp->T_size = T_size;`, made only when the point is G
//    and grp->T is still NULL; with grp->T set, ecp_mul_comb takes the
//    table as is (T_ok = 1) and, on exit, leaves it alone (T == grp->T);
//  - for the other point (the public key Q) the table is local to the call;
//  - every other function on that path takes `const mbedtls_ecp_group*`,
//    and the random state (ecp_drbg, seeded from the scalar) is per call;
//  - the warm-up below multiplies G once under std::call_once, so grp->T is
//    set before any verifier can see the group (call_once synchronises), and
//    nothing ever frees or reloads the group.
// If the warm-up fails the group is never handed out (grp->T might still be
// NULL, and the first verifications would then race to set it). Built with
// MBEDTLS_ECP_FIXED_POINT_OPTIM = 0, mbedTLS never caches a table in the
// group: sharing is then trivially safe, only slower.
//
// Verification only handles public values (the key, the digest, the
// signature), so a shared precomputed table leaks nothing. Signing and ECDH
// keep using the private key's own group under the key's lock: their
// side-channel countermeasures (blinding from random_callback, the
// constant-time comb) are untouched.
struct SharedGroup {
    std::once_flag once;
    mbedtls_ecp_group group;
    int result { 0 };
};

void warm_up(SharedGroup& shared, mbedtls_ecp_group_id curve)
{
    mbedtls_ecp_group_init(&shared.group);
    int result = mbedtls_ecp_group_load(&shared.group, curve);
    if (result == 0) {
        Mpi one;
        mbedtls_ecp_point point;
        mbedtls_ecp_point_init(&point);
        result = mbedtls_mpi_lset(&one.value, 1);
        // 1·G through ecp_mul_comb: fills grp->T (a public value; f_rng NULL
        // makes mbedTLS use its internal DRBG seeded from the scalar).
        if (result == 0)
            result = mbedtls_ecp_mul(&shared.group, &point, &one.value, &shared.group.G, nullptr, nullptr);
        mbedtls_ecp_point_free(&point);
    }
#if MBEDTLS_ECP_FIXED_POINT_OPTIM == 1
    // A successful multiplication of G has set the table; if not, the first
    // verifications would race to set it.
    if (result == 0 && shared.group.T == nullptr)
        result = MBEDTLS_ERR_ECP_FEATURE_UNAVAILABLE;
#endif
    shared.result = result;
}

} // namespace

ErrorOr<mbedtls_ecp_group*> verification_group(KeyType type)
{
    if (type == KeyType::Rsa)
        return not_ec("ECDSA verify");
    // Never destroyed: a thread still verifying while the process exits
    // must not see the group freed under it.
    static auto* const groups = new SharedGroup[2];
    auto& shared = groups[type == KeyType::EcP256 ? 0 : 1];
    std::call_once(shared.once, [&] { warm_up(shared, curve_of(type)); });
    if (shared.result != 0)
        return mbedtls_error(CryptoError::Internal, fmt::format("precompute the {} base point table", key_type_name(type)), shared.result);
    return &shared.group;
}

ErrorOr<void> ecdsa_verify(PublicKey const& key, ByteView digest, mbedtls_mpi const& r, mbedtls_mpi const& s)
{
    auto* group = TRY(verification_group(key.type()));
    // Q is written only while the key is built; reading it needs no lock.
    auto const& keypair = ec_keypair(detail::KeyAccess::impl(key).context);
    // SEC1 §4.1.4 step 1: r and s must be in [1, n-1]. mbedTLS checks this
    // too; doing it here keeps the rule visible and the error precise.
    if (mbedtls_mpi_cmp_int(&r, 0) <= 0 || mbedtls_mpi_cmp_int(&s, 0) <= 0 || mbedtls_mpi_cmp_mpi(&r, &group->N) >= 0
        || mbedtls_mpi_cmp_mpi(&s, &group->N) >= 0)
        return failure_error(CryptoError::BadSignature, "ECDSA signature: r or s is outside [1, n-1]");
    // SEC1 §4.1.4 step 5: a digest longer than the order is truncated
    // (mbedTLS's derive_mpi), so any hash length is accepted here.
    int result = mbedtls_ecdsa_verify(group, digest.data(), digest.size(), &keypair.Q, &r, &s);
    if (result == MBEDTLS_ERR_ECP_VERIFY_FAILED)
        return failure_error(CryptoError::BadSignature, fmt::format("ECDSA {} signature does not verify", key_type_name(key.type())));
    if (result != 0)
        return mbedtls_error(CryptoError::Internal, "ECDSA verify", result);
    return {};
}

} // namespace qtbox::crypto
