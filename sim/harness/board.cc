// sparse-edge simulated board (CXXRTL): the system top (network + UART + link
// engine) clocked in a loop, its UART pins bridged to a TCP socket on the
// loopback, so the host driver talks to it exactly as to a real board's
// serial port (pyserial: socket://127.0.0.1:PORT).
//
// Bytes from the socket are serialised onto the design's `rx` pin (8N1, one
// bit every DIVISOR clocks, back to back); the `tx` pin is deserialised at the
// same bit time (sampled mid-bit) and the bytes go back to the socket.  While
// the design says it is idle (`idle` output: no character on either line, no
// frame in progress, the network stalled) and nothing is queued, the harness
// sleeps in poll() instead of clocking, so an idle board costs no CPU (its
// clock, and the uptime the board reports, then stand still).
//
// Usage: board-sim DIVISOR [PORT]   (PORT 0 or absent: any free port)
// Prints "@listening <port>" on stderr once it accepts connections; serves one
// connection at a time, keeping the design's state across connections (a
// board stays powered when the host reconnects); exits on SIGTERM or when
// stdin reaches end of file (the parent went away).
//
// The design-specific part comes from "top.h" (see sim/cxxrtl.py): TOP_T and
// SE_PORT_{CLK,RST,RX,TX,IDLE}.

#include "top.h"

#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

using namespace cxxrtl;

TOP_T *se_make_top();

namespace {

[[noreturn]] void fail(const std::string &msg) {
	std::fprintf(stderr, "error: %s\n", msg.c_str());
	std::fflush(stderr);
	std::exit(2);
}

template <size_t N> const value<N> &cur(const value<N> &v) { return v; }
template <size_t N> const value<N> &cur(const wire<N> &w) { return w.curr; }

volatile std::sig_atomic_t stop = 0;
void on_signal(int) { stop = 1; }

struct Board {
	TOP_T &top;
	uint32_t div;
	uint64_t clocks = 0;
	// host -> device: bytes waiting, the character on the line
	std::deque<uint8_t> down;
	uint32_t rx_bits = 0;        // bits of the current character left (0 = idle)
	uint32_t rx_shift = 0;       // the character: start, data LSB first, stop
	uint32_t rx_timer = 0;
	// device -> host
	std::vector<uint8_t> up;
	int tx_state = 0;            // 0 idle, else bits sampled + 1
	uint32_t tx_timer = 0;
	uint32_t tx_byte = 0;

	explicit Board(uint32_t div) : top(*se_make_top()), div(div) {}

	void edge() {
#ifdef SE_SAFE_CLOCKING
		top.SE_PORT_CLK.set(false);
		top.step();
		top.SE_PORT_CLK.set(true);
		top.step();
#else
		top.SE_PREV_CLK = value<1>{0u};
		top.SE_PORT_CLK.set(true);
		bool converged = top.eval();
		while (top.commit() && !converged)
			converged = top.eval();
#endif
		clocks++;
	}

	// One clock: drive rx, clock, sample tx.
	void clock() {
		if (rx_bits == 0 && !down.empty()) {
			rx_shift = (uint32_t(down.front()) << 1) | (1u << 9);
			down.pop_front();
			rx_bits = 10;
			rx_timer = div;
		}
		bool rx = rx_bits ? (rx_shift & 1) : true;
		top.SE_PORT_RX.set(rx);
		edge();
		if (rx_bits && --rx_timer == 0) {
			rx_shift >>= 1;
			rx_timer = div;
			rx_bits--;
		}
		if (cur(top.SE_PORT_IDLE).template get<bool>())
			idle_clocks++;
		else
			idle_clocks = 0;
		bool tx = cur(top.SE_PORT_TX).template get<bool>();
		if (tx_state == 0) {
			if (!tx) {
				tx_state = 1;
				tx_timer = div / 2;
			}
		} else if (--tx_timer == 0) {
			tx_timer = div;
			if (tx_state == 1) {            // middle of the start bit
				if (tx)
					tx_state = 0;           // a glitch
				else {
					tx_state = 2;
					tx_byte = 0;
				}
			} else if (tx_state < 10) {     // data bits
				tx_byte |= uint32_t(tx) << (tx_state - 2);
				tx_state++;
			} else {                        // stop bit
				if (tx)
					up.push_back(uint8_t(tx_byte));
				else
					std::fprintf(stderr, "warning: framing error on the board's tx\n");
				tx_state = 0;
			}
		}
	}

	// The design has been idle for a while (a margin over the clocks a byte
	// takes from the pin to where `idle` sees it) and nothing is queued.
	uint32_t idle_clocks = 0;
	bool idle() const {
		return down.empty() && rx_bits == 0 && tx_state == 0 && up.empty() &&
		       idle_clocks >= 64;
	}
};

bool send_all(int fd, std::vector<uint8_t> &buf) {
	size_t off = 0;
	while (off < buf.size()) {
		ssize_t n = send(fd, buf.data() + off, buf.size() - off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				pollfd p{fd, POLLOUT, 0};
				poll(&p, 1, 100);
				continue;
			}
			return false;
		}
		off += size_t(n);
	}
	buf.clear();
	return true;
}

// Read what is there (non-blocking); false when the peer closed.
bool receive(int fd, std::deque<uint8_t> &into) {
	uint8_t tmp[4096];
	for (;;) {
		ssize_t n = recv(fd, tmp, sizeof tmp, MSG_DONTWAIT);
		if (n > 0) {
			into.insert(into.end(), tmp, tmp + n);
			continue;
		}
		if (n == 0)
			return false;
		if (errno == EINTR)
			continue;
		return errno == EAGAIN || errno == EWOULDBLOCK;
	}
}

}  // namespace

int main(int argc, char **argv) {
	if (argc < 2 || argc > 3) {
		std::fprintf(stderr, "usage: %s DIVISOR [PORT]\n", argv[0]);
		return 2;
	}
	uint32_t div = uint32_t(std::strtoul(argv[1], nullptr, 10));
	int want_port = argc > 2 ? std::atoi(argv[2]) : 0;
	if (div < 2)
		fail("the UART divisor must be at least 2");
	std::signal(SIGTERM, on_signal);
	std::signal(SIGINT, on_signal);
	std::signal(SIGPIPE, SIG_IGN);

	int ls = socket(AF_INET, SOCK_STREAM, 0);
	if (ls < 0)
		fail(std::string("socket: ") + std::strerror(errno));
	int one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	sockaddr_in addr{};
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	addr.sin_port = htons(uint16_t(want_port));
	if (bind(ls, reinterpret_cast<sockaddr *>(&addr), sizeof addr) < 0)
		fail(std::string("cannot listen on 127.0.0.1:") + std::to_string(want_port) + ": " +
		     std::strerror(errno));
	listen(ls, 1);
	socklen_t alen = sizeof addr;
	getsockname(ls, reinterpret_cast<sockaddr *>(&addr), &alen);

	static Board board(div);
	board.top.SE_PORT_RST.set(false);
	board.top.SE_PORT_RX.set(true);
	board.top.SE_PORT_CLK.set(false);
	board.top.step();
	for (int i = 0; i < 16; i++)
		board.clock();

	std::fprintf(stderr, "@listening %d\n", int(ntohs(addr.sin_port)));
	std::fflush(stderr);

	const uint32_t poll_every = 8 * div;   // clocks between socket checks while busy
	while (!stop) {
		pollfd w[2] = {{ls, POLLIN, 0}, {0, POLLIN, 0}};
		int r = poll(w, 2, 200);
		if (r < 0 && errno != EINTR)
			break;
		if (w[1].revents & (POLLIN | POLLHUP)) {
			char c;
			if (read(0, &c, 1) <= 0)
				break;                           // the parent went away
		}
		if (!(w[0].revents & POLLIN))
			continue;
		int fd = accept(ls, nullptr, nullptr);
		if (fd < 0)
			continue;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		bool open = true;
		uint32_t since = 0;
		while (open && !stop) {
			if (board.idle()) {
				pollfd p[2] = {{fd, POLLIN, 0}, {0, POLLIN, 0}};
				int k = poll(p, 2, 200);
				if (k < 0 && errno != EINTR)
					break;
				if (p[1].revents & (POLLIN | POLLHUP)) {
					char c;
					if (read(0, &c, 1) <= 0) {
						stop = 1;
						break;
					}
				}
				if (p[0].revents & (POLLIN | POLLHUP | POLLERR))
					open = receive(fd, board.down);
				continue;
			}
			board.clock();
			if (++since >= poll_every || (!board.up.empty() && board.tx_state == 0 &&
			                              board.up.size() >= 64)) {
				since = 0;
				if (!board.up.empty() && !send_all(fd, board.up))
					open = false;
				if (open)
					open = receive(fd, board.down);
			}
			if (board.idle() || (board.tx_state == 0 && !board.up.empty() && board.down.empty()
			                     && board.rx_bits == 0)) {
				if (!board.up.empty() && !send_all(fd, board.up))
					open = false;
			}
		}
		close(fd);
		board.down.clear();
	}
	close(ls);
	std::fprintf(stderr, "@done %llu clocks\n", (unsigned long long)board.clocks);
	return 0;
}
