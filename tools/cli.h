// The command-line tools' shared option parsing: --help prints the options
// and exits 0; a bad option, or a rule between options that `check` throws
// as boost::program_options::error, is one line on stderr and exit code 2.
#pragma once

#include <boost/program_options.hpp>
#include <cstdio>
#include <functional>
#include <iostream>
#include <optional>

namespace seqtools {

// Returns the exit code when the program should stop now, nullopt to go on.
inline std::optional<int> ParseCommandLine(
    const char* program, int argc, char** argv, const boost::program_options::options_description& desc,
    const std::function<void(const boost::program_options::variables_map&)>& check = {}) {
  namespace po = boost::program_options;
  try {
    po::variables_map vm;
    const po::parsed_options parsed = po::parse_command_line(argc, argv, desc);
    if (auto stray = po::collect_unrecognized(parsed.options, po::include_positional); !stray.empty()) {
      std::fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", program, stray.front().c_str());
      return 2;
    }
    po::store(parsed, vm);
    po::notify(vm);
    if (vm.count("help")) {
      std::cout << desc;
      return 0;
    }
    if (check) check(vm);
  } catch (const po::error& e) {
    std::fprintf(stderr, "%s: %s (see --help)\n", program, e.what());
    return 2;
  }
  return std::nullopt;
}

}  // namespace seqtools
