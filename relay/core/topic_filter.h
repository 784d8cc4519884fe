// MQTT topic filters and the relay's rules for which raw topics it sequences
// (PROTOCOL.md section 1). Pure logic; any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace seqrelay {

inline constexpr std::size_t kMaxTopicBytes = 255;

// Checks a subscription filter: non-empty, '#' only as the whole last level,
// '+' only as a whole level, no NUL.
Status ValidateFilter(std::string_view filter);

// True if topic name `topic` matches `filter` by MQTT rules, including that
// a filter starting with a wildcard never matches a topic starting with '$'.
bool TopicMatches(std::string_view filter, std::string_view topic);

// True if every topic matched by `narrow` is also matched by `wide`.
bool FilterCovers(std::string_view wide, std::string_view narrow);

// True if some topic name matches both filters (a topic would have two
// writers if two shards held them).
bool FiltersOverlap(std::string_view a, std::string_view b);

// Removes filters already covered by another in the list (keeping the first
// of equal ones), so that overlapping subscriptions never deliver a message
// to the relay twice.
std::vector<std::string> RemoveCoveredFilters(const std::vector<std::string>& filters);

// True if `topic` is `prefix` itself or lies under it (prefix + '/').
bool IsUnderPrefix(std::string_view topic, std::string_view prefix);

// A list of filters as the database keeps it (SHARD.FILTERS and the like):
// sorted, one per line. Split gives it back sorted, without empty lines.
std::string JoinFilterLines(std::vector<std::string> filters);
std::vector<std::string> SplitFilterLines(std::string_view text);

}  // namespace seqrelay
