// Writes the seed corpora of the eif_reader, tar_layer, qtsm_request,
// proxy_config, virtqueue and vsock_packets targets (fuzz/corpus/<target>/)
// with the project's own writers: EifWriter and make_signature_section, the
// tests' TarBuilder, encode_request/encode_response and make_frame, the
// virtqueue input format of virtqueue_input.hpp and the vsock_packets script
// builder (vsock_script.hpp). Run from the fuzz build:
//     build-sanitize/fuzz/fuzz_make_seeds fuzz/corpus
// Seeds are small valid inputs (no kernel, a few KiB at most): the fuzzer
// mutates from there. Re-run it when a format changes.
#include "../tests/support/tar_builder.hpp"
#include "virtqueue_input.hpp"
#include "vsock_script.hpp"

#include <qtbox/base/sys.hpp>
#include <qtbox/devices/virtio/queue.hpp>
#include <qtbox/eif/signature.hpp>
#include <qtbox/eif/writer.hpp>
#include <qtbox/pki/pki.hpp>
#include <qtbox/qtsm/framing.hpp>
#include <qtbox/qtsm/protocol.hpp>

#include <fmt/format.h>

#include <fcntl.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace {

using namespace qtbox;

// 2026-03-01T12:00:00Z, the instant the eif_reader target checks at; the
// signing PKI starts an hour before it.
constexpr UnixMillis AT = 1772366400000;
constexpr std::int64_t HOUR = 3600 * 1000;

template<typename T>
T must(ErrorOr<T> result, std::string_view what)
{
    if (result.is_error()) {
        fmt::print(stderr, "make_seeds: {}: {}\n", what, result.error().message());
        std::exit(1);
    }
    return result.release_value();
}

void must(ErrorOr<void> result, std::string_view what)
{
    if (result.is_error()) {
        fmt::print(stderr, "make_seeds: {}: {}\n", what, result.error().message());
        std::exit(1);
    }
}

void write(std::string const& path, ByteView bytes)
{
    must(sys::write_file_atomic(path, bytes), path);
    fmt::print("{} ({} bytes)\n", path, bytes.size());
}

struct EifSections {
    std::string cmdline { "console=ttyS0 quiet" };
    std::optional<std::string> metadata;
    std::vector<std::string> ramdisks;
};

void write_eif(std::string const& path, EifSections const& sections, eif::SigningIdentity const* identity)
{
    auto fd = must(sys::open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644), path);
    auto writer = must(eif::EifWriter::create(fd.get(), 0, false), path);
    must(writer.write_section(eif::SectionType::Kernel, as_bytes("synthetic kernel, not a bzImage")), path);
    must(writer.write_section(eif::SectionType::Cmdline, as_bytes(sections.cmdline)), path);
    if (sections.metadata)
        must(writer.write_section(eif::SectionType::Metadata, as_bytes(*sections.metadata)), path);
    for (auto const& ramdisk : sections.ramdisks)
        must(writer.write_section(eif::SectionType::Ramdisk, as_bytes(ramdisk)), path);
    if (identity) {
        auto section = must(eif::make_signature_section(*identity, writer.measurements().pcr0), path);
        must(writer.write_section(eif::SectionType::Signature, section), path);
    }
    must(writer.finish(), path);
    fmt::print("{}\n", path);
}

void eif_seeds(std::string const& directory)
{
    auto temporary = (std::filesystem::temp_directory_path() / "qtbox-make-seeds-XXXXXX").string();
    if (::mkdtemp(temporary.data()) == nullptr)
        std::exit(1);
    pki::InitOptions options;
    options.now = AT - HOUR;
    options.parent_name = "fuzz-seeds";
    auto authority = must(pki::init(temporary + "/pki", false, options), "pki init");
    std::filesystem::remove_all(temporary);
    // The parent CA's P-384 key and certificate sign like an eif-build
    // --private-key/--signing-certificate pair.
    eif::SigningIdentity identity { std::move(authority.parent_key), std::move(authority.parent) };

    write_eif(directory + "/minimal", { "console=ttyS0", std::nullopt, { "070701 bootstrap" } }, nullptr);
    write_eif(directory + "/metadata",
        { "console=ttyS0 quiet", R"({"ImageName":"fuzz","ImageVersion":"1.0","BuildMetadata":{"Tool":"qtbox"}})",
            { "bootstrap ramdisk", "application ramdisk" } },
        nullptr);
    write_eif(directory + "/signed", { "console=ttyS0", R"({"ImageName":"signed"})", { "bootstrap", "app" } }, &identity);
}

void tar_seeds(std::string const& directory)
{
    using test::TarBuilder;
    write(directory + "/basic.tar",
        TarBuilder()
            .entry({ "./", '5', 0755 }, {})
            .directory("etc/")
            .file("etc/hostname", "enclave\n")
            .file("bin/app", "#!/bin/sh\necho hi\n", 0755, 1000, 1000)
            .symlink("bin/sh", "/bin/busybox")
            .hardlink("bin/app2", "bin/app")
            .finish());
    write(directory + "/pax.tar",
        TarBuilder()
            .pax({ { "path", "usr/share/" + std::string(120, 'p') + "/file" }, { "uid", "70000" }, { "mtime", "1.5" } })
            .file("ignored-short-name", "pax data")
            .pax({ { "linkpath", "usr/lib/" + std::string(110, 'l') } })
            .symlink("lib", "short")
            .entry({ "pax_global_header", 'g' }, "16 comment=seed\n")
            .finish());
    write(directory + "/gnu.tar",
        TarBuilder()
            .gnu_long_name("opt/" + std::string(130, 'g') + "/data")
            .entry({ "short", '0', 0644, 0, 0, {}, 0, 0, true }, "gnu data")
            .entry({ "././@LongLink", 'K', 0644, 0, 0, {}, 0, 0, true }, "opt/" + std::string(110, 'k') + std::string(1, '\0'))
            .entry({ "link", '2', 0777, 0, 0, "x", 0, 0, true }, {})
            .finish());
    write(directory + "/whiteout.tar",
        TarBuilder()
            .directory("var/")
            .file("var/.wh.cache", "")
            .directory("tmp/")
            .file("tmp/.wh..wh..opq", "")
            .file("tmp/new", "fresh")
            .finish());
    write(directory + "/devices.tar",
        TarBuilder()
            .directory("dev/")
            .device("dev/console", '3', 5, 1)
            .device("dev/loop0", '4', 7, 0)
            .entry({ "dev/fifo", '6', 0600 }, {})
            .finish());
}

void frame_into(Bytes& stream, Bytes const& item)
{
    auto framed = qtsm::make_frame(item);
    stream.insert(stream.end(), framed.begin(), framed.end());
}

void qtsm_seeds(std::string const& directory)
{
    auto request = [&](std::string const& name, qtsm::Request const& message) {
        Bytes stream;
        frame_into(stream, qtsm::encode_request(message));
        write(directory + "/" + name, stream);
    };
    request("describe_pcr", qtsm::DescribePcrRequest { 0 });
    request("extend_pcr", qtsm::ExtendPcrRequest { 16, Bytes { 'm', 'e', 'a', 's', 'u', 'r', 'e' } });
    request("lock_pcr", qtsm::LockPcrRequest { 17 });
    request("lock_pcrs", qtsm::LockPcrsRequest { { 18, 19, 31 } });
    request("describe_qtsm", qtsm::DescribeQtsmRequest {});
    request("get_random", qtsm::GetRandomRequest {});
    request("attestation", qtsm::AttestationRequest { Bytes(16, 'u'), Bytes(8, 'n'), Bytes(32, 'k') });
    request("attestation_null", qtsm::AttestationRequest {});

    // One connection's worth: extend, lock, extend again (refused), read it
    // back, attest.
    Bytes session;
    frame_into(session, qtsm::encode_request(qtsm::ExtendPcrRequest { 20, Bytes { 1, 2, 3 } }));
    frame_into(session, qtsm::encode_request(qtsm::LockPcrRequest { 20 }));
    frame_into(session, qtsm::encode_request(qtsm::ExtendPcrRequest { 20, Bytes { 4 } }));
    frame_into(session, qtsm::encode_request(qtsm::DescribePcrRequest { 20 }));
    frame_into(session, qtsm::encode_request(qtsm::AttestationRequest { std::nullopt, Bytes { 9 }, std::nullopt }));
    write(directory + "/session", session);

    // Responses, for the client-side decoder the target also runs.
    Bytes responses;
    qtsm::DescribeQtsmResponse description;
    description.module_id = "4662b7a3-7898-46c9-a6c5-20e9025e50bc.enc-0123456789abcdef";
    description.max_pcrs = 32;
    description.locked_pcrs = { 0, 1, 2, 16 };
    description.digest = "SHA384";
    frame_into(responses, qtsm::encode_response(description));
    frame_into(responses, qtsm::encode_response(qtsm::DescribePcrResponse { true, Bytes(48, 0xab) }));
    frame_into(responses, qtsm::encode_error(qtsm::QtsmError::ReadOnlyIndex));
    write(directory + "/responses", responses);
}

void proxy_config_seeds(std::string const& directory)
{
    write(directory + "/complete.toml", as_bytes(R"([[outbound]]
vsock_port = 8000
host = "kms.example.com"
port = 443

[[outbound]]
vsock_port = 8001
host = "2001:db8::1"
port = 80
enclave_port = 8080
max_connections = 10

[[inbound]]
listen = "127.0.0.1:5050"
enclave_id = 0
vsock_port = 5050

[[inbound]]
listen = "[::]:5051"
enclave_cid = 4
vsock_port = 6000
max_connections = 3

[limits]
max_connections = 2000
idle_timeout = "1m30s"
connect_timeout = 5
)"));
    write(directory + "/outbound.toml", as_bytes("[[outbound]]\nvsock_port = 8000\nhost = \"192.0.2.1\"\nport = 443\n"));
    write(directory + "/inbound.toml",
        as_bytes("# parent only\n[[inbound]]\nlisten = \"0.0.0.0:8443\"\nenclave_cid = 16\nvsock_port = 8443\n\n"
                 "[limits]\nidle_timeout = \"0\"\nconnect_timeout = \"500ms\"\n"));
    write(directory + "/inline.toml",
        as_bytes("outbound = [ { vsock_port = 9002, host = 'kms.cn-north-4.myhuaweicloud.com.', port = 443 } ]\n"
                 "limits = { max_connections = 1, idle_timeout = 604800 }\n"));
}

// Scripts for the vsock device: each a conversation a guest (and a parent
// program) has, which the fuzzer bends.
void vsock_seeds(std::string const& directory)
{
    using namespace fuzz::vsock_script;
    constexpr std::uint8_t REQUEST = 1, RESPONSE = 2, RST = 3, SHUTDOWN = 4, RW = 5, CREDIT_UPDATE = 6, CREDIT_REQUEST = 7;
    constexpr std::uint8_t HEARTBEAT = 0, ECHO = 1, NOBODY = 2;
    std::vector<std::uint16_t> const split { 44, 4096 };

    Builder heartbeat;
    heartbeat.offer_rx(2, split)
        .transmit(REQUEST, 0, HEARTBEAT)
        .transmit(RW, 0, HEARTBEAT, 1)
        .offer_rx(2, { 4140 })
        .transmit(SHUTDOWN, 0, HEARTBEAT, 0, 3)
        .offer_rx(1, split);
    write(directory + "/heartbeat", heartbeat.bytes());

    Builder echo;
    echo.offer_rx(4, split)
        .transmit(REQUEST, 1, ECHO)
        .transmit(RW, 1, ECHO, 3000, 0, { 10, 40, 1000 })
        .offer_rx(4, { 20, 24, 3000 })
        .transmit(CREDIT_REQUEST, 1, ECHO)
        .transmit(CREDIT_UPDATE, 1, ECHO, 0, 0, {}, 4096, 3000)
        .transmit(SHUTDOWN, 1, ECHO, 0, 2)
        .transmit(RW, 1, ECHO, 5)
        .offer_rx(4, split);
    write(directory + "/echo", echo.bytes());

    Builder refused;
    refused.offer_rx(4, split)
        .transmit(REQUEST, 2, NOBODY)
        .transmit(RW, 2, NOBODY, 8)
        .transmit(CREDIT_UPDATE, 3, ECHO)
        .transmit(RST, 3, ECHO)
        .transmit(9, 2, HEARTBEAT);
    write(directory + "/refused", refused.bytes());

    Builder parent;
    parent.parent_connect(NOBODY)
        .offer_rx(1, { 44 })
        .transmit(RESPONSE, GUEST_LISTENS_ON + NOBODY, NEWEST_PARENT_PORT)
        .parent_write(0, 100)
        .offer_rx(4, split)
        .transmit(RW, GUEST_LISTENS_ON + NOBODY, NEWEST_PARENT_PORT, 50)
        .parent_connect(HEARTBEAT)
        .offer_rx(1, split)
        .transmit(RST, GUEST_LISTENS_ON + HEARTBEAT, NEWEST_PARENT_PORT)
        .parent_write(0, 0)
        .transmit(SHUTDOWN, GUEST_LISTENS_ON + NOBODY, NEWEST_PARENT_PORT, 0, 3)
        .offer_rx(2, split);
    write(directory + "/parent", parent.bytes());

    Builder flood;
    flood.offer_rx(1, split).transmit(REQUEST, 1, ECHO);
    for (int i = 0; i < 5; ++i)
        flood.transmit(RW, 1, ECHO, 65535, 0, { 44, 30000 }, 256 * 1024, 0);
    flood.offer_rx(4, split);
    write(directory + "/flood", flood.bytes());

    Builder bent;
    bent.offer_rx(4, split)
        .transmit_bent(REQUEST, 6, 3, 1, 0, 0)
        .transmit_bent(REQUEST, GUEST_CID, 2, 1, 0, 0)
        .transmit_bent(REQUEST, GUEST_CID, 3, 2, 0, 0)
        .transmit_bent(RW, GUEST_CID, 3, 1, 100, 10)
        .transmit_bent(RW, GUEST_CID, 3, 1, 70000, 70)
        .offer_rx(4, split);
    write(directory + "/bent", bent.bytes());

    Builder raw;
    raw.offer_rx(2, split)
        .raw_descriptor(1, 3, 0x3FFFF0, 0x100, 0, 0, true)
        .raw_descriptor(0, 5, 0x10000, 0x1000, 3, 5, true)
        .raw_index(1, 100)
        .reinitialize(true)
        .offer_rx(2, split)
        .transmit(REQUEST, 0, HEARTBEAT)
        .notify(3);
    write(directory + "/raw", raw.bytes());
}

// One input of the virtqueue target (virtqueue_input.hpp), little-endian.
class VirtqueueSeed {
public:
    explicit VirtqueueSeed(std::uint8_t config) { u8(config); }

    void u8(std::uint8_t value) { m_bytes.push_back(value); }
    void u16(std::uint16_t value)
    {
        u8(static_cast<std::uint8_t>(value));
        u8(static_cast<std::uint8_t>(value >> 8));
    }
    void u32(std::uint32_t value)
    {
        u16(static_cast<std::uint16_t>(value));
        u16(static_cast<std::uint16_t>(value >> 16));
    }
    void u64(std::uint64_t value)
    {
        u32(static_cast<std::uint32_t>(value));
        u32(static_cast<std::uint32_t>(value >> 32));
    }

    struct Descriptor {
        std::uint64_t address;
        std::uint32_t length;
        std::uint16_t flags;
        std::uint16_t next;
    };
    // The image: `size` descriptors (the rest zero), then the available
    // ring's flags, idx and entries.
    void image(std::uint16_t size, std::vector<Descriptor> const& descriptors, std::uint16_t available_index,
        std::vector<std::uint16_t> const& ring)
    {
        u16(static_cast<std::uint16_t>(16 * size + 4 + 2 * ring.size()));
        for (std::uint16_t index = 0; index < size; ++index) {
            Descriptor descriptor = index < descriptors.size() ? descriptors[index] : Descriptor { 0, 0, 0, 0 };
            u64(descriptor.address);
            u32(descriptor.length);
            u16(descriptor.flags);
            u16(descriptor.next);
        }
        u16(0);
        u16(available_index);
        for (auto head : ring)
            u16(head);
    }
    void op(fuzz::virtqueue::Op op) { u8(op); }

    Bytes const& bytes() const { return m_bytes; }

private:
    Bytes m_bytes;
};

void virtqueue_seeds(std::string const& directory)
{
    using namespace fuzz::virtqueue;
    using namespace devices::virtio;
    constexpr std::uint8_t SIZE_2 = 1;
    constexpr std::uint8_t SIZE_8 = 3;
    constexpr std::uint8_t SIZE_16 = 4;
    constexpr std::uint8_t SIZE_256 = 8;

    {
        VirtqueueSeed seed(SIZE_16);
        seed.image(16, { { 0x8000, 16, 0, 0 } }, 1, { 0 });
        for (auto op : { Pop, PushUsed })
            seed.op(op);
        seed.u32(0);
        for (auto op : { NeedsInterrupt, Enable, Pop })
            seed.op(op);
        write(directory + "/single_chain", seed.bytes());
    }
    {
        VirtqueueSeed seed(SIZE_16 | CONFIG_EVENT_INDEX);
        seed.image(16, { { 0x8000, 32, VIRTQ_DESC_F_NEXT, 1 }, { 0x9000, 64, VIRTQ_DESC_F_WRITE, 0 } }, 1, { 0 });
        seed.op(Pop);
        seed.op(PushUsed);
        seed.u32(64);
        seed.op(NeedsInterrupt);
        seed.op(Publish);
        seed.u16(0);
        seed.op(Pop);
        seed.op(PushUsed);
        seed.u32(1);
        seed.op(SetUsedEvent);
        seed.u16(5);
        for (auto op : { NeedsInterrupt, Enable, Disable, Enable })
            seed.op(op);
        write(directory + "/readable_writable_event_idx", seed.bytes());
    }
    {
        VirtqueueSeed seed(SIZE_16);
        seed.image(16, { { 0x8000, 4, VIRTQ_DESC_F_NEXT, 1 }, { 0x8000, 4, VIRTQ_DESC_F_NEXT, 0 } }, 1, { 0 });
        seed.op(Pop);
        seed.op(Pop);
        write(directory + "/loop", seed.bytes());
    }
    {
        VirtqueueSeed seed(SIZE_16);
        seed.image(16, { { 0xFFFF'FFFF'FFFF'FFF0, 0x20, 0, 0 }, { 0xFFF0, 0x20, 0, 0 } }, 2, { 0, 1 });
        for (auto op : { Pop, Pop, PushUsed, PushUsed })
            seed.op(op);
        write(directory + "/outside_ram", seed.bytes());
    }
    {
        VirtqueueSeed seed(SIZE_16);
        seed.image(16, {}, 0xFFFF, {});
        for (auto op : { Pop, Pop, Enable })
            seed.op(op);
        write(directory + "/huge_avail_idx", seed.bytes());
    }
    {
        VirtqueueSeed seed(SIZE_16);
        seed.image(16,
            { { 0x8000, 16, VIRTQ_DESC_F_INDIRECT, 0 }, { 0x9000, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2 },
                { 0xA000, 16, 0, 0 }, { 0xB000, 16, VIRTQ_DESC_F_NEXT, 99 } },
            3, { 0, 1, 3 });
        for (auto op : { Pop, Pop, Pop, PushUsed, Enable })
            seed.op(op);
        write(directory + "/indirect_order_next", seed.bytes());
    }
    {
        // 256 descriptors of 16 MiB in the large region: 2^32 bytes.
        VirtqueueSeed seed(SIZE_256 | CONFIG_REMAP);
        std::vector<VirtqueueSeed::Descriptor> chain;
        for (std::uint16_t index = 0; index < 256; ++index)
            chain.push_back({ 2ull << 62, 16 << 20, static_cast<std::uint16_t>(index < 255 ? VIRTQ_DESC_F_NEXT : 0),
                static_cast<std::uint16_t>(index + 1) });
        seed.image(256, chain, 1, { 0 });
        seed.op(Pop);
        write(directory + "/too_large", seed.bytes());
    }
    {
        VirtqueueSeed seed(SIZE_8 | CONFIG_CUSTOM_LAYOUT | CONFIG_REMAP);
        seed.u64(1ull << 62);
        seed.u64((1ull << 62) | 0x100);
        seed.u64((1ull << 62) | 0x200);
        seed.image(8, { { 0x800, 8, 0, 0 } }, 1, { 0 });
        seed.op(Pop);
        seed.op(PushUsed);
        seed.u32(0);
        seed.op(Publish);
        seed.u16(0);
        for (auto op : { Pop, Reset, Pop, NeedsInterrupt })
            seed.op(op);
        write(directory + "/custom_layout", seed.bytes());
    }
    {
        VirtqueueSeed seed(SIZE_2);
        seed.image(2, { { 0x8000, 8, VIRTQ_DESC_F_WRITE, 0 } }, 0, {});
        for (int round = 0; round < 300; ++round) {
            seed.op(Publish);
            seed.u16(0);
            seed.op(Pop);
            seed.op(PushUsed);
            seed.u32(8);
            seed.op(NeedsInterrupt);
            if (round == 150) {
                seed.op(SetAvailFlags);
                seed.u16(VIRTQ_AVAIL_F_NO_INTERRUPT);
            }
        }
        write(directory + "/many_rounds", seed.bytes());
    }
    {
        VirtqueueSeed seed(SIZE_8 | CONFIG_EVENT_INDEX);
        seed.image(8, {}, 0, {});
        seed.op(WriteDescriptor);
        seed.u8(3);
        seed.u64(0x4000);
        seed.u32(128);
        seed.u16(VIRTQ_DESC_F_WRITE);
        seed.u16(0);
        seed.op(Enable);
        seed.op(Publish);
        seed.u16(3);
        seed.op(Enable);
        seed.op(Pop);
        seed.op(Poke);
        seed.u16(0x1002); // avail idx of the default layout
        seed.u16(9);
        seed.op(Pop);
        write(directory + "/write_descriptor", seed.bytes());
    }
    {
        // A size that is not a power of two: activate() refuses it.
        VirtqueueSeed seed(CONFIG_RAW_SIZE);
        seed.u16(12);
        seed.image(12, { { 0x8000, 16, 0, 0 } }, 1, { 0 });
        seed.op(Pop);
        write(directory + "/raw_size", seed.bytes());
    }
}

} // namespace

int main(int argc, char** argv)
{
    if (argc != 2) {
        fmt::print(stderr, "usage: fuzz_make_seeds CORPUS_DIR\n");
        return 2;
    }
    std::string root = argv[1];
    for (auto name : { "eif_reader", "tar_layer", "qtsm_request", "proxy_config", "virtqueue", "vsock_packets" })
        must(sys::mkdir_p(root + "/" + name, 0755), name);
    eif_seeds(root + "/eif_reader");
    tar_seeds(root + "/tar_layer");
    qtsm_seeds(root + "/qtsm_request");
    proxy_config_seeds(root + "/proxy_config");
    virtqueue_seeds(root + "/virtqueue");
    vsock_seeds(root + "/vsock_packets");
    return 0;
}
