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
} fc_cell_dims;

static inline fc_cell_dims fc_cell_dims_of(const fc_cell *cell)
{
    const fc_cell_desc *d = &cell->desc;
    const int lstm = d->kind == FC_CELL_LSTM;
    return (fc_cell_dims){.es = cell->elem, .I = d->input_size, .U = d->num_units,
                          .P = d->rec_size, .lstm = lstm, .gru = d->kind == FC_CELL_GRU,
                          .gru_ra = d->kind == FC_CELL_GRU_RA,
                          .proj = lstm && d->has_projection};
}

/* The epilogue operands of the cell's step product (the one that reads h): activations and
 * pre-activation clip (fc_epilogue_params), and for an LSTM its peepholes and cell clip. */
void fc_step_epilogue(const fc_cell *cell, fc_block_args *args);

#endif /* FASTCELLS_DRIVER_H */
