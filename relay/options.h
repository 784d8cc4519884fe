// Command-line, environment and config-file options -> Config.
//
// Every option can be given three ways; the first that sets it wins:
//   1. a flag:                 --db-password=secret
//   2. an environment variable SEQRELAY_DB_PASSWORD=secret
//   3. a line in --config FILE  db-password = secret   (INI style)
// Repeatable options (--source, --immediate) take several flags, several
// file lines, or one variable with values separated by commas.
//
// Adapter over Boost.Program_options: its exceptions end here. Called once,
// from main, before other threads exist.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/status.h"

namespace seqrelay {

struct ParsedOptions {
  Config config;
  bool help = false;     // --help: print help_text, exit 0
  bool version = false;  // --version
  std::string help_text;
};

// `env` holds the environment (name -> value); only SEQRELAY_* names are read,
// and one that names no option is an error (a misspelt variable is not
// silently ignored).
Result<ParsedOptions> ParseOptions(const std::vector<std::string>& args, const std::map<std::string, std::string>& env);

// Where the journal goes without --journal-dir: journal/<client id> under
// $STATE_DIRECTORY (systemd), $XDG_STATE_HOME/seqrelay,
// $HOME/.local/state/seqrelay or /var/lib/seqrelay, the first that is set.
std::string DefaultJournalDir(const std::map<std::string, std::string>& env, const std::string& client_id);

// The process environment as a map, for ParseOptions.
std::map<std::string, std::string> ProcessEnvironment();

}  // namespace seqrelay
