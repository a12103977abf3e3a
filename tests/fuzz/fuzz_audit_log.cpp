// libFuzzer target for the audit-trail reader: the verifier and the line parser take files
// an attacker may have edited. Neither may crash, and a line that parses must re-encode to
// exactly its own bytes (what the verifier shows is what was hashed).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "controlplane/audit_log.hpp"

using namespace tapwire::controlplane;

namespace {
AuditVerifyOptions make_options() {
    AuditVerifyOptions o;
    o.checkpoint_interval = 3;
    o.expect_checkpoint = 5;
    o.public_keys.push_back(*AuditKey::generate());
    return o;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const AuditVerifyOptions options = make_options();
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto report = verify_audit_bytes(text, options);
    (void)report.summary();
    (void)report.to_json();
    auto record = parse_audit_line(text);
    if (record.ok()) {
        std::string again = encode_audit_line(*record);
        if (again != text && again != std::string(text) + "\n") __builtin_trap();
    }
    return 0;
}
