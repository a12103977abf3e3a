// Dataplane configuration: the text-format DataplaneConfig (proto/tapwire/v1/dataplane.proto)
// parsed, given its defaults and validated once at start-up. Device-dependent checks
// (queues, RSS) happen in ports.cpp against what each device reports.
#pragma once

#include <string>

#include "tapwire/v1/dataplane.pb.h"

namespace tapwire::dataplane {

using Config = tapwire::v1::DataplaneConfig;

/// Fills every unset field with its documented default.
void apply_defaults(Config& config);

/// Checks the settings that do not depend on devices. Returns an empty string, or a
/// message naming the offending setting ("mirror.ring_size: 1000 is not a power of two").
std::string validate(const Config& config);

/// Reads, parses (protobuf text format), defaults and validates a configuration file.
/// Returns an empty string on success, else a message with the file, line and setting.
std::string load_config(const std::string& path, Config& out);

/// Parses text directly (tests, and --config-text on the command line).
std::string parse_config(const std::string& text, const std::string& origin, Config& out);

}  // namespace tapwire::dataplane
