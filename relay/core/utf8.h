// UTF-8 well-formedness, for what MQTT requires to be UTF-8 (topics,
// filters, client ids, user properties).
#pragma once

#include <string_view>

namespace seqrelay {

// True if `s` is well-formed UTF-8 (RFC 3629: no overlong forms, no
// surrogates, nothing above U+10FFFF).
bool IsValidUtf8(std::string_view s);

}  // namespace seqrelay
