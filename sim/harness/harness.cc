// sparse-edge compiled-simulation harness (CXXRTL).
//
// Streams samples from a binary input file into the generated accelerator,
// collects every prediction (and its clock stamp), reads the weights and
// biases back through the read-out port whenever the input asks for it, and
// writes everything to a binary output file.  The file formats are defined by
// sparse_edge/sim/cxxrtl.py (the only reader and writer of them); all
// integers are little-endian.
//
// The design-specific part comes from "top.h", generated per design: it
// includes the CXXRTL model and defines TOP_T (the model class) and SE_PORT_*
// (the mangled member names of the ports); "make_top.cc" (also generated)
// constructs the model.  Everything else (layouts, sizes,
// read-out geometry) is read from the input file at run time.
//
// Usage: sim INPUT OUTPUT
// Progress lines on stderr: "@progress <samples fed> <predictions> <clocks>".
// Exit status: 0 ok, 2 bad input / I/O error, 3 simulation hang.
// The output is written to OUTPUT.part and renamed to OUTPUT only when
// complete, so a crashed run never leaves a plausible result behind.

#include "top.h"

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

using namespace cxxrtl;

// Defined in make_top.cc (compiled without optimization): the model's
// constructor initializes every wire and memory and is huge, so it is kept out
// of this optimized unit.
TOP_T *se_make_top();

namespace {

const char IN_MAGIC[8] = {'S', 'E', 'H', 'I', 'N', '0', '0', '1'};
const char OUT_MAGIC[8] = {'S', 'E', 'H', 'O', 'U', 'T', '0', '1'};
const char END_MAGIC[8] = {'S', 'E', 'H', 'E', 'N', 'D', '0', '1'};
const uint32_t VERSION = 1;

[[noreturn]] void fail(int code, const std::string &msg) {
	std::fprintf(stderr, "error: %s\n", msg.c_str());
	std::fflush(stderr);
	std::exit(code);
}

struct Header {
	char magic[8];
	uint32_t version;
	uint32_t payload_bits;      // input payload width (checked against the model)
	uint32_t result_bits;       // output payload width (checked)
	uint32_t beats_per_sample;
	uint32_t pixels_per_beat;
	uint32_t pix_off, pix_w;    // pixel i of a beat at pix_off + i * pix_w
	uint32_t label_off, label_w;
	uint32_t lr_off, lr_w;
	uint32_t upd_off, upd_w;
	uint32_t pred_off, pred_w;
	uint32_t clock_off, clock_w;
	uint32_t data_width;        // ro_data width (two's complement)
	uint32_t n_images, image_bytes;
	uint32_t n_stream;
	uint32_t junctions;
	uint32_t stall_every, out_stall_every;
	uint32_t progress_every;    // samples between progress lines (0 = never)
	uint32_t settle_clocks;     // clocks to run after the last beat before a read-out
	uint32_t hang_clocks;       // clocks without any handshake that count as a hang
	uint32_t ro_latency;        // clock edges from a read-out address to its ro_data (>= 1)
	uint32_t reserved[2];
};

struct StreamRecord {
	uint32_t image;
	uint8_t k;        // learning-rate exponent field
	uint8_t update;   // 0 = evaluate only
	uint8_t readout;  // 1 = drain and read every weight and bias after this sample
	uint8_t pad;
};

struct Geometry {
	uint32_t n_w, z, n_b, q;
};

// the layouts sparse_edge/sim/cxxrtl.py packs (struct "<8s30I", numpy dtypes)
static_assert(sizeof(Header) == 128, "input header layout");
static_assert(sizeof(StreamRecord) == 8, "stream record layout");
static_assert(sizeof(Geometry) == 16, "geometry layout");

// CRC-32 (IEEE, as zlib.crc32) over everything written before the trailer.
struct Writer {
	FILE *f = nullptr;
	uint32_t crc = 0xffffffffu;
	uint32_t table[256];
	std::string path;
	Writer() {
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t c = i;
			for (int k = 0; k < 8; k++)
				c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
			table[i] = c;
		}
	}
	uint32_t value() const { return crc ^ 0xffffffffu; }
	void put(const void *p, size_t n) {
		const uint8_t *b = static_cast<const uint8_t *>(p);
		for (size_t i = 0; i < n; i++)
			crc = table[(crc ^ b[i]) & 0xff] ^ (crc >> 8);
		if (n && std::fwrite(p, 1, n, f) != n)
			fail(2, "cannot write " + path + ": " + std::strerror(errno));
	}
	template <typename T> void put(const T &v) { put(&v, sizeof(T)); }
};

template <size_t N> const value<N> &cur(const value<N> &v) { return v; }
template <size_t N> const value<N> &cur(const wire<N> &w) { return w.curr; }

template <size_t N> uint64_t get_bits(const value<N> &v, uint32_t off, uint32_t w) {
	uint64_t out = 0;
	for (uint32_t i = 0; i < w; i++) {
		uint32_t b = off + i;
		if (b >= N)
			break;
		out |= uint64_t((v.data[b / 32] >> (b % 32)) & 1u) << i;
	}
	return out;
}

template <size_t N> void put_bits(value<N> &v, uint32_t off, uint32_t w, uint64_t x) {
	for (uint32_t i = 0; i < w; i++) {
		uint32_t b = off + i;
		uint32_t mask = 1u << (b % 32);
		if ((x >> i) & 1)
			v.data[b / 32] |= mask;
		else
			v.data[b / 32] &= ~mask;
	}
}

template <size_t N> void set_u(value<N> &v, uint64_t x) {
	static_assert(N <= 64, "port too wide for set_u");
	for (size_t c = 0; c < value<N>::chunks; c++)
		v.data[c] = uint32_t(x >> (32 * c));
	v.data[value<N>::chunks - 1] &= value<N>::msb_mask;
}

void read_exact(FILE *f, void *p, size_t n, const char *what) {
	if (n && std::fread(p, 1, n, f) != n)
		fail(2, std::string("input file truncated while reading ") + what);
}

double now() {
	using namespace std::chrono;
	return duration<double>(steady_clock::now().time_since_epoch()).count();
}

struct Sim {
	TOP_T &top;
	Header h;
	std::vector<uint8_t> images, labels;
	std::vector<StreamRecord> stream;
	std::vector<Geometry> geo;
	std::vector<uint32_t> preds;
	std::vector<uint64_t> clocks;
	std::vector<int32_t> params;             // every read-out, concatenated
	std::vector<uint64_t> readout_clocks;    // network clock count at each read-out
	uint64_t wall = 0;                       // clock edges simulated
	uint64_t idle = 0;                       // edges since the last handshake
	Sim() : top(*se_make_top()) {}

	bool out_stalled = false;                // this output's stall is done
	uint64_t ro_sample = 0;                  // ro_data just before the last edge
	double t0 = 0;

	// One rising clock edge.  Fast mode evaluates once per clock: the edge
	// detector is armed by hand (prev = 0, clk = 1) instead of evaluating a
	// falling edge.  Inputs set before the call are what the edge samples; the
	// combinational i.ready captured from the first evaluation is its pre-edge
	// value (likewise ro_data, kept in ro_sample); registered outputs
	// (o.valid, o.payload) read before the call are the pre-edge values.
	// Returns that pre-edge i.ready.
	bool edge() {
		bool ready;
#ifdef SE_SAFE_CLOCKING
		top.SE_PORT_CLK.set(false);
		top.step();
		ready = cur(top.SE_PORT_I_READY).template get<bool>();
		ro_sample = get_bits(cur(top.SE_PORT_RO_DATA), 0, h.data_width);
		top.SE_PORT_CLK.set(true);
		top.step();
#else
		top.SE_PREV_CLK = value<1>{0u};
		top.SE_PORT_CLK.set(true);
		bool converged = top.eval();
		ready = cur(top.SE_PORT_I_READY).template get<bool>();
		ro_sample = get_bits(cur(top.SE_PORT_RO_DATA), 0, h.data_width);
		while (top.commit() && !converged)  // the loop of module::step()
			converged = top.eval();
#endif
		wall++;
		return ready;
	}

	// Settle combinational outputs without a clock edge.
	void settle() {
#ifdef SE_SAFE_CLOCKING
		top.SE_PORT_CLK.set(false);
#endif
		top.step();  // fast mode: prev = clk = 1, no edge
	}

	// One clock: offer `valid` (payload already set), accept an output unless
	// an output stall is due.  Returns whether the input beat was taken.
	bool clock(bool valid) {
		bool ready_out = true;
		if (h.out_stall_every && preds.size() % h.out_stall_every == h.out_stall_every - 1 &&
		    !out_stalled) {
			ready_out = false;  // refuse for one clock before every n-th output
			out_stalled = true;
		}
		top.SE_PORT_I_VALID.set(valid);
		top.SE_PORT_O_READY.set(ready_out);
		bool took_out = ready_out && cur(top.SE_PORT_O_VALID).template get<bool>();
		if (took_out) {
			const auto &pl = cur(top.SE_PORT_O_PAYLOAD);
			preds.push_back(uint32_t(get_bits(pl, h.pred_off, h.pred_w)));
			clocks.push_back(get_bits(pl, h.clock_off, h.clock_w));
			out_stalled = false;
		}
		bool took_in = edge() && valid;
		if (took_in || took_out)
			idle = 0;
		else if (++idle > h.hang_clocks)
			fail(3, "simulation hang: no handshake in " + std::to_string(h.hang_clocks) +
			             " clocks (" + std::to_string(preds.size()) + " predictions, " +
			             std::to_string(wall) + " clocks)");
		return took_in;
	}

	void load_beat(const StreamRecord &r, uint32_t beat) {
		auto &pl = top.SE_PORT_I_PAYLOAD;
		const uint8_t *img = &images[size_t(r.image) * h.image_bytes] +
		                     size_t(beat) * h.pixels_per_beat;
		if (h.pix_w == 8 && h.pix_off % 8 == 0) {
			for (uint32_t i = 0; i < h.pixels_per_beat; i++) {
				uint32_t b = h.pix_off + 8 * i;
				pl.data[b / 32] = (pl.data[b / 32] & ~(0xffu << (b % 32))) |
				                  (uint32_t(img[i]) << (b % 32));
			}
		} else {
			for (uint32_t i = 0; i < h.pixels_per_beat; i++)
				put_bits(pl, h.pix_off + i * h.pix_w, h.pix_w, img[i]);
		}
		put_bits(pl, h.label_off, h.label_w, labels[r.image]);
		put_bits(pl, h.lr_off, h.lr_w, r.k);
		put_bits(pl, h.upd_off, h.upd_w, r.update);
	}

	int32_t signed_data(uint64_t raw) const {
		if (h.data_width < 64 && (raw >> (h.data_width - 1)) & 1)
			raw |= ~0ull << h.data_width;
		return int32_t(int64_t(raw));
	}

	// Read every weight and bias through the read-out port, pipelined: a new
	// address before every edge; the data of the address set before edge t is
	// ro_data after edge t + ro_latency - 1, which edge t + ro_latency captures.
	void readout() {
		// let the network reach its stall point (waiting for input), taking
		// whatever predictions still come out
		for (uint32_t i = 0; i < h.settle_clocks; i++)
			clock(false);
		readout_clocks.push_back(get_bits(cur(top.SE_PORT_CLOCKS), 0, 64));
		struct Addr {
			uint32_t j, bias, row, lane;
		};
		std::vector<Addr> addrs;
		for (uint32_t j = 0; j < h.junctions; j++) {
			const Geometry &g = geo[j];
			for (uint32_t e = 0; e < g.n_w; e++)
				addrs.push_back({j, 0, e / g.z, e % g.z});
			for (uint32_t r = 0; r < g.n_b; r++)
				addrs.push_back({j, 1, r / g.q, r % g.q});
		}
		top.SE_PORT_I_VALID.set(false);
		top.SE_PORT_O_READY.set(false);
		size_t n = addrs.size(), lat = h.ro_latency;
		for (size_t t = 0; t < n + lat; t++) {
			const Addr &a = addrs[t < n ? t : n - 1];
			set_u(top.SE_PORT_RO_JUNCTION, a.j);
			set_u(top.SE_PORT_RO_BIAS, a.bias);
			set_u(top.SE_PORT_RO_ROW, a.row);
			set_u(top.SE_PORT_RO_LANE, a.lane);
			edge();
			if (t >= lat)
				params.push_back(signed_data(ro_sample));
		}
	}

	void progress(uint64_t fed) {
		std::fprintf(stderr, "@progress %llu %llu %llu %.3f\n", (unsigned long long)fed,
		             (unsigned long long)preds.size(), (unsigned long long)wall, now() - t0);
		std::fflush(stderr);
	}

	void run() {
		t0 = now();
		top.SE_PORT_RST.set(false);
		top.SE_PORT_CLK.set(false);
		top.step();
		uint64_t beats_fed = 0;
		for (uint32_t s = 0; s < h.n_stream; s++) {
			const StreamRecord &r = stream[s];
			for (uint32_t b = 0; b < h.beats_per_sample; b++) {
				load_beat(r, b);
				if (h.stall_every && beats_fed % h.stall_every == h.stall_every - 1)
					clock(false);  // withhold the input for one clock
				while (!clock(true)) {
				}
				beats_fed++;
			}
			if (r.readout)
				readout();
			if (h.progress_every && (s + 1) % h.progress_every == 0)
				progress(s + 1);
		}
		progress(h.n_stream);
	}

	void read_input(const char *path) {
		FILE *f = std::fopen(path, "rb");
		if (!f)
			fail(2, std::string("cannot open input ") + path + ": " + std::strerror(errno));
		read_exact(f, &h, sizeof h, "the header");
		if (std::memcmp(h.magic, IN_MAGIC, 8) || h.version != VERSION)
			fail(2, "input file has the wrong format or version");
		constexpr size_t in_bits = decltype(top.SE_PORT_I_PAYLOAD)::bits;
		constexpr size_t out_bits = std::remove_reference<decltype(cur(top.SE_PORT_O_PAYLOAD))>::type::bits;
		if (h.payload_bits != in_bits || h.result_bits != out_bits)
			fail(2, "input file was made for another design (payload widths " +
			             std::to_string(h.payload_bits) + "/" + std::to_string(h.result_bits) +
			             ", model " + std::to_string(in_bits) + "/" + std::to_string(out_bits) + ")");
		if (h.pixels_per_beat * h.beats_per_sample > h.image_bytes || h.pred_w > 32 ||
		    h.clock_w > 64 || h.data_width == 0 || h.data_width > 32 || h.ro_latency == 0)
			fail(2, "inconsistent input header");
		geo.resize(h.junctions);
		read_exact(f, geo.data(), sizeof(Geometry) * h.junctions, "the geometry");
		images.resize(size_t(h.n_images) * h.image_bytes);
		read_exact(f, images.data(), images.size(), "the images");
		labels.resize(h.n_images);
		read_exact(f, labels.data(), labels.size(), "the labels");
		stream.resize(h.n_stream);
		read_exact(f, stream.data(), sizeof(StreamRecord) * h.n_stream, "the sample stream");
		char extra;
		if (std::fread(&extra, 1, 1, f) != 0)
			fail(2, "input file has trailing bytes");
		std::fclose(f);
		for (const auto &r : stream)
			if (r.image >= h.n_images)
				fail(2, "sample stream refers to a missing image");
	}

	void write_output(const std::string &path) {
		Writer w;
		w.path = path + ".part";
		w.f = std::fopen(w.path.c_str(), "wb");
		if (!w.f)
			fail(2, "cannot create " + w.path + ": " + std::strerror(errno));
		uint32_t n = uint32_t(preds.size()), nr = uint32_t(readout_clocks.size());
		uint32_t per = 0;
		for (const auto &g : geo)
			per += g.n_w + g.n_b;
		w.put(OUT_MAGIC, 8);
		w.put(VERSION);
		w.put(n);
		w.put(nr);
		w.put(per);
		w.put(wall);
		uint64_t net_clocks = get_bits(cur(top.SE_PORT_CLOCKS), 0, 64);
		w.put(net_clocks);
		w.put(preds.data(), sizeof(uint32_t) * n);
		w.put(clocks.data(), sizeof(uint64_t) * n);
		w.put(readout_clocks.data(), sizeof(uint64_t) * nr);
		w.put(params.data(), sizeof(int32_t) * params.size());
		uint32_t crc = w.value();
		if (std::fwrite(&crc, 4, 1, w.f) != 1 || std::fwrite(END_MAGIC, 1, 8, w.f) != 8 ||
		    std::fclose(w.f) != 0)
			fail(2, "cannot write " + w.path + ": " + std::strerror(errno));
		if (std::rename(w.path.c_str(), path.c_str()) != 0)
			fail(2, "cannot rename " + w.path + " to " + path + ": " + std::strerror(errno));
	}
};

}  // namespace

int main(int argc, char **argv) {
	if (argc != 3) {
		std::fprintf(stderr, "usage: %s INPUT OUTPUT\n", argv[0]);
		return 2;
	}
	static Sim sim;
	sim.read_input(argv[1]);
	sim.run();
	sim.write_output(argv[2]);
	std::fprintf(stderr, "@done %llu clocks %.3f s\n", (unsigned long long)sim.wall, now() - sim.t0);
	return 0;
}
