// Shift-and-add multiplier for the $mul cells a DSP budget moves into logic.
// Rows come from the narrower operand; the rows are summed by a tree of adders
// whose operands skip the low bits that are zero by construction, and each
// sum is kept so that Yosys maps it to a carry chain instead of merging the
// tree into one $macc (which abc turns into plain LUTs, about twice the size).
(* techmap_celltype = "$mul" *)
module _sparse_edge_softmul (A, B, Y);
  parameter A_SIGNED = 0;
  parameter B_SIGNED = 0;
  parameter A_WIDTH = 1;
  parameter B_WIDTH = 1;
  parameter Y_WIDTH = 1;
  input [A_WIDTH-1:0] A;
  input [B_WIDTH-1:0] B;
  output [Y_WIDTH-1:0] Y;
  localparam SWAP = B_WIDTH < A_WIDTH;
  localparam RW = SWAP ? B_WIDTH : A_WIDTH;        // rows
  localparam RS = SWAP ? B_SIGNED : A_SIGNED;
  localparam XW = SWAP ? A_WIDTH : B_WIDTH;
  localparam XS = SWAP ? A_SIGNED : B_SIGNED;
  localparam W = Y_WIDTH;
  localparam NP = (RS && RW > 1) ? RW - 1 : RW;    // positive rows (a signed MSB row is subtracted)
  localparam LV = NP > 1 ? $clog2(NP) : 0;
  wire [RW-1:0] r = SWAP ? B : A;
  wire [XW-1:0] x = SWAP ? A : B;
  wire [W-1:0] xe = XS ? {{W{x[XW-1]}}, x} : {{W{1'b0}}, x};
  // node (l, i) is bits [(l*NP + i)*W +: W]; its low i*2^l bits are zero
  (* keep *) wire [(LV+1)*NP*W-1:0] node;
  genvar l, i;
  generate
    for (i = 0; i < NP; i = i + 1) begin : row
      assign node[i*W +: W] = r[i] ? (xe << i) : {W{1'b0}};
    end
    for (l = 1; l <= LV; l = l + 1) begin : level
      for (i = 0; i < (NP + (1 << l) - 1) / (1 << l); i = i + 1) begin : pair
        localparam LO = ((l-1)*NP + 2*i) * W;        // left child, zero below i*2^l
        localparam HI = ((l-1)*NP + 2*i + 1) * W;    // right child, zero below SB
        localparam SB = (2*i + 1) << (l - 1);
        localparam O = (l*NP + i) * W;
        if ((2*i + 1) * (1 << (l-1)) >= NP || SB >= W) begin : pass
          assign node[O +: W] = node[LO +: W];
        end else begin : add
          assign node[O + SB +: W - SB] = node[LO + SB +: W - SB] + node[HI + SB +: W - SB];
          if (SB > 0) begin : low
            assign node[O +: SB] = node[LO +: SB];
          end
        end
      end
    end
    if (NP < RW) begin : msb
      wire [W-1:0] neg = r[RW-1] ? (xe << (RW-1)) : {W{1'b0}};
      assign Y = node[LV*NP*W +: W] - neg;
    end else begin : nomsb
      assign Y = node[LV*NP*W +: W];
    end
  endgenerate
endmodule
