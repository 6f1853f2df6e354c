/* The table of kernels of one instruction set. */
#ifndef CK_ISA_H
#define CK_ISA_H

#include "ck_common.h"

typedef struct {
    void (*ce_rows[2])(const ce_job *, i64, i64, double *); /* [f64]: rows [i0, i1), scratch */
    void (*bce_chunk[2])(const bce_job *, i64);             /* [f64]: one chunk */
} ck_isa_t;

const ck_isa_t *ck_select_isa(const char **name);
const ck_isa_t *ck_isa_by_name(const char *name);

#endif
