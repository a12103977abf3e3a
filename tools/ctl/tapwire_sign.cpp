// tapwire-sign: stands in for the issuing authority in tests and the demo. It signs a warrant
// (protobuf text format) with an Ed25519 private key over the canonical encoding of
// controlplane/warrant.hpp, and makes key pairs. A real authority signs with its own tools;
// anything that reproduces canonical_encoding (tests/unit/warrant_canonical.py) will do.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "common/files.hpp"
#include "controlplane/warrant.hpp"

namespace {

namespace cp = tapwire::controlplane;

constexpr const char* kUsage =
    "usage:\n"
    "  tapwire-sign --key PRIV.pem --key-id ID [IN.textproto|-] > OUT.textproto\n"
    "      sets key_id to ID and signs the warrant (Ed25519 over the canonical encoding)\n"
    "  tapwire-sign --gen-key PRIV.pem PUB.pem\n"
    "      writes a new Ed25519 key pair (PKCS#8 private key, mode 0600; existing files are\n"
    "      never overwritten); PUB.pem goes to the appliance's authority key directory as\n"
    "      <key_id>.pem\n"
    "  tapwire-sign --verify KEY_DIR [IN.textproto|-]\n"
    "      checks the signature against the <key_id>.pem public keys in KEY_DIR\n"
    "  tapwire-sign --canonical [IN.textproto|-]\n"
    "      prints the bytes that are signed\n"
    "The warrant is a tapwire.v1.Warrant in protobuf text format; '-' or no file reads stdin.\n";

int usage_error(const std::string& message) {
    std::fprintf(stderr, "tapwire-sign: %s\n%s", message.c_str(), kUsage);
    return 2;
}

int fail(const std::string& message) {
    std::fprintf(stderr, "tapwire-sign: %s\n", message.c_str());
    return 1;
}

// Collects text-format parse errors as "file:line:column: message" (1-based).
class Errors : public google::protobuf::io::ErrorCollector {
  public:
    explicit Errors(std::string origin) : origin_(std::move(origin)) {}
    void AddError(int line, google::protobuf::io::ColumnNumber column,
                  const std::string& message) override {
        text += origin_ + ":" + std::to_string(line + 1) + ":" + std::to_string(column + 1) + ": " +
                message + "\n";
    }
    std::string text;

  private:
    std::string origin_;
};

bool read_warrant(const std::string& path, tapwire::v1::Warrant& out, std::string& error) {
    std::string text;
    const bool from_stdin = path.empty() || path == "-";
    const std::string origin = from_stdin ? "<stdin>" : path;
    if (!tapwire::read_file_or_stdin(from_stdin ? "-" : path, text, error)) return false;
    Errors errors(origin);
    google::protobuf::TextFormat::Parser parser;
    parser.RecordErrorsTo(&errors);
    if (!parser.ParseFromString(text, &out)) {
        error =
            errors.text.empty() ? origin + ": not a text-format tapwire.v1.Warrant\n" : errors.text;
        if (!error.empty() && error.back() == '\n') error.pop_back();
        return false;
    }
    return true;
}

// Creates path (never replacing an existing file) with mode and writes text.
bool write_new_file(const std::string& path, const std::string& text, mode_t mode,
                    std::string& error) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        error = path + ": cannot create (" + std::strerror(errno) + ")";
        return false;
    }
    std::size_t done = 0;
    while (done < text.size()) {
        const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            error = path + ": write failed (" + std::strerror(errno) + ")";
            ::close(fd);
            return false;
        }
        done += std::size_t(n);
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0) {
        error = path + ": write failed (" + std::strerror(errno) + ")";
        return false;
    }
    return true;
}

int gen_key(const std::string& priv_path, const std::string& pub_path) {
    struct stat st;
    for (const std::string* p : {&priv_path, &pub_path})
        if (::stat(p->c_str(), &st) == 0)
            return fail(*p + ": already exists (remove it first; keys are never overwritten)");
    cp::KeyResult key = cp::generate_ed25519_key();
    if (!key.key) return fail(key.error);
    const std::string priv = cp::private_key_pem(key.key.get());
    const std::string pub = cp::public_key_pem(key.key.get());
    if (priv.empty() || pub.empty()) return fail("cannot write the key as PEM");
    std::string error;
    if (!write_new_file(priv_path, priv, 0600, error)) return fail(error);
    if (!write_new_file(pub_path, pub, 0644, error)) {
        ::unlink(priv_path.c_str());  // half a key pair is of no use
        return fail(error);
    }
    return 0;
}

int sign(const std::string& key_path, const std::string& key_id, const std::string& in) {
    if (key_id.empty()) return usage_error("--key-id must not be empty");
    cp::KeyResult key = cp::load_private_key_file(key_path);
    if (!key.key) return fail(key.error);
    tapwire::v1::Warrant warrant;
    std::string error;
    if (!read_warrant(in, warrant, error)) return fail(error);
    warrant.set_key_id(key_id);
    if (std::string e = cp::sign_warrant(warrant, key.key.get()); !e.empty())
        return fail(key_path + ": " + e);
    std::string out;
    if (!google::protobuf::TextFormat::PrintToString(warrant, &out))
        return fail("cannot print the signed warrant");
    std::fwrite(out.data(), 1, out.size(), stdout);
    return std::fflush(stdout) == 0 ? 0 : fail("write to stdout failed");
}

int verify(const std::string& dir, const std::string& in) {
    cp::AuthorityKeys keys;
    if (std::string e = keys.load_directory(dir); !e.empty()) return fail(e);
    tapwire::v1::Warrant warrant;
    std::string error;
    if (!read_warrant(in, warrant, error)) return fail(error);
    const cp::SignatureCheck check = cp::verify_warrant_signature(warrant, keys);
    if (!check.ok()) return fail(std::string(cp::to_string(check.result)) + ": " + check.message);
    std::printf("ok: signed with authority key '%s'\n",
                cp::percent_escape(warrant.key_id()).c_str());
    return 0;
}

int canonical(const std::string& in) {
    tapwire::v1::Warrant warrant;
    std::string error;
    if (!read_warrant(in, warrant, error)) return fail(error);
    const std::string out = cp::canonical_encoding(warrant);
    std::fwrite(out.data(), 1, out.size(), stdout);
    return std::fflush(stdout) == 0 ? 0 : fail("write to stdout failed");
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.empty()) return usage_error("no command");
    const std::string& command = args[0];
    if (command == "-h" || command == "--help") {
        std::fputs(kUsage, stdout);
        return 0;
    }
    if (command == "--gen-key") {
        if (args.size() != 3) return usage_error("--gen-key needs PRIV.pem and PUB.pem");
        return gen_key(args[1], args[2]);
    }
    if (command == "--verify") {
        if (args.size() < 2 || args.size() > 3) return usage_error("--verify needs KEY_DIR");
        return verify(args[1], args.size() == 3 ? args[2] : "-");
    }
    if (command == "--canonical") {
        if (args.size() > 2) return usage_error("--canonical takes one file at most");
        return canonical(args.size() == 2 ? args[1] : "-");
    }
    std::string key, key_id, in;
    bool have_key_id = false, have_in = false;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--key" || a == "--key-id") {
            if (i + 1 == args.size()) return usage_error(a + " needs a value");
            (a == "--key" ? key : key_id) = args[++i];
            if (a == "--key-id") have_key_id = true;
        } else if (a.size() > 1 && a[0] == '-' && a != "-") {
            return usage_error("unknown option " + a);
        } else if (have_in) {
            return usage_error("more than one input file");
        } else {
            in = a, have_in = true;
        }
    }
    if (key.empty()) return usage_error("--key PRIV.pem is required to sign");
    if (!have_key_id) return usage_error("--key-id ID is required to sign");
    return sign(key, key_id, in);
}
