// QingTian's `qt` error codes (docs/FORMATS.md §7; the table is
// docs/PLATFORMS.md §Q1). An Error in the QtError domain carries the code
// `qt` exits with; the applet prints "Error NN: <message>: <detail>".
// Library code of the enclave lifecycle returns these codes directly, since
// they are the contract scripts written for QingTian's `qt` depend on.
#pragma once

#include <string_view>

namespace qtbox::enclave {

enum class QtError : int {
    MissingArgument = 1,
    InvalidArgument = 2,
    FileOperation = 3,
    SandboxCapacity = 4,       // the resource pool cannot hold the enclave
    DefineSandbox = 5,         // the VMM could not be started
    InvalidConfiguration = 6,  // qt-enclave-env.conf has a bad value
    MissingConfiguration = 7,  // qt-enclave-env.conf lacks a value
    MmapMemory = 8,
    AddMemory = 9,             // hugepages could not be reserved
    MemoryTooSmall = 10,       // below 128 MiB or 4 x the EIF
    AddCpu = 11,
    LockAcquire = 12,
    SocketInit = 13,
    SocketBind = 14,
    SocketListen = 15,
    SocketAccept = 16,
    WriteHeartbeat = 17,
    ReadHeartbeat = 18,
    StartEnclave = 19,         // the VMM exited before the heartbeat
    HeartbeatTimeout = 20,
    JsonPrint = 21,
    WriteConfiguration = 22,   // state.json could not be written
    SocketConnect = 23,
    WriteCommand = 24,
    ReadMessage = 25,
    CreateJsonObject = 26,
    CreateJsonArray = 27,
    NotRunning = 28,           // no such enclave
    InvalidPid = 29,
    AddNumber = 30,
    AddString = 31,
    NotDebugMode = 32,         // the console of a production enclave
    ConsoleRead = 33,
    WriteImageHeader = 34,
    WriteCmdline = 35,
    WriteKernel = 36,
    WriteInitrd = 37,
    WriteCertificate = 38,
    GetPcr = 39,
    AddSignature = 40,
    Maintenance = 41,
    MaintenanceAlso = 42,
    CidInUse = 43,
};

// QingTian's message for `error` (ECS-DOC 1420), without its final period;
// "Invalid argument provided" for a value outside 1-43.
std::string_view qt_error_message(QtError error);

} // namespace qtbox::enclave
