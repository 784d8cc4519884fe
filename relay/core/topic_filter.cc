#include "core/topic_filter.h"

#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/utf8.h"

namespace seqrelay {
namespace {

// Splits on '/' without allocating: calls next() until it returns false.
class Levels {
 public:
  explicit Levels(std::string_view s) : rest_(s) {}
  bool next(std::string_view& level) {
    if (done_) return false;
    auto slash = rest_.find('/');
    if (slash == std::string_view::npos) {
      level = rest_;
      done_ = true;
    } else {
      level = rest_.substr(0, slash);
      rest_.remove_prefix(slash + 1);
    }
    return true;
  }

 private:
  std::string_view rest_;
  bool done_ = false;
};

std::vector<std::string_view> SplitLevels(std::string_view s) {
  std::vector<std::string_view> out;
  Levels levels(s);
  for (std::string_view level; levels.next(level);) out.push_back(level);
  return out;
}

}  // namespace

Status ValidateFilter(std::string_view filter) {
  if (filter.empty()) return Status::Error("empty topic filter");
  if (filter.size() > 65535) return Status::Error("topic filter longer than 65535 bytes");
  if (filter.find('\0') != std::string_view::npos) return Status::Error("topic filter contains a NUL byte");
  if (!IsValidUtf8(filter)) return Status::Error("topic filter is not valid UTF-8");
  Levels levels(filter);
  std::string_view level;
  bool after_hash = false;
  while (levels.next(level)) {
    if (after_hash) return Status::Error(fmt::format("'#' must be the last level in filter '{}'", filter));
    if (level == "#") {
      after_hash = true;
    } else if (level.find_first_of("+#") != std::string_view::npos && level != "+") {
      return Status::Error(fmt::format("'+' and '#' must fill a whole level in filter '{}'", filter));
    }
  }
  return Status::Ok();
}

bool TopicMatches(std::string_view filter, std::string_view topic) {
  if (!topic.empty() && topic[0] == '$' && !filter.empty() && (filter[0] == '+' || filter[0] == '#')) {
    return false;
  }
  Levels f(filter), t(topic);
  std::string_view fl, tl;
  while (f.next(fl)) {
    if (fl == "#") return true;  // also matches the parent level ("a/#" matches "a")
    if (!t.next(tl)) return false;
    if (fl != "+" && fl != tl) return false;
  }
  return !t.next(tl);
}

bool FilterCovers(std::string_view wide, std::string_view narrow) {
  Levels w(wide), n(narrow);
  std::string_view wl, nl;
  for (bool first = true; w.next(wl); first = false) {
    // A wildcard in the first level never matches topics starting with '$'.
    const bool dollar_guard = first && !narrow.empty() && narrow[0] == '$';
    if (wl == "#") return !dollar_guard;  // "a/#" covers "a" too
    if (!n.next(nl)) return false;
    if (nl == "#") return false;  // narrow reaches deeper than one level
    if (wl == "+") {
      if (dollar_guard) return false;
      continue;
    }
    if (wl != nl) return false;  // includes a literal level against '+'
  }
  return !n.next(nl);
}

std::vector<std::string> RemoveCoveredFilters(const std::vector<std::string>& filters) {
  std::vector<std::string> kept;
  for (std::size_t i = 0; i < filters.size(); ++i) {
    bool covered = false;
    for (std::size_t j = 0; j < filters.size() && !covered; ++j) {
      if (i == j || !FilterCovers(filters[j], filters[i])) continue;
      // Equal filters cover each other: keep the first.
      covered = !(FilterCovers(filters[i], filters[j]) && i < j);
    }
    if (!covered) kept.push_back(filters[i]);
  }
  return kept;
}

bool IsUnderPrefix(std::string_view topic, std::string_view prefix) {
  if (topic.size() < prefix.size() || topic.substr(0, prefix.size()) != prefix) return false;
  return topic.size() == prefix.size() || topic[prefix.size()] == '/';
}

bool FiltersOverlap(std::string_view a, std::string_view b) {
  const std::vector<std::string_view> la = SplitLevels(a), lb = SplitLevels(b);
  // A filter starting with a wildcard never matches a topic starting with
  // '$', so it shares nothing with a filter whose first level is one.
  auto wild = [](std::string_view level) { return level == "+" || level == "#"; };
  auto dollar = [](std::string_view level) { return !level.empty() && level.front() == '$'; };
  if ((wild(la[0]) && dollar(lb[0])) || (wild(lb[0]) && dollar(la[0]))) return false;
  for (std::size_t i = 0;; ++i) {
    // '#' matches the rest, including nothing ("a/#" matches "a").
    if ((i < la.size() && la[i] == "#") || (i < lb.size() && lb[i] == "#")) return true;
    if (i == la.size() || i == lb.size()) return la.size() == lb.size();
    if (la[i] != "+" && lb[i] != "+" && la[i] != lb[i]) return false;
  }
}

std::string JoinFilterLines(std::vector<std::string> filters) {
  std::sort(filters.begin(), filters.end());
  std::string text;
  for (const auto& f : filters) {
    if (!text.empty()) text += '\n';
    text += f;
  }
  return text;
}

std::vector<std::string> SplitFilterLines(std::string_view text) {
  std::vector<std::string> filters;
  for (std::size_t at = 0; at < text.size();) {
    std::size_t nl = text.find('\n', at);
    if (nl == std::string_view::npos) nl = text.size();
    if (nl > at) filters.emplace_back(text.substr(at, nl - at));
    at = nl + 1;
  }
  std::sort(filters.begin(), filters.end());
  return filters;
}

}  // namespace seqrelay
