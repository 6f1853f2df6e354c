/* The kernels of one ISA: included by ck_isa.c once per ISA, with KSUF (the name
 * suffix), KATTR (the function attribute selecting the ISA) and VW (doubles per
 * native vector) defined.  Each element type is one instantiation of the
 * templates. */

/* helpers: inlined, and compiled for the ISA (they may use its intrinsics) */
#define KINL static inline __attribute__((always_inline)) KATTR

#include "ck_vnames.h"
#include "ck_vmath.h"

#define T float
#define TS f32
#define EXACT 0
#include "ck_ce_t.h"
#include "ck_bce_t.h"
#undef T
#undef TS
#undef EXACT

#define T double
#define TS f64
#define EXACT 1
#include "ck_ce_t.h"
#include "ck_bce_t.h"
#undef T
#undef TS
#undef EXACT

#define CK_TABLE_(s) ck_isa##s
#define CK_TABLE(s) CK_TABLE_(s)
const ck_isa_t CK_TABLE(KSUF) = {
    {CKC(ce_rows_f32, KSUF), CKC(ce_rows_f64, KSUF)},
    {CKC(bce_chunk_f32, KSUF), CKC(bce_chunk_f64, KSUF)},
};
#undef CK_TABLE
#undef CK_TABLE_

#include "ck_vnames_undef.h"
#undef KINL
