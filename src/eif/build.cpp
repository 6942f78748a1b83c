#include <qtbox/eif/app_config.hpp>
#include <qtbox/eif/build.hpp>
#include <qtbox/eif/modules.hpp>
#include <qtbox/eif/signature.hpp>
#include <qtbox/eif/writer.hpp>
#include <qtbox/image/cpio.hpp>

#include <qtbox/base/sys.hpp>

#include <fmt/format.h>

#include <cstdlib>

namespace qtbox::eif {

namespace {

constexpr char const* DEFAULT_BLOBS = "/usr/share/qtbox/blobs";
// A command line is at most MAX_CMDLINE_SIZE; room for blanks around it.
constexpr std::size_t MAX_BLOBS_CMDLINE_FILE = 4096;
constexpr std::size_t MAX_COMMAND_WORDS = 4096;
constexpr std::size_t MAX_RUN_CONFIG_BYTES = 1 << 20;
// /cmd and /env together hold at most this many bytes, so each of them is
// within what init reads.
static_assert(MAX_RUN_CONFIG_BYTES <= MAX_FILE_SIZE);
constexpr std::string_view MOUNT = "rootfs";
constexpr std::size_t KERNEL_CHUNK = 1 << 20;

// A path in the enclave ("/cmd") as the ramdisk's tree names it ("cmd").
std::string in_ramdisk(char const* path)
{
    return std::string(path).substr(1);
}

Error bad_input(std::string message)
{
    return Error::from_code(EifError::BadInput, std::move(message));
}

// The metadata section is JSON (docs/FORMATS.md §3), which holds UTF-8 text only.
ErrorOr<void> check_utf8(std::string_view value, std::string_view what)
{
    auto offset = first_invalid_utf8(value);
    if (offset != std::string_view::npos)
        return bad_input(fmt::format("{} is not valid UTF-8 (byte 0x{:02X} at offset {})", what, static_cast<unsigned char>(value[offset]), offset));
    return {};
}

ErrorOr<void> check_line(std::string_view value, std::string_view what)
{
    TRY(check_utf8(value, what));
    if (!fits_one_line(value))
        return bad_input(fmt::format("{} '{}' contains a newline or NUL, which /cmd and /env cannot hold", what, value.substr(0, 64)));
    return {};
}

ErrorOr<void> check_env_entry(std::string_view entry, std::string_view what)
{
    TRY(check_line(entry, what));
    if (!is_env_entry(entry))
        return bad_input(fmt::format("{} '{}' is not KEY=VALUE", what, entry.substr(0, 64)));
    return {};
}

image::Node regular_file(image::FileTree& tree, image::Content content, std::uint64_t size, std::uint32_t mode)
{
    image::Node node;
    node.type = image::NodeType::Regular;
    node.mode = mode;
    node.size = size;
    node.content = content;
    node.inode = tree.new_inode();
    return node;
}

image::Node inline_file(image::FileTree& tree, Bytes contents, std::uint32_t mode)
{
    auto size = contents.size();
    return regular_file(tree, { image::Content::Kind::Inline, tree.add_inline(std::move(contents)), 0 }, size, mode);
}

image::Node source_file(image::FileTree& tree, image::ByteSource source, std::uint32_t mode)
{
    auto size = source.size();
    return regular_file(tree, { image::Content::Kind::Source, tree.add_source(std::move(source)), 0 }, size, mode);
}

ErrorOr<image::ByteSource> open_input(std::string const& path, std::string_view what, std::uint64_t limit)
{
    auto source = image::ByteSource::open_file(path);
    if (source.is_error())
        return Error::from_code(EifError::MissingInput, fmt::format("{} {}", what, source.error().message()));
    if (source.value().size() > limit)
        return Error::from_code(EifError::LimitExceeded, fmt::format("{} {} is {} bytes (limit {})", what, path, source.value().size(), limit));
    return source;
}

ErrorOr<void> check_cmdline(std::string const& cmdline)
{
    if (cmdline.empty())
        return bad_input("the kernel command line is empty");
    if (cmdline.size() > MAX_CMDLINE_SIZE)
        return bad_input(fmt::format("the kernel command line is {} bytes (at most {})", cmdline.size(), MAX_CMDLINE_SIZE));
    for (char c : cmdline) {
        if (c < 0x20 || c > 0x7e)
            return bad_input("the kernel command line holds a control or non-ASCII character");
    }
    return {};
}

// ramdisk0: what init needs before the application's root exists.
ErrorOr<image::FileTree> bootstrap_tree(BuildRequest const& request, GuestModules const& modules)
{
    image::FileTree tree;
    TRY(tree.ensure_directory("dev", 0755));
    image::Node console;
    console.type = image::NodeType::CharDevice;
    console.mode = 0600;
    console.rdev_major = 5;
    console.rdev_minor = 1;
    TRY(tree.put("dev/console", std::move(console)));

    auto init = image::ByteSource::open_file(request.init);
    if (init.is_error())
        return Error::from_code(EifError::MissingInput, fmt::format("init binary {}", init.error().message()));
    TRY(tree.put("init", source_file(tree, init.release_value(), 0755)));

    std::vector<std::string> load_order;
    for (auto const& module : modules.files) {
        auto path = fmt::format("lib/modules/{}/{}", modules.release, module.relative_path);
        auto source = TRY(open_input(module.host_path, "module", image::MAX_FILE_SIZE));
        auto normalised = TRY(image::normalize_path(path));
        TRY(tree.put(normalised, source_file(tree, std::move(source), 0644)));
        load_order.push_back("/" + normalised);
    }
    TRY(tree.ensure_directory("etc", 0755));
    TRY(tree.ensure_directory("etc/qtbox", 0755));
    TRY(tree.put(in_ramdisk(MODULE_LIST_PATH), inline_file(tree, encode_lines(load_order), 0644)));
    return tree;
}

std::string base_name(std::string path)
{
    while (path.size() > 1 && path.back() == '/')
        path.pop_back();
    auto slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

nlohmann::ordered_json metadata_json(BuildRequest const& request, BuildResult const& result)
{
    nlohmann::ordered_json build;
    build["BuildTool"] = request.build_tool;
    build["BuildToolVersion"] = QTBOX_VERSION;
    if (request.build_time)
        build["BuildTime"] = format_rfc3339(*request.build_time);
    nlohmann::ordered_json config;
    config["Cmd"] = result.run.argv;
    config["Env"] = result.run.env;
    config["WorkingDir"] = result.run.working_dir;
    nlohmann::ordered_json metadata;
    metadata["ImageName"] = result.image_name;
    metadata["ImageVersion"] = result.image_version;
    metadata["BuildMetadata"] = std::move(build);
    metadata["ImageConfig"] = std::move(config);
    metadata["CustomMetadata"] = nullptr;
    return metadata;
}

class ProgressCounter {
public:
    ProgressCounter(BuildRequest const& request, std::uint64_t total) : m_request(request), m_total(total) { }
    void advance_to(std::uint64_t base, std::uint64_t done)
    {
        if (m_request.progress)
            m_request.progress(base + done, m_total);
    }

private:
    BuildRequest const& m_request;
    std::uint64_t m_total;
};

} // namespace

std::string default_blobs_directory()
{
    char const* value = std::getenv("QTBOX_BLOBS");
    return (value && *value) ? std::string(value) : std::string(DEFAULT_BLOBS);
}

ErrorOr<std::string> default_cmdline(std::string const& blobs_directory)
{
    auto path = blobs_directory + "/cmdline";
    auto bytes = sys::read_file(path, MAX_BLOBS_CMDLINE_FILE);
    if (bytes.is_error()) {
        if (bytes.error().is_errno(ENOENT))
            return std::string(DEFAULT_CMDLINE);
        return Error::from_code(EifError::MissingInput, fmt::format("the blobs' command line: {}", bytes.error().message()));
    }
    std::string_view text = as_chars(bytes.value());
    auto start = text.find_first_not_of(" \t\r\n");
    if (start == std::string_view::npos)
        return std::string();
    auto end = text.find_last_not_of(" \t\r\n");
    return std::string(text.substr(start, end - start + 1));
}

ErrorOr<std::vector<std::string>> parse_command_words(std::string_view text)
{
    std::size_t first = text.find_first_not_of(" \t\n");
    if (first != std::string_view::npos && text[first] == '[') {
        auto value = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
        if (value.is_discarded() || !value.is_array())
            return bad_input(fmt::format("'{}' starts with '[' but is not a JSON array of strings", text.substr(0, 64)));
        std::vector<std::string> words;
        for (auto const& element : value) {
            if (!element.is_string())
                return bad_input(fmt::format("'{}' holds a non-string element", text.substr(0, 64)));
            words.push_back(element.get<std::string>());
        }
        if (words.size() > MAX_COMMAND_WORDS)
            return bad_input("too many words in a command");
        return words;
    }
    std::vector<std::string> words;
    std::string word;
    bool in_word = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (c == ' ' || c == '\t' || c == '\n') {
            if (in_word) {
                words.push_back(std::move(word));
                word.clear();
                in_word = false;
            }
            continue;
        }
        in_word = true;
        if (c == '\\') {
            if (i + 1 == text.size())
                return bad_input(fmt::format("'{}' ends with a lone backslash", text.substr(0, 64)));
            word += text[++i];
        } else if (c == '\'') {
            auto close = text.find('\'', i + 1);
            if (close == std::string_view::npos)
                return bad_input(fmt::format("'{}' has an unterminated single quote", text.substr(0, 64)));
            word.append(text.substr(i + 1, close - i - 1));
            i = close;
        } else if (c == '"') {
            std::size_t j = i + 1;
            for (; j < text.size() && text[j] != '"'; ++j) {
                if (text[j] == '\\' && j + 1 < text.size() && std::string_view("\\\"$`\n").find(text[j + 1]) != std::string_view::npos)
                    ++j;
                word += text[j];
            }
            if (j == text.size())
                return bad_input(fmt::format("'{}' has an unterminated double quote", text.substr(0, 64)));
            i = j;
        } else {
            word += c;
        }
        if (words.size() > MAX_COMMAND_WORDS)
            return bad_input("too many words in a command");
    }
    if (in_word)
        words.push_back(std::move(word));
    return words;
}

ErrorOr<RunConfig> resolve_run_config(image::ImageConfig const& image, RunOverrides const& overrides)
{
    RunConfig run;
    std::vector<std::string> entrypoint = overrides.entrypoint ? *overrides.entrypoint : image.entrypoint.value_or(std::vector<std::string> {});
    std::vector<std::string> cmd;
    if (overrides.cmd)
        cmd = *overrides.cmd;
    else if (!overrides.entrypoint)
        cmd = image.cmd.value_or(std::vector<std::string> {});
    run.argv = std::move(entrypoint);
    run.argv.insert(run.argv.end(), cmd.begin(), cmd.end());
    if (run.argv.empty())
        return bad_input("no command to run: the image has neither ENTRYPOINT nor CMD (give --cmd or --entrypoint)");
    std::size_t total = 0;
    for (auto const& word : run.argv) {
        TRY(check_line(word, "command word"));
        total += word.size() + 1;
    }

    for (auto const& entry : image.env) {
        TRY(check_env_entry(entry, "image Env entry"));
        run.env.push_back(entry);
    }
    for (auto const& entry : overrides.env) {
        TRY(check_env_entry(entry, "--env"));
        auto key = env_key(entry);
        auto it = std::find_if(run.env.begin(), run.env.end(), [&](std::string const& existing) { return env_key(existing) == key; });
        if (it != run.env.end())
            *it = entry;
        else
            run.env.push_back(entry);
    }
    bool has_path = std::any_of(run.env.begin(), run.env.end(), [](std::string const& entry) { return env_key(entry) == "PATH"; });
    if (!has_path)
        run.env.insert(run.env.begin(), std::string("PATH=") + DEFAULT_PATH);
    for (auto const& entry : run.env)
        total += entry.size() + 1;

    auto working_dir = TRY(image::normalize_path(image.working_dir.empty() ? std::string("/") : image.working_dir));
    run.working_dir = "/" + working_dir;
    TRY(check_line(run.working_dir, "WorkingDir"));
    if (total > MAX_RUN_CONFIG_BYTES)
        return bad_input(fmt::format("the command and environment exceed {} bytes", MAX_RUN_CONFIG_BYTES));
    return run;
}

namespace {

// An entry of /etc/passwd (name:password:uid:gid:...) or /etc/group
// (name:password:gid:...) whose name or number is `key`: its third and, for
// passwd, fourth fields as numbers.
ErrorOr<std::optional<UserIds>> find_account(image::FileTree const& tree, std::string const& path, std::string_view key, bool passwd)
{
    auto read = image::read_small_file(tree, path, MAX_FILE_SIZE);
    if (read.is_error())
        return bad_input(fmt::format("the image's User needs {}: {}", path, read.error().message()));
    auto const& text = read.value();
    if (!text)
        return std::optional<UserIds> {};
    std::string_view rest = as_chars(*text);
    while (!rest.empty()) {
        auto end = rest.find('\n');
        auto line = rest.substr(0, end);
        rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
        std::vector<std::string_view> fields;
        std::size_t start = 0;
        for (std::size_t colon; (colon = line.find(':', start)) != std::string_view::npos; start = colon + 1)
            fields.push_back(line.substr(start, colon - start));
        fields.push_back(line.substr(start));
        if (fields.size() < (passwd ? 4u : 3u) || (fields[0] != key && fields[2] != key))
            continue;
        auto ids = parse_user_entry(fmt::format("{}:{}", fields[2], passwd ? fields[3] : fields[2]));
        if (ids.is_error())
            return bad_input(fmt::format("{}: the entry for '{}' has no valid ids", path, key));
        return std::optional<UserIds>(ids.value());
    }
    return std::optional<UserIds> {};
}

bool is_number(std::string_view text)
{
    return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

} // namespace

ErrorOr<std::optional<UserIds>> resolve_user(std::string_view user, image::FileTree const& tree, std::string const& root)
{
    if (user.empty())
        return std::optional<UserIds> {};
    TRY(check_line(user, "the image's User"));
    auto colon = user.find(':');
    auto name = user.substr(0, colon);
    auto group = colon == std::string_view::npos ? std::string_view() : user.substr(colon + 1);
    if (name.empty() || (colon != std::string_view::npos && group.empty()))
        return bad_input(fmt::format("the image's User '{}' is not USER[:GROUP]", user));
    auto passwd_path = root + "/etc/passwd";
    auto account = TRY(find_account(tree, passwd_path, name, true));
    UserIds ids;
    if (is_number(name)) {
        auto parsed = parse_user_entry(fmt::format("{}:0", name));
        if (parsed.is_error())
            return bad_input(fmt::format("the image's User '{}': uid out of range", user));
        ids = parsed.value();
        if (account && account->uid == ids.uid)
            ids.gid = account->gid;
    } else if (account) {
        ids = *account;
    } else {
        return bad_input(fmt::format("the image's User '{}': no user '{}' in the image's /etc/passwd", user, name));
    }
    if (!group.empty()) {
        if (is_number(group)) {
            auto parsed = parse_user_entry(fmt::format("0:{}", group));
            if (parsed.is_error())
                return bad_input(fmt::format("the image's User '{}': gid out of range", user));
            ids.gid = parsed.value().gid;
        } else {
            auto entry = TRY(find_account(tree, root + "/etc/group", group, false));
            if (!entry)
                return bad_input(fmt::format("the image's User '{}': no group '{}' in the image's /etc/group", user, group));
            ids.gid = entry->gid;
        }
    }
    if (ids == UserIds {})
        return std::optional<UserIds> {};
    return std::optional<UserIds>(ids);
}

nlohmann::ordered_json measurements_json(Measurements const& measurements)
{
    nlohmann::ordered_json json;
    json["HashAlgorithm"] = "Sha384";
    json["PCR0"] = hex_encode(measurements.pcr0);
    json["PCR1"] = hex_encode(measurements.pcr1);
    json["PCR2"] = hex_encode(measurements.pcr2);
    if (measurements.pcr8)
        json["PCR8"] = hex_encode(*measurements.pcr8);
    return json;
}

ErrorOr<BuildResult> build_eif(BuildRequest const& request)
{
    BuildResult result;
    std::string mount(MOUNT);

    // 1. The application's root file system, from whichever input.
    image::FileTree application;
    TRY(application.ensure_directory(mount, 0755));
    image::ImageInfo info;
    switch (request.kind) {
    case InputKind::Rootfs:
        TRY(image::add_host_directory(application, mount, request.input));
        info.name = base_name(request.input);
        info.version = "1.0";
        break;
    case InputKind::DockerArchive: {
        auto reference = TRY(image::split_image_reference(request.input, false));
        info = TRY(image::load_docker_archive(reference.path, reference.tag, application, mount));
        break;
    }
    case InputKind::Oci: {
        auto reference = TRY(image::split_image_reference(request.input, true));
        info = TRY(image::load_oci_layout(reference.path, reference.tag, application, mount));
        break;
    }
    }
    if (!info.config.architecture.empty() && info.config.architecture != "amd64")
        return Error::from_code(image::ImageError::Unsupported,
            fmt::format("the image is for {}; qtbox enclaves run x86_64 (amd64) images", info.config.architecture));
    if (!info.config.os.empty() && info.config.os != "linux")
        return Error::from_code(image::ImageError::Unsupported, fmt::format("the image is for {}, not linux", info.config.os));
    result.image_name = request.name.value_or(info.name);
    result.image_version = request.version.value_or(info.version);
    TRY(check_utf8(result.image_name, request.name ? "--name" : "the image name (give --name)"));
    TRY(check_utf8(result.image_version, request.version ? "--version" : "the image version (give --version)"));

    // 2. What init runs, and the directories Nitro's layout always has.
    result.run = TRY(resolve_run_config(info.config, request.overrides));
    for (auto directory : { "dev", "proc", "sys", "run" })
        TRY(application.ensure_directory(fmt::format("{}/{}", mount, directory), 0755));
    TRY(application.ensure_directory(mount + "/tmp", 01777));
    TRY(application.put(in_ramdisk(CMD_PATH), inline_file(application, encode_lines(result.run.argv), 0644)));
    TRY(application.put(in_ramdisk(ENV_PATH), inline_file(application, encode_lines(result.run.env), 0644)));
    TRY(application.put(in_ramdisk(WORKDIR_PATH), inline_file(application, encode_lines({ result.run.working_dir }), 0644)));
    result.user = TRY(resolve_user(info.config.user, application, mount));
    if (result.user)
        TRY(application.put(in_ramdisk(USER_PATH), inline_file(application, encode_lines({ encode_user(*result.user) }), 0644)));

    // 3. Kernel, modules, cmdline.
    TRY(check_cmdline(request.cmdline));
    auto kernel = TRY(open_input(request.kernel, "kernel", MAX_KERNEL_SIZE));
    auto kernel_release = TRY(bzimage_release(request.kernel));
    if (!kernel_release)
        result.warnings.push_back(fmt::format("{} is not an x86 bzImage; its release was not checked against the modules", request.kernel));
    auto modules = TRY(find_guest_modules(request.modules, request.kernel_release, kernel_release));
    result.kernel_release = modules.release;
    auto bootstrap = TRY(bootstrap_tree(request, modules));

    // 4. The signing identity, before anything is written.
    std::optional<SigningIdentity> identity;
    if (request.private_key || request.signing_certificate) {
        if (!request.private_key || !request.signing_certificate)
            return bad_input("signing needs both --private-key and --signing-certificate");
        identity = TRY(load_signing_identity(*request.private_key, *request.signing_certificate));
        if (!identity->certificate.is_valid_at(request.now)) {
            auto message = fmt::format("the signing certificate is not valid now (valid {} to {})",
                format_rfc3339(identity->certificate.not_before()), format_rfc3339(identity->certificate.not_after()));
            if (request.strict)
                return Error::from_code(EifError::CertificateTime, message + " (refused: --strict)");
            result.warnings.push_back(message + "; vmm starts it with a warning");
        }
    }

    // 5. Write: kernel, cmdline, metadata, ramdisk0, ramdisk1, signature.
    std::uint64_t bootstrap_bytes = bootstrap.content_bytes();
    std::uint64_t application_bytes = application.content_bytes();
    result.input_bytes = kernel.size() + bootstrap_bytes + application_bytes;
    ProgressCounter progress(request, result.input_bytes);
    auto output = TRY(sys::AtomicFile::create(request.output, 0644));
    auto writer = TRY(EifWriter::create(output.fd(), 0, request.parallel_hashing));

    TRY(writer.begin_section(SectionType::Kernel));
    {
        Bytes buffer(static_cast<std::size_t>(std::min<std::uint64_t>(KERNEL_CHUNK, std::max<std::uint64_t>(kernel.size(), 1))));
        std::uint64_t done = 0;
        while (done < kernel.size()) {
            std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), kernel.size() - done));
            TRY(kernel.read_at(done, std::span(buffer.data(), take)));
            TRY(writer.section_sink().write(ByteView(buffer.data(), take)));
            done += take;
        }
    }
    TRY(writer.end_section());
    progress.advance_to(0, kernel.size());
    TRY(writer.write_section(SectionType::Cmdline, as_bytes(request.cmdline)));
    TRY(writer.write_section(SectionType::Metadata, as_bytes(metadata_json(request, result).dump())));

    image::CpioOptions cpio;
    cpio.mtime = request.mtime;
    cpio.progress = [&](std::uint64_t done) { progress.advance_to(kernel.size(), done); };
    TRY(writer.begin_section(SectionType::Ramdisk));
    auto bootstrap_written = image::write_cpio(bootstrap, writer.section_sink(), cpio);
    if (bootstrap_written.is_error())
        return bootstrap_written.release_error().context("bootstrap ramdisk");
    TRY(writer.end_section());
    cpio.progress = [&](std::uint64_t done) { progress.advance_to(kernel.size() + bootstrap_bytes, done); };
    TRY(writer.begin_section(SectionType::Ramdisk));
    auto application_written = image::write_cpio(application, writer.section_sink(), cpio);
    if (application_written.is_error())
        return application_written.release_error().context("application ramdisk");
    TRY(writer.end_section());

    result.measurements = writer.measurements();
    if (identity) {
        auto section = TRY(make_signature_section(*identity, result.measurements.pcr0));
        TRY(writer.write_section(SectionType::Signature, section));
        result.measurements.pcr8 = measure(identity->certificate.der());
    }
    TRY(writer.finish());
    TRY(output.commit());
    return result;
}

} // namespace qtbox::eif
