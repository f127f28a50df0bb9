// Maps a $mul cell onto the Gowin GW5A's MULT12X12 DSP primitives.
//
// `synth_gowin -family gw5a` infers no DSPs (Yosys maps multipliers to DSPs
// for gw1n/gw2a only), so the gw5a-138 flow runs this techmap on the $mul
// cells that are not moved into logic by a DSP budget, after `wreduce` has
// narrowed them to their real operand widths.
//
// MULT12X12 multiplies two signed 12-bit operands into a signed 24-bit
// product; every input/pipeline/output register is left in BYPASS, so the
// primitive is purely combinational and the datapath's own pipeline registers
// (in the fabric) stay where hdl/ puts them.
//
// Yosys' $mul is signed only when both operands are (A_SIGNED && B_SIGNED),
// and the result is the exact product taken modulo 2**Y_WIDTH.  Each operand
// is split into 11-bit unsigned chunks (zero-extended to 12 bits) and one top
// chunk that carries the sign (signed product) or a zero MSB (unsigned
// product), so an operand of width W takes ceil((W - S) / 11) chunks, S = 1
// for a signed product: signed operands up to 12 bits and unsigned ones up to
// 11 bits take one chunk.  Every pair of chunks is one MULT12X12 and the
// partial products are summed at their offsets (11 * (i + j) bits).  Every
// product of a Q(2,7) datapath (operands of at most 11 bits) takes exactly
// one MULT12X12 and no adder; a 16-bit format takes four per product.
// Products with a 1-bit operand are AND gates and stay in logic.
(* techmap_celltype = "$mul" *)
module _sparse_edge_gowin_mul (A, B, Y);
  parameter A_SIGNED = 0;
  parameter B_SIGNED = 0;
  parameter A_WIDTH = 1;
  parameter B_WIDTH = 1;
  parameter Y_WIDTH = 1;
  input [A_WIDTH-1:0] A;
  input [B_WIDTH-1:0] B;
  output [Y_WIDTH-1:0] Y;

  localparam S = (A_SIGNED && B_SIGNED) ? 1 : 0;
  localparam NA = (A_WIDTH - S + 10) / 11 < 1 ? 1 : (A_WIDTH - S + 10) / 11;
  localparam NB = (B_WIDTH - S + 10) / 11 < 1 ? 1 : (B_WIDTH - S + 10) / 11;
  localparam AE = 11 * NA + 1;          // operands extended to whole chunks
  localparam BE = 11 * NB + 1;
  localparam N = NA * NB;               // MULT12X12 tiles

  wire _TECHMAP_FAIL_ = A_WIDTH < 2 || B_WIDTH < 2;

  wire [AE-1:0] ae;
  wire [BE-1:0] be;
  generate
    if (S) begin : sext
      assign ae = {{AE{A[A_WIDTH-1]}}, A};
      assign be = {{BE{B[B_WIDTH-1]}}, B};
    end else begin : zext
      assign ae = {{AE{1'b0}}, A};
      assign be = {{BE{1'b0}}, B};
    end
  endgenerate

  // tile t = i * NB + j multiplies chunk i of A by chunk j of B; sum[t] is
  // the running total of tiles 0..t, modulo 2**Y_WIDTH
  wire [24*N-1:0] p;
  wire [Y_WIDTH*N-1:0] sum;
  genvar i, j;
  generate
    for (i = 0; i < NA; i = i + 1) begin : ra
      for (j = 0; j < NB; j = j + 1) begin : rb
        localparam T = i * NB + j;
        localparam SH = 11 * (i + j);
        // lower chunks are unsigned (a zero MSB), the top chunk keeps bit 11
        wire [11:0] ca = (i == NA - 1) ? ae[11*i +: 12] : {1'b0, ae[11*i +: 11]};
        wire [11:0] cb = (j == NB - 1) ? be[11*j +: 12] : {1'b0, be[11*j +: 11]};
        MULT12X12 #(
          .AREG_CLK("BYPASS"), .BREG_CLK("BYPASS"), .PREG_CLK("BYPASS"),
          .OREG_CLK("BYPASS"), .MULT_RESET_MODE("SYNC")
        ) tile (
          .A(ca), .B(cb), .CLK(2'b00), .CE(2'b00), .RESET(2'b00),
          .DOUT(p[24*T +: 24])
        );
        wire [Y_WIDTH+SH+24-1:0] wide = {{(Y_WIDTH+SH){p[24*T+23]}}, p[24*T +: 24]} << SH;
        if (T == 0) begin : first
          assign sum[0 +: Y_WIDTH] = wide[Y_WIDTH-1:0];
        end else begin : acc
          assign sum[Y_WIDTH*T +: Y_WIDTH] = sum[Y_WIDTH*(T-1) +: Y_WIDTH] + wide[Y_WIDTH-1:0];
        end
      end
    end
  endgenerate
  assign Y = sum[Y_WIDTH*(N-1) +: Y_WIDTH];
endmodule
