#include <qtbox/crypto/keys.hpp>

#include "support.hpp"
#include "verify_cache.hpp"

#include <qtbox/crypto/hash.hpp>
#include <qtbox/crypto/pem.hpp>

#include <fmt/format.h>

#include <mbedtls/ecdh.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/rsa.h>

#include <array>
#include <cstring>
#include <mutex>

namespace qtbox::crypto {

namespace {

// Large enough for the SPKI of an RSA-8192 key (about 1.1 KiB).
constexpr std::size_t SPKI_BUFFER_SIZE = 4096;
// Large enough for the PKCS#1 DER of an RSA-8192 private key (about 4.7 KiB)
// and its PEM.
constexpr std::size_t PRIVATE_KEY_BUFFER_SIZE = 16 * 1024;
constexpr int RSA_PUBLIC_EXPONENT = 65537;
// RFC 8017 §7.1.1: mLen ≤ k - 2·hLen - 2 with SHA-256.
constexpr std::size_t OAEP_OVERHEAD = 2 * 32 + 2;

// Coordinate / scalar size in bytes.
std::size_t field_size(KeyType type)
{
    return type == KeyType::EcP256 ? 32 : 48;
}

mbedtls_md_type_t hash_of(KeyType type)
{
    return type == KeyType::EcP256 ? MBEDTLS_MD_SHA256 : MBEDTLS_MD_SHA384;
}

ErrorOr<Bytes> write_spki(mbedtls_pk_context& context)
{
    std::array<unsigned char, SPKI_BUFFER_SIZE> buffer {};
    // mbedTLS writes DER backwards, ending at the end of the buffer.
    int length = mbedtls_pk_write_pubkey_der(&context, buffer.data(), buffer.size());
    if (length < 0)
        return mbedtls_error(CryptoError::Internal, "write SubjectPublicKeyInfo", length);
    return Bytes(buffer.end() - length, buffer.end());
}

Error not_rsa(KeyType type, std::string_view what)
{
    return failure_error(CryptoError::WrongKeyType, fmt::format("{}: needs an RSA key, not {}", what, key_type_name(type)));
}

} // namespace

Error not_ec(std::string_view what)
{
    return failure_error(CryptoError::WrongKeyType, fmt::format("{}: needs an EC P-256 or P-384 key, not RSA", what));
}

std::string_view key_type_name(KeyType type)
{
    switch (type) {
    case KeyType::EcP256: return "P-256";
    case KeyType::EcP384: return "P-384";
    case KeyType::Rsa: return "RSA";
    }
    return "unknown";
}

ErrorOr<KeyType> classify_key(mbedtls_pk_context const& context, std::size_t& bits)
{
    switch (mbedtls_pk_get_type(&context)) {
    case MBEDTLS_PK_ECKEY: {
        auto const* keypair = &ec_keypair(context);
        if (keypair->grp.id == MBEDTLS_ECP_DP_SECP256R1) {
            bits = 256;
            return KeyType::EcP256;
        }
        if (keypair->grp.id == MBEDTLS_ECP_DP_SECP384R1) {
            bits = 384;
            return KeyType::EcP384;
        }
        auto const* info = mbedtls_ecp_curve_info_from_grp_id(keypair->grp.id);
        return failure_error(CryptoError::Unsupported,
            fmt::format("EC curve {} is not supported (only P-256 and P-384)", info != nullptr ? info->name : "(unknown)"));
    }
    case MBEDTLS_PK_RSA: {
        bits = mbedtls_pk_get_bitlen(&context);
        if (bits < MIN_RSA_BITS || bits > MAX_RSA_BITS)
            return failure_error(CryptoError::Unsupported,
                fmt::format("RSA-{} is not supported (the modulus must have {} to {} bits)", bits, MIN_RSA_BITS, MAX_RSA_BITS));
        return KeyType::Rsa;
    }
    default:
        return failure_error(CryptoError::Unsupported,
            fmt::format("{} keys are not supported (only EC P-256, P-384 and RSA)", mbedtls_pk_get_name(&context)));
    }
}

// ---- PublicKey ----

namespace {

ErrorOr<PublicKey> finish_public_key(std::shared_ptr<PublicKey::Impl> impl);

} // namespace

ErrorOr<PublicKey> PublicKey::from_spki_der(ByteView der)
{
    if (der.size() > MAX_KEY_INPUT_SIZE)
        return failure_error(CryptoError::TooLarge, fmt::format("public key of {} bytes, at most {}", der.size(), MAX_KEY_INPUT_SIZE));
    auto impl = std::make_shared<Impl>();
    Bytes copy(der.begin(), der.end());
    unsigned char* cursor = copy.data();
    unsigned char const* end = copy.data() + copy.size();
    int result = mbedtls_pk_parse_subpubkey(&cursor, end, &impl->context);
    if (result != 0) {
        bool unsupported = result == MBEDTLS_ERR_PK_UNKNOWN_PK_ALG || result == MBEDTLS_ERR_PK_FEATURE_UNAVAILABLE
            || result == (MBEDTLS_ERR_PK_KEY_INVALID_FORMAT + MBEDTLS_ERR_ECP_FEATURE_UNAVAILABLE)
            || result == MBEDTLS_ERR_ECP_FEATURE_UNAVAILABLE;
        return mbedtls_error(unsupported ? CryptoError::Unsupported : CryptoError::Malformed, "parse SubjectPublicKeyInfo", result);
    }
    if (cursor != end)
        return failure_error(CryptoError::Malformed, "parse SubjectPublicKeyInfo: trailing bytes after the key");
    return finish_public_key(std::move(impl));
}

namespace {

ErrorOr<PublicKey> finish_public_key(std::shared_ptr<PublicKey::Impl> impl)
{
    impl->type = TRY(classify_key(impl->context, impl->bits));
    if (impl->type == KeyType::Rsa) {
        // Refuse even exponents and e = 1 early (RFC 8017 §3.1).
        int result = mbedtls_rsa_check_pubkey(&rsa_context(impl->context));
        if (result != 0)
            return mbedtls_error(CryptoError::Malformed, "RSA public key", result);
    }
    impl->spki_der = TRY(write_spki(impl->context));
    return detail::KeyAccess::make_public_key(std::move(impl));
}

} // namespace

ErrorOr<PublicKey> PublicKey::from_spki_pem(std::string_view pem)
{
    if (pem.size() > MAX_KEY_INPUT_SIZE)
        return failure_error(CryptoError::TooLarge, fmt::format("public key of {} bytes, at most {}", pem.size(), MAX_KEY_INPUT_SIZE));
    auto blocks = TRY(pem_decode(pem));
    if (blocks.size() != 1 || blocks[0].label != "PUBLIC KEY")
        return failure_error(CryptoError::Malformed, "expected exactly one PEM \"PUBLIC KEY\" block");
    return from_spki_der(blocks[0].der);
}

ErrorOr<PublicKey> PublicKey::parse(ByteView der_or_pem)
{
    if (looks_like_pem(der_or_pem))
        return from_spki_pem(as_chars(der_or_pem));
    return from_spki_der(der_or_pem);
}

ErrorOr<PublicKey> PublicKey::from_ec_point(KeyType type, ByteView point)
{
    if (type == KeyType::Rsa)
        return not_ec("public key from an EC point");
    std::size_t expected = 1 + 2 * field_size(type);
    if (point.size() != expected || point[0] != 0x04)
        return failure_error(CryptoError::Malformed,
            fmt::format("{} point: expected {} bytes starting with 04 (uncompressed), got {}", key_type_name(type), expected, point.size()));
    auto impl = std::make_shared<Impl>();
    int result = mbedtls_pk_setup(&impl->context, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (result != 0)
        return mbedtls_error(CryptoError::Internal, "set up an EC key", result);
    auto* keypair = &ec_keypair(impl->context);
    result = mbedtls_ecp_group_load(&keypair->grp, curve_of(type));
    if (result != 0)
        return mbedtls_error(CryptoError::Internal, "load the curve", result);
    result = mbedtls_ecp_point_read_binary(&keypair->grp, &keypair->Q, point.data(), point.size());
    if (result == 0)
        result = mbedtls_ecp_check_pubkey(&keypair->grp, &keypair->Q);
    if (result != 0)
        return mbedtls_error(CryptoError::Malformed, fmt::format("{} point", key_type_name(type)), result);
    return finish_public_key(std::move(impl));
}

KeyType PublicKey::type() const { return m_impl->type; }
std::size_t PublicKey::bits() const { return m_impl->bits; }
ByteView PublicKey::spki_der() const { return m_impl->spki_der; }
std::string PublicKey::spki_pem() const { return pem_encode("PUBLIC KEY", m_impl->spki_der); }

ErrorOr<Bytes> PublicKey::ec_point() const
{
    if (!is_ec())
        return not_ec("EC point");
    std::lock_guard lock(m_impl->mutex);
    auto const* keypair = &ec_keypair(m_impl->context);
    std::array<unsigned char, 1 + 2 * 48> buffer {};
    std::size_t length = 0;
    int result = mbedtls_ecp_point_write_binary(&keypair->grp, &keypair->Q, MBEDTLS_ECP_PF_UNCOMPRESSED, &length,
        buffer.data(), buffer.size());
    if (result != 0)
        return mbedtls_error(CryptoError::Internal, "write the EC point", result);
    return Bytes(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(length));
}

bool PublicKey::operator==(PublicKey const& other) const
{
    return m_impl == other.m_impl || m_impl->spki_der == other.m_impl->spki_der;
}

ErrorOr<void> PublicKey::verify(ByteView message, ByteView signature) const
{
    switch (type()) {
    case KeyType::EcP256: return verify_digest(sha256(message), signature);
    case KeyType::EcP384: return verify_digest(sha384(message), signature);
    case KeyType::Rsa: break;
    }
    return not_ec("ECDSA verify");
}

ErrorOr<void> PublicKey::verify_digest(ByteView digest, ByteView signature) const
{
    if (!is_ec())
        return not_ec("ECDSA verify");
    std::size_t half = field_size(type());
    if (digest.size() != half)
        return failure_error(CryptoError::Malformed,
            fmt::format("ECDSA {} verify: digest of {} bytes, expected {}", key_type_name(type()), digest.size(), half));
    if (signature.size() != 2 * half)
        return failure_error(CryptoError::Malformed,
            fmt::format("ECDSA {} signature of {} bytes, expected {} (r‖s)", key_type_name(type()), signature.size(), 2 * half));
    Mpi r, s;
    if (mbedtls_mpi_read_binary(&r.value, signature.data(), half) != 0
        || mbedtls_mpi_read_binary(&s.value, signature.data() + half, half) != 0)
        return failure_error(CryptoError::Internal, "ECDSA verify: out of memory");
    return ecdsa_verify(*this, digest, r.value, s.value);
}

ErrorOr<Bytes> PublicKey::rsa_oaep_encrypt(ByteView plaintext) const
{
    if (type() != KeyType::Rsa)
        return not_rsa(type(), "RSA-OAEP encrypt");
    std::lock_guard lock(m_impl->mutex);
    auto* rsa = &rsa_context(m_impl->context);
    std::size_t modulus_size = mbedtls_rsa_get_len(rsa);
    if (plaintext.size() > modulus_size - OAEP_OVERHEAD)
        return failure_error(CryptoError::TooLarge,
            fmt::format("RSA-OAEP-SHA256: {} bytes of plaintext, at most {} for RSA-{}", plaintext.size(), modulus_size - OAEP_OVERHEAD, bits()));
    // The OAEP hash (and MGF1's) is the context's hash_id.
    mbedtls_rsa_set_padding(rsa, MBEDTLS_RSA_PKCS_V21, MBEDTLS_MD_SHA256);
    Bytes ciphertext(modulus_size);
    int result = mbedtls_rsa_rsaes_oaep_encrypt(rsa, random_callback, nullptr, MBEDTLS_RSA_PUBLIC, nullptr, 0,
        plaintext.size(), plaintext.data(), ciphertext.data());
    if (result != 0)
        return mbedtls_error(CryptoError::Internal, "RSA-OAEP-SHA256 encrypt", result);
    return ciphertext;
}

// ---- PrivateKey ----

PrivateKey::PrivateKey(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) { }
PrivateKey::~PrivateKey() = default;
PrivateKey::PrivateKey(PrivateKey&&) noexcept = default;
PrivateKey& PrivateKey::operator=(PrivateKey&&) noexcept = default;

namespace {

ErrorOr<PrivateKey> finish_private_key(std::unique_ptr<PrivateKey::Impl> impl)
{
    impl->type = TRY(classify_key(impl->context, impl->bits));
    auto spki = TRY(write_spki(impl->context));
    impl->public_key = TRY(PublicKey::from_spki_der(spki));
    return detail::KeyAccess::make_private_key(std::move(impl));
}

} // namespace

ErrorOr<PrivateKey> PrivateKey::generate(KeyType type)
{
    if (type == KeyType::Rsa)
        return generate_rsa(MIN_RSA_BITS);
    auto impl = std::make_unique<Impl>();
    int result = mbedtls_pk_setup(&impl->context, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (result != 0)
        return mbedtls_error(CryptoError::Internal, "set up an EC key", result);
    result = mbedtls_ecp_gen_key(curve_of(type), &ec_keypair(impl->context), random_callback, nullptr);
    if (result != 0)
        return mbedtls_error(CryptoError::RandomSource, fmt::format("generate a {} key", key_type_name(type)), result);
    return finish_private_key(std::move(impl));
}

ErrorOr<PrivateKey> PrivateKey::generate_rsa(std::size_t bits)
{
    if (bits < MIN_RSA_BITS || bits > MAX_RSA_BITS || bits % 2 != 0)
        return failure_error(CryptoError::Unsupported,
            fmt::format("RSA-{}: the modulus must have an even number of bits from {} to {}", bits, MIN_RSA_BITS, MAX_RSA_BITS));
    auto impl = std::make_unique<Impl>();
    int result = mbedtls_pk_setup(&impl->context, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA));
    if (result != 0)
        return mbedtls_error(CryptoError::Internal, "set up an RSA key", result);
    result = mbedtls_rsa_gen_key(&rsa_context(impl->context), random_callback, nullptr, static_cast<unsigned>(bits),
        RSA_PUBLIC_EXPONENT);
    if (result != 0)
        return mbedtls_error(CryptoError::RandomSource, fmt::format("generate an RSA-{} key", bits), result);
    return finish_private_key(std::move(impl));
}

namespace {

ErrorOr<PrivateKey> parse_private_der(ByteView der)
{
    auto impl = std::make_unique<PrivateKey::Impl>();
    int result = mbedtls_pk_parse_key(&impl->context, der.data(), der.size(), nullptr, 0);
    if (result == MBEDTLS_ERR_PK_PASSWORD_REQUIRED || result == MBEDTLS_ERR_PK_PASSWORD_MISMATCH)
        return failure_error(CryptoError::Unsupported, "parse private key: encrypted private keys are not supported");
    if (result == MBEDTLS_ERR_PK_UNKNOWN_PK_ALG || result == MBEDTLS_ERR_PK_UNKNOWN_NAMED_CURVE
        || result == MBEDTLS_ERR_PK_FEATURE_UNAVAILABLE)
        return mbedtls_error(CryptoError::Unsupported, "parse private key", result);
    if (result != 0)
        return mbedtls_error(CryptoError::Malformed, "parse private key", result);
    // mbedTLS keeps a SEC1 key's embedded public key as given: make sure it
    // is d·G (and, for RSA, that the CRT values agree), or public_key()
    // could describe some other key.
    result = mbedtls_pk_check_pair(&impl->context, &impl->context);
    if (result != 0)
        return mbedtls_error(CryptoError::Malformed, "private key is inconsistent", result);
    return finish_private_key(std::move(impl));
}

} // namespace

ErrorOr<PrivateKey> PrivateKey::parse(ByteView der_or_pem)
{
    if (der_or_pem.size() > MAX_KEY_INPUT_SIZE)
        return failure_error(CryptoError::TooLarge,
            fmt::format("private key of {} bytes, at most {}", der_or_pem.size(), MAX_KEY_INPUT_SIZE));
    if (!looks_like_pem(der_or_pem))
        return parse_private_der(der_or_pem);

    auto blocks = TRY(pem_decode(as_chars(der_or_pem)));
    // The decoded blocks hold key material: wipe them however we leave.
    struct Wipe {
        std::vector<PemBlock>& blocks;
        ~Wipe()
        {
            for (auto& block : blocks)
                secure_zero(block.der.data(), block.der.size());
        }
    } wipe { blocks };

    PemBlock const* key_block = nullptr;
    for (auto const& block : blocks) {
        // `openssl ecparam -genkey` writes the curve first.
        if (block.label == "EC PARAMETERS")
            continue;
        if (block.label == "ENCRYPTED PRIVATE KEY")
            return failure_error(CryptoError::Unsupported, "parse private key: encrypted private keys are not supported");
        if (block.label != "EC PRIVATE KEY" && block.label != "RSA PRIVATE KEY" && block.label != "PRIVATE KEY")
            return failure_error(CryptoError::Malformed, fmt::format("parse private key: unexpected PEM block \"{}\"", block.label));
        if (key_block != nullptr)
            return failure_error(CryptoError::Malformed, "parse private key: more than one key in the PEM text");
        key_block = &block;
    }
    if (key_block == nullptr)
        return failure_error(CryptoError::Malformed, "parse private key: no private key block in the PEM text");
    return parse_private_der(key_block->der);
}

KeyType PrivateKey::type() const { return m_impl->type; }
std::size_t PrivateKey::bits() const { return m_impl->bits; }
PublicKey PrivateKey::public_key() const { return *m_impl->public_key; }
bool PrivateKey::matches(PublicKey const& key) const { return *m_impl->public_key == key; }

ErrorOr<SecretBytes> PrivateKey::to_der() const
{
    SecretBytes buffer(PRIVATE_KEY_BUFFER_SIZE);
    std::lock_guard lock(m_impl->mutex);
    int length = mbedtls_pk_write_key_der(&m_impl->context, buffer.data(), buffer.size());
    if (length < 0)
        return mbedtls_error(CryptoError::Internal, "write private key", length);
    // DER is written at the end of the buffer.
    return SecretBytes(buffer.view().last(static_cast<std::size_t>(length)));
}

ErrorOr<SecretBytes> PrivateKey::to_pem() const
{
    SecretBytes buffer(PRIVATE_KEY_BUFFER_SIZE);
    std::lock_guard lock(m_impl->mutex);
    int result = mbedtls_pk_write_key_pem(&m_impl->context, buffer.data(), buffer.size());
    if (result != 0)
        return mbedtls_error(CryptoError::Internal, "write private key PEM", result);
    // NUL-terminated text at the start of the buffer.
    buffer.truncate(std::strlen(reinterpret_cast<char const*>(buffer.data())));
    return buffer;
}

ErrorOr<Bytes> PrivateKey::sign(ByteView message) const
{
    switch (type()) {
    case KeyType::EcP256: return sign_digest(sha256(message));
    case KeyType::EcP384: return sign_digest(sha384(message));
    case KeyType::Rsa: break;
    }
    return not_ec("ECDSA sign");
}

ErrorOr<Bytes> PrivateKey::sign(ByteView message, EcdsaNonce& nonce) const
{
    switch (type()) {
    case KeyType::EcP256: return sign_digest(sha256(message), nonce);
    case KeyType::EcP384: return sign_digest(sha384(message), nonce);
    case KeyType::Rsa: break;
    }
    nonce.m_impl.reset(); // consumed, as sign_digest would
    return not_ec("ECDSA sign");
}

namespace {

// Low-S: (r, s) and (r, n - s) both verify; the signature always carries
// the smaller s, so each message and key give one encoding (keys.hpp).
// Then r‖s, each half big-endian in `half` bytes.
ErrorOr<Bytes> finish_signature(mbedtls_ecp_group const& group, mbedtls_mpi& r, mbedtls_mpi& s, std::size_t half)
{
    Mpi half_order;
    if (mbedtls_mpi_copy(&half_order.value, &group.N) != 0 || mbedtls_mpi_shift_r(&half_order.value, 1) != 0)
        return failure_error(CryptoError::Internal, "ECDSA sign: the curve order");
    if (mbedtls_mpi_cmp_mpi(&s, &half_order.value) > 0) {
        Mpi low;
        if (mbedtls_mpi_sub_mpi(&low.value, &group.N, &s) != 0 || mbedtls_mpi_copy(&s, &low.value) != 0)
            return failure_error(CryptoError::Internal, "ECDSA sign: low-S");
    }
    Bytes signature(2 * half);
    if (mbedtls_mpi_write_binary(&r, signature.data(), half) != 0
        || mbedtls_mpi_write_binary(&s, signature.data() + half, half) != 0)
        return failure_error(CryptoError::Internal, "ECDSA sign: r or s longer than the curve order");
    return signature;
}

Error wrong_digest_size(KeyType type, ByteView digest, std::size_t half)
{
    return failure_error(CryptoError::Malformed,
        fmt::format("ECDSA {} sign: digest of {} bytes, expected {}", key_type_name(type), digest.size(), half));
}

} // namespace

ErrorOr<Bytes> PrivateKey::sign_digest(ByteView digest) const
{
    if (!is_ec())
        return not_ec("ECDSA sign");
    std::size_t half = field_size(type());
    if (digest.size() != half)
        return wrong_digest_size(type(), digest, half);
    Mpi r, s;
    std::lock_guard lock(m_impl->mutex);
    auto* keypair = &ec_keypair(m_impl->context);
    // RFC 6979 deterministic k, blinded with the per-thread DRBG.
    int result = mbedtls_ecdsa_sign_det_ext(&keypair->grp, &r.value, &s.value, &keypair->d, digest.data(), digest.size(),
        hash_of(type()), random_callback, nullptr);
    if (result != 0)
        return mbedtls_error(CryptoError::Internal, "ECDSA sign", result);
    return finish_signature(keypair->grp, r.value, s.value, half);
}

// k and r = x(k·G) mod n (keys.hpp).
struct EcdsaNonce::Impl {
    Mpi k;
    Mpi r;
};

EcdsaNonce::EcdsaNonce(KeyType type, std::unique_ptr<Impl> impl)
    : m_type(type)
    , m_impl(std::move(impl))
{
}
EcdsaNonce::~EcdsaNonce() = default;
EcdsaNonce::EcdsaNonce(EcdsaNonce&&) noexcept = default;
EcdsaNonce& EcdsaNonce::operator=(EcdsaNonce&&) noexcept = default;

ErrorOr<EcdsaNonce> PrivateKey::prepare_nonce() const
{
    if (!is_ec())
        return not_ec("ECDSA nonce");
    auto impl = std::make_unique<EcdsaNonce::Impl>();
    std::lock_guard lock(m_impl->mutex);
    auto& group = ec_keypair(m_impl->context).grp;
    mbedtls_ecp_point point;
    mbedtls_ecp_point_init(&point);
    int result = 0;
    // r = 0 happens with probability about 2^-384; draw again, as FIPS 186-5 says.
    for (int attempt = 0; attempt < 8; ++attempt) {
        result = mbedtls_ecp_gen_privkey(&group, &impl->k.value, random_callback, nullptr);
        if (result == 0)
            result = mbedtls_ecp_mul(&group, &point, &impl->k.value, &group.G, random_callback, nullptr);
        if (result == 0)
            result = mbedtls_mpi_mod_mpi(&impl->r.value, &point.X, &group.N);
        if (result != 0 || mbedtls_mpi_cmp_int(&impl->r.value, 0) != 0)
            break;
    }
    mbedtls_ecp_point_free(&point);
    if (result != 0)
        return mbedtls_error(CryptoError::Internal, "ECDSA nonce", result);
    if (mbedtls_mpi_cmp_int(&impl->r.value, 0) == 0)
        return failure_error(CryptoError::Internal, "ECDSA nonce: r stayed zero");
    return EcdsaNonce(type(), std::move(impl));
}

ErrorOr<Bytes> PrivateKey::sign_digest(ByteView digest, EcdsaNonce& nonce) const
{
    // Taken first: whatever happens below, this k never signs again.
    auto prepared = std::move(nonce.m_impl);
    if (!is_ec())
        return not_ec("ECDSA sign");
    if (!prepared)
        return failure_error(CryptoError::Malformed, "ECDSA sign: the nonce was already used");
    if (nonce.type() != type())
        return failure_error(CryptoError::WrongKeyType,
            fmt::format("ECDSA sign: a {} nonce for a {} key", key_type_name(nonce.type()), key_type_name(type())));
    std::size_t half = field_size(type());
    if (digest.size() != half)
        return wrong_digest_size(type(), digest, half);
    std::lock_guard lock(m_impl->mutex);
    auto& keypair = ec_keypair(m_impl->context);
    auto const& n = keypair.grp.N;
    // s = (e + r·d) / k mod n, computed as t·(e + r·d) / (t·k) with a fresh
    // random t, so that the inversion never sees k itself (mbedTLS's
    // ecdsa_sign blinds the same way). e is the digest as an integer: for
    // P-256 with SHA-256 and P-384 with SHA-384 it has the order's bit
    // length, so nothing is truncated (SEC1 §4.1.3 step 5).
    Mpi e, t, s, blinded_k, inverse;
    auto step = [](int code) { return code == 0; };
    bool ok = step(mbedtls_mpi_read_binary(&e.value, digest.data(), digest.size()))
        && step(mbedtls_ecp_gen_privkey(&keypair.grp, &t.value, random_callback, nullptr))
        && step(mbedtls_mpi_mul_mpi(&s.value, &prepared->r.value, &keypair.d))
        && step(mbedtls_mpi_add_mpi(&s.value, &s.value, &e.value))
        && step(mbedtls_mpi_mul_mpi(&s.value, &s.value, &t.value))
        && step(mbedtls_mpi_mod_mpi(&s.value, &s.value, &n))
        && step(mbedtls_mpi_mul_mpi(&blinded_k.value, &prepared->k.value, &t.value))
        && step(mbedtls_mpi_mod_mpi(&blinded_k.value, &blinded_k.value, &n))
        && step(mbedtls_mpi_inv_mod(&inverse.value, &blinded_k.value, &n))
        && step(mbedtls_mpi_mul_mpi(&s.value, &s.value, &inverse.value))
        && step(mbedtls_mpi_mod_mpi(&s.value, &s.value, &n));
    if (!ok)
        return failure_error(CryptoError::Internal, "ECDSA sign with a prepared nonce");
    // s = 0 happens with probability about 2^-384 and would not verify.
    if (mbedtls_mpi_cmp_int(&s.value, 0) == 0)
        return failure_error(CryptoError::Internal, "ECDSA sign with a prepared nonce: s = 0 (sign again)");
    return finish_signature(keypair.grp, prepared->r.value, s.value, half);
}

ErrorOr<SecretBytes> PrivateKey::rsa_oaep_decrypt(ByteView ciphertext) const
{
    if (type() != KeyType::Rsa)
        return not_rsa(type(), "RSA-OAEP decrypt");
    std::lock_guard lock(m_impl->mutex);
    auto* rsa = &rsa_context(m_impl->context);
    std::size_t modulus_size = mbedtls_rsa_get_len(rsa);
    if (ciphertext.size() != modulus_size)
        return failure_error(CryptoError::Malformed,
            fmt::format("RSA-OAEP-SHA256: ciphertext of {} bytes, expected {} for RSA-{}", ciphertext.size(), modulus_size, bits()));
    mbedtls_rsa_set_padding(rsa, MBEDTLS_RSA_PKCS_V21, MBEDTLS_MD_SHA256);
    SecretBytes plaintext(modulus_size);
    std::size_t length = 0;
    int result = mbedtls_rsa_rsaes_oaep_decrypt(rsa, random_callback, nullptr, MBEDTLS_RSA_PRIVATE, nullptr, 0, &length,
        ciphertext.data(), plaintext.data(), plaintext.size());
    if (result != 0)
        return mbedtls_error(CryptoError::DecryptionFailed, "RSA-OAEP-SHA256 decrypt", result);
    plaintext.truncate(length);
    return plaintext;
}

ErrorOr<SecretBytes> PrivateKey::ecdh(PublicKey const& peer) const
{
    if (!is_ec() || !peer.is_ec())
        return not_ec("ECDH");
    if (peer.type() != type())
        return failure_error(CryptoError::WrongKeyType,
            fmt::format("ECDH: the peer key is {}, ours is {}", key_type_name(peer.type()), key_type_name(type())));
    // The peer's Q is only read; our group (precomputation cache) is written.
    auto const* peer_keypair = &ec_keypair(detail::KeyAccess::impl(peer).context);
    Mpi shared;
    SecretBytes secret(field_size(type()));
    std::lock_guard lock(m_impl->mutex);
    auto* keypair = &ec_keypair(m_impl->context);
    int result = mbedtls_ecdh_compute_shared(&keypair->grp, &shared.value, &peer_keypair->Q, &keypair->d, random_callback, nullptr);
    if (result != 0)
        return mbedtls_error(CryptoError::Malformed, "ECDH", result);
    if (mbedtls_mpi_write_binary(&shared.value, secret.data(), secret.size()) != 0)
        return failure_error(CryptoError::Internal, "ECDH: shared secret longer than the field");
    return secret;
}

} // namespace qtbox::crypto
