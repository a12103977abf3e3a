#include "handover/record.hpp"

namespace tapwire::handover {

const char* to_string(IriType t) noexcept {
    static constexpr const char* kNames[] = {TAPWIRE_IRI_TYPES(TAPWIRE_X_TEXT)};
    return tapwire::name_of(t, kNames);
}

}  // namespace tapwire::handover
