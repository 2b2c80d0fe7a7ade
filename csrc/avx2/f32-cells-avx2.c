/* f32 cell kernels for avx2: register tile 3 rows x 32 columns (4 vectors of 8 lanes).
 * The kernels are cells_template.h; this file only fixes the type, vector width and tile. */
#define FC_T float
#define FC_VW 8
#define FC_MR 3
#define FC_ISA_ID FC_ISA_AVX2
#define FC_DTYPE_ID 0
#define FC_SUFFIX f32__avx2
#define FC_KNAME "f32-cells-3x32-avx2"
#include "cells_template.h"
