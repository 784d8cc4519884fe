#include "observe/metrics_http.h"

#include <fmt/format.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <list>
#include <memory>
#include <string_view>
#include <thread>

#include "core/log.h"

namespace seqrelay {
// (Named, not anonymous: Impl, declared in the header, holds its sessions.)
namespace metrics_http_detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr auto kIdleTimeout = std::chrono::seconds(5);
// Scrapes served at once; beyond it a new connection closes the oldest one
// still waiting for its request (else it is closed itself), so the endpoint
// never holds more descriptors than this (MQTT, MySQL and the journal need
// theirs), and idle connections cannot keep a scraper out: its request
// comes with its connection. A GET has no body; its header is small.
constexpr int kMaxConnections = 16;
constexpr std::uint32_t kMaxHeaderBytes = 8 * 1024;
constexpr std::uint64_t kMaxBodyBytes = 1024;

// One connection: read a request, answer it, close.
class Session : public std::enable_shared_from_this<Session> {
 public:
  // `live` counts the sessions in existence; it lives in the server, which
  // outlives them, and is touched only on the server's one thread.
  Session(tcp::socket socket, const MetricsHttp::Render& render, int& live)
      : stream_(std::move(socket)), render_(render), live_(live) {
    ++live_;
    parser_.header_limit(kMaxHeaderBytes);
    parser_.body_limit(kMaxBodyBytes);
  }
  ~Session() { --live_; }

  // Waiting for its request (not yet answering).
  bool reading() const { return reading_; }
  // Ends a connection that is still reading: its read completes with an error.
  void Close() {
    beast::error_code ignored;
    stream_.socket().close(ignored);
  }

  void Run() {
    stream_.expires_after(kIdleTimeout);
    http::async_read(stream_, buffer_, parser_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) { self->OnRead(ec); });
  }

 private:
  void OnRead(beast::error_code ec) {
    reading_ = false;
    if (ec) return;  // timeout, reset, garbage, over a limit or closed for a newer one: nothing to answer
    const auto& request_ = parser_.get();
    response_.version(request_.version());
    response_.keep_alive(false);
    response_.set(http::field::server, "seqrelay");
    // The path; a proxy sends the absolute form, http://host:port/path
    // (RFC 9112, 3.2.2).
    std::string_view target(request_.target().data(), request_.target().size());
    if (target.starts_with("http://") || target.starts_with("https://")) {
      const auto path = target.find('/', target.find("//") + 2);
      target = path == std::string_view::npos ? "/" : target.substr(path);
    }
    const bool head = request_.method() == http::verb::head;  // GET's header alone (RFC 9110, 9.3.2)
    if (request_.method() != http::verb::get && !head) {
      response_.result(http::status::method_not_allowed);
      response_.set(http::field::allow, "GET, HEAD");
      response_.body() = "only GET and HEAD\n";
    } else if (target != "/metrics" && target.substr(0, 9) != "/metrics?") {
      response_.result(http::status::not_found);
      response_.body() = "seqrelay serves /metrics only\n";
    } else {
      try {
        response_.body() = render_();
        response_.result(http::status::ok);
        response_.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
      } catch (const std::exception& e) {  // never out of the io thread: it serves every scrape
        response_.result(http::status::internal_server_error);
        response_.body() = fmt::format("metrics: {}\n", e.what());
      }
    }
    if (response_.result() != http::status::ok) response_.set(http::field::content_type, "text/plain");
    response_.prepare_payload();
    if (head) {  // the length the GET's body would have, and no body
      const std::size_t length = response_.body().size();
      response_.body().clear();
      response_.content_length(length);
    }
    stream_.expires_after(kIdleTimeout);
    http::async_write(stream_, response_, [self = shared_from_this()](beast::error_code, std::size_t) {
      beast::error_code ignored;
      self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    });
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  http::request_parser<http::string_body> parser_;
  http::response<http::string_body> response_;
  const MetricsHttp::Render& render_;  // owned by the server, which outlives its sessions
  int& live_;
  bool reading_ = true;
};

}  // namespace metrics_http_detail
using namespace metrics_http_detail;

struct MetricsHttp::Impl {
  Impl(Render r) : render(std::move(r)), acceptor(io) {}

  void Accept() {
    acceptor.async_accept(asio::make_strand(io), [this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;  // stopping
      if (!ec) {
        sessions.remove_if([](const std::weak_ptr<Session>& s) { return s.expired(); });
        if (live < kMaxConnections || CloseOldestReading()) {
          auto session = std::make_shared<Session>(std::move(socket), render, live);
          sessions.push_back(session);
          session->Run();
        } else {
          beast::error_code ignored;
          socket.close(ignored);
          static RateLimit limit(std::chrono::seconds(60));
          if (auto suppressed = limit.Allow()) {
            LogWarn("metrics: {} scrapes answering at once, closed a further connection{}", kMaxConnections,
                    SuppressedNote(*suppressed));
          }
        }
        Accept();
        return;
      }
      // Out of descriptors and the like: try again shortly, not in a loop.
      static RateLimit limit(std::chrono::seconds(60));
      if (auto suppressed = limit.Allow()) LogWarn("metrics: accept failed: {}{}", ec.message(), SuppressedNote(*suppressed));
      retry.expires_after(std::chrono::milliseconds(100));
      retry.async_wait([this](beast::error_code wait_ec) {
        if (!wait_ec) Accept();
      });
    });
  }

  // Closes the oldest session still waiting for its request; false if none is.
  // (A session that has read its request never reads again: it leaves the
  // list when it comes to the front.)
  bool CloseOldestReading() {
    while (!sessions.empty()) {
      std::shared_ptr<Session> session = sessions.front().lock();
      sessions.pop_front();
      if (session && session->reading()) {
        session->Close();
        return true;
      }
    }
    return false;
  }

  Render render;
  // Sessions alive, and the ones that may still be reading, oldest first;
  // io thread only. Declared before `io`, whose destruction ends the
  // sessions still pending.
  int live = 0;
  std::list<std::weak_ptr<Session>> sessions;
  asio::io_context io{1};
  tcp::acceptor acceptor;
  asio::steady_timer retry{io};
  int port = 0;  // the bound port, set before the thread starts
  std::thread thread;
};

Result<std::unique_ptr<MetricsHttp>> MetricsHttp::Start(const std::string& bind, int port, Render render) {
  auto impl = std::make_unique<Impl>(std::move(render));
  beast::error_code ec;
  const auto address = asio::ip::make_address(bind, ec);
  if (ec) return Status::Error(fmt::format("--metrics-bind '{}': {}", bind, ec.message()));
  const tcp::endpoint endpoint(address, static_cast<unsigned short>(port));
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status::Error(fmt::format("metrics: cannot listen on {}:{}: {}", bind, port, ec.message()));
  impl->port = impl->acceptor.local_endpoint().port();
  impl->Accept();
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] {
    try {
      raw->io.run();
    } catch (const std::exception& e) {
      LogError("metrics: server stopped: {}", e.what());
    }
  });
  return std::unique_ptr<MetricsHttp>(new MetricsHttp(std::move(impl)));
}

MetricsHttp::MetricsHttp(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MetricsHttp::~MetricsHttp() {
  // Pending accepts and sessions are dropped with the io_context, after the
  // thread has ended.
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

int MetricsHttp::port() const { return impl_->port; }

}  // namespace seqrelay
