/* driver.h — what the two drivers of a cell's step, fc_cell_step (cells.c) and the sequence
 * loop (sequence.c), share beyond internal.h: the cell's sizes and kind read once, and the
 * epilogue operands of its step product set in one place. */
#ifndef FASTCELLS_DRIVER_H
#define FASTCELLS_DRIVER_H

#include "internal.h"

/* A cell's sizes and kind, as both drivers use them. */
typedef struct fc_cell_dims {
    size_t es, I, U, P;         /* element size; input size, units, recurrent width */
    int lstm, gru, gru_ra;      /* gru: reset before (TF GRUCell); gru_ra: reset after */
    int proj;                   /* lstm with projection: m @ projection is a second product */
    /* a reduced-precision family (i8, bf16: its operand format's group is not 0): x rows
     * apart (main_x, cand_x), one segment per product, each operand converted before it */
    int converted;
    const fc_operand_format *operands;  /* the family's (internal.h) */
    int h_fixed;                /* i8: h (and the gru's r*h) quantized with the fixed amax 1,
                                   as the cell bounds it by 1; else per row */
} fc_cell_dims;

static inline int fc_bounded_by_one(fc_activation a)    /* |act(x)| <= 1 for every x */
{
    return a == FC_ACT_TANH || a == FC_ACT_SIGMOID || a == FC_ACT_SOFTSIGN ||
           a == FC_ACT_HARD_SIGMOID;
}

static inline int fc_unit_gate(fc_activation a)         /* act(x) in [0, 1] for every x */
{
    return a == FC_ACT_SIGMOID || a == FC_ACT_HARD_SIGMOID;
}

/* Whether the cell bounds its h by 1 (fastcells/reference_quant.py): a tanh-like RNN; an LSTM
 * without projection, h = gate(o) * out_act(c'); a GRU, h' = u*h + (1-u)*act(...) with u in
 * [0, 1] (then r*h is bounded too). */
static inline int fc_h_bounded(const fc_cell_desc *d)
{
    const int act = fc_bounded_by_one(d->activation.kind);
    const int gate = fc_unit_gate(d->gate_activation.kind);
    switch (d->kind) {
    case FC_CELL_RNN: return act;
    case FC_CELL_LSTM:
        return !d->has_projection && gate && fc_bounded_by_one(d->output_activation.kind);
    default: return act && gate;
    }
}

static inline fc_cell_dims fc_cell_dims_of(const fc_cell *cell)
{
    const fc_cell_desc *d = &cell->desc;
    const int lstm = d->kind == FC_CELL_LSTM, i8 = d->precision == FC_PRECISION_INT8;
    const fc_operand_format *operands = cell->kernels->family->operands;
    return (fc_cell_dims){.es = cell->elem, .I = d->input_size, .U = d->num_units,
                          .P = d->rec_size, .lstm = lstm, .gru = d->kind == FC_CELL_GRU,
                          .gru_ra = d->kind == FC_CELL_GRU_RA,
                          .proj = lstm && d->has_projection,
                          .converted = operands->group != 0, .operands = operands,
                          .h_fixed = i8 && fc_h_bounded(d)};
}

/* The epilogue operands of the cell's step product (the one that reads h): activations and
 * pre-activation clip (fc_epilogue_params), and for an LSTM its peepholes and cell clip. */
void fc_step_epilogue(const fc_cell *cell, fc_block_args *args);

#endif /* FASTCELLS_DRIVER_H */
