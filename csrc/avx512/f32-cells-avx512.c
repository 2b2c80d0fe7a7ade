/* f32 cell kernels for avx512: register tile 6 rows x 64 columns (4 vectors of 16 lanes).
 * The kernels are cells_template.h; this file only fixes the type, vector width and tile. */
#define FC_T float
#define FC_VW 16
#define FC_MR 6
#define FC_ISA_ID FC_ISA_AVX512
#define FC_DTYPE_ID 0
#define FC_SUFFIX f32__avx512
#define FC_KNAME "f32-cells-6x64-avx512"
#include "cells_template.h"
