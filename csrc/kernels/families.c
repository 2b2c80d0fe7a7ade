/* families.c — the family tables (FC_FAMILY lines of kernels.def): element sizes and the
 * packing function of each weight/activation format. Built with baseline flags. */
#include "internal.h"

#define FC_FAMILY(name_, dtype_, precision_, weight_bytes_, act_bytes_, pack_, template_)     \
    const fc_family fc_family_##name_ = {.name = #name_, .dtype = dtype_,                     \
                                         .precision = FC_PRECISION_##precision_,              \
                                         .weight_bytes = weight_bytes_,                       \
                                         .act_bytes = act_bytes_, .pack = pack_};
#include "kernels.def"
