// Reporting from long-running engines without logging (docs/ARCHITECTURE.md
// "Conventions": library code never prints). An engine that runs for the
// life of a process (qt-proxy's workers, qtsm-server, init, the VMM) takes an
// event callback; the applet decides what becomes a line on stderr, and how
// it looks. Engines with structured events (a closed proxy connection, a
// QTSM client) pass their own event types; the rest use Notice.
#pragma once

#include <functional>
#include <string>

namespace qtbox {

enum class Severity { Debug, Info, Warning, Error };

// A one-off happening, already worded: "listening on ...", "reload
// rejected: ...". The applet prefixes its name (and a timestamp, for
// daemons) when it prints one.
struct Notice {
    Severity severity { Severity::Info };
    std::string text;
};

// May be called from any of the engine's threads; an empty one drops the
// notices.
using NoticeSink = std::function<void(Notice const&)>;

} // namespace qtbox
