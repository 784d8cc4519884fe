// MetricsHttp: the --metrics-port endpoint, GET /metrics in Prometheus'
// text format. The relay's one adapter to Boost.Beast / Boost.Asio.
//
// One thread runs the server; each scrape calls `render` on that thread, so
// `render` must be safe to call from it (the relay's renders read atomics
// and locked state only). Other paths get 404, other methods 405. A client
// that sends nothing is dropped after 5 s, so no connection can hold the
// thread for long.
//
// Start and the destructor (which stops the server and joins its thread)
// are called from one owner thread.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "core/status.h"

namespace seqrelay {

class MetricsHttp {
 public:
  using Render = std::function<std::string()>;

  // Listens on bind:port (port 0: any free port, see port()).
  static Result<std::unique_ptr<MetricsHttp>> Start(const std::string& bind, int port, Render render);
  ~MetricsHttp();
  MetricsHttp(const MetricsHttp&) = delete;
  MetricsHttp& operator=(const MetricsHttp&) = delete;

  int port() const;

 private:
  struct Impl;
  explicit MetricsHttp(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace seqrelay
