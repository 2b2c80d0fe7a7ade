/* f64 cell kernels for avx512: register tile 6 rows x 32 columns (4 vectors of 8 lanes).
 * The kernels are cells_template.h; this file only fixes the type, vector width and tile. */
#define FC_T double
#define FC_VW 8
#define FC_MR 6
#define FC_ISA_ID FC_ISA_AVX512
#define FC_DTYPE_ID 1
#define FC_SUFFIX f64__avx512
#define FC_KNAME "f64-cells-6x32-avx512"
#include "cells_template.h"
