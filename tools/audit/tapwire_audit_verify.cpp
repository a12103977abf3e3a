// tapwire-audit-verify: checks an audit trail written by the control plane (hash chain,
// sequence, checkpoint signatures) and names every edited, removed, reordered or truncated
// record. Exit status: 0 intact, 1 tampered, 2 usage or I/O error.

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "controlplane/audit_log.hpp"

namespace {

namespace cp = tapwire::controlplane;

void usage(FILE* out) {
    std::fprintf(
        out,
        "usage: tapwire-audit-verify --log FILE [options]\n"
        "Verifies a Tapwire audit trail: every record's SHA-256, the chain of prev\n"
        "hashes, contiguous sequence numbers and the Ed25519 checkpoint signatures.\n"
        "  --log FILE                the audit file\n"
        "  --public-key PEM          the appliance's audit public key (repeatable, for\n"
        "                            rotated keys); without it signatures are not checked\n"
        "  --checkpoint-interval N   fail when more than N records follow each other\n"
        "                            without a checkpoint (the appliance's setting)\n"
        "  --expect-checkpoint SEQ   a signed checkpoint at record SEQ must be present\n"
        "                            (known from elsewhere: catches a cut-off end)\n"
        "  --max-issues N            list at most N issues (default 100)\n"
        "  --json                    machine-readable report on stdout\n"
        "Exit status: 0 intact, 1 tampered, 2 usage or I/O error.\n"
        "Keys: openssl genpkey -algorithm ed25519 -out audit.key &&\n"
        "      openssl pkey -in audit.key -pubout -out audit.pub\n");
}

bool parse_count(const char* text, std::uint64_t& out) {
    char* end = nullptr;
    errno = 0;
    const unsigned long long v = std::strtoull(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-') return false;
    out = v;
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    std::string log_path;
    bool json = false;
    cp::AuditVerifyOptions options;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        const bool has_value = i + 1 < argc;
        std::uint64_t n = 0;
        if (arg == "--log" && has_value) {
            log_path = argv[++i];
        } else if (arg == "--public-key" && has_value) {
            auto key = cp::AuditKey::load_pem_file(argv[++i]);
            if (!key) {
                std::fprintf(stderr, "tapwire-audit-verify: --public-key: %s\n",
                             key.status.message.c_str());
                return 2;
            }
            options.public_keys.push_back(std::move(*key));
        } else if ((arg == "--checkpoint-interval" || arg == "--expect-checkpoint" ||
                    arg == "--max-issues") &&
                   has_value) {
            if (!parse_count(argv[++i], n)) {
                std::fprintf(stderr, "tapwire-audit-verify: %s wants a number, got '%s'\n",
                             arg.data(), argv[i]);
                return 2;
            }
            if (arg == "--checkpoint-interval")
                options.checkpoint_interval = n;
            else if (arg == "--expect-checkpoint")
                options.expect_checkpoint = n;
            else
                options.max_issues = static_cast<std::size_t>(n);
        } else if (arg == "--json") {
            json = true;
        } else if (arg == "-h" || arg == "--help") {
            usage(stdout);
            return 0;
        } else {
            std::fprintf(stderr, "tapwire-audit-verify: unknown or incomplete option '%s'\n",
                         argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (log_path.empty()) {
        usage(stderr);
        return 2;
    }
    auto report = cp::verify_audit_log(log_path, options);
    if (!report) {
        std::fprintf(stderr, "tapwire-audit-verify: %s\n", report.status.message.c_str());
        return 2;
    }
    if (json) {
        std::printf("%s\n", report->to_json().c_str());
    } else {
        for (const cp::AuditIssue& issue : report->issues)
            std::printf("%-18s %s\n", cp::to_string(issue.kind), issue.message.c_str());
        if (report->issue_count > report->issues.size())
            std::printf(
                "... and %llu more issues\n",
                static_cast<unsigned long long>(report->issue_count - report->issues.size()));
        std::printf("%s: %s\n", log_path.c_str(), report->summary().c_str());
    }
    return report->intact() ? 0 : 1;
}
