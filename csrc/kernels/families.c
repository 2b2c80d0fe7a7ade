/* families.c — the family tables (FC_FAMILY lines of kernels.def): element sizes, the
 * packing function and the operand format of each weight/activation format. Built with
 * baseline flags. */
#include "internal.h"
#include "i8-gemm.h"

/* one operand format per fc_precision (a family's precision names its format) */
static const fc_operand_format operand_formats[] = {
    [FC_PRECISION_NATIVE] = {.group = 0},
    [FC_PRECISION_INT8] = {.group = FC_I8_KG, .bytes = 1,
                           .row_multiple = FC_I8_KG * FC_I8_TILE_GROUPS},
    [FC_PRECISION_BF16] = {.group = 2, .bytes = 2, .row_multiple = 2},
};

#define FC_FAMILY(name_, dtype_, precision_, weight_bytes_, act_bytes_, pack_, template_)     \
    const fc_family fc_family_##name_ = {.name = #name_, .dtype = dtype_,                     \
                                         .precision = FC_PRECISION_##precision_,              \
                                         .weight_bytes = weight_bytes_,                       \
                                         .act_bytes = act_bytes_, .pack = pack_,              \
                                         .operands = &operand_formats[FC_PRECISION_##precision_]};
#include "kernels.def"
