// libFuzzer target for normalize_identity, with and without a numbering plan. Besides not
// crashing, a canonical form must be a fixed point: normalising it again changes nothing,
// or the warrant side and the packet side could disagree.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/identity.hpp"

namespace {

void check(std::string_view input, const tapwire::NumberingPlan& plan) {
    using namespace tapwire;
    NormalizedIdentity id;
    IdentityError e = normalize_identity(input, id, plan);
    if (std::size_t(e) >= std::size_t(IdentityError::Count)) abort();
    if (e != IdentityError::Ok) {
        if (id.length != 0) abort();
        return;
    }
    std::string_view v = id.view();
    if (v.empty() || v.size() >= NormalizedIdentity::kMaxLength) abort();
    bool tel = v.substr(0, 4) == "tel:";
    if (tel != (id.kind == IdentityKind::Telephone)) abort();
    if (!tel && v.substr(0, 4) != "sip:") abort();
    NormalizedIdentity again;
    if (normalize_identity(v, again, plan) != IdentityError::Ok) abort();
    if (again.view() != v || again.kind != id.kind) abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    check(input, {});
    check(input, {"49", "0", "00"});
    check(input, {"1", "1", "011"});
    return 0;
}
