"""Column layout of the per-row partial state of a vocabulary slice (no imports).

One row of ``Partials.stats`` (float32) describes the softcapped logits
``x_c`` of one row restricted to a column slice ``[v0, v1)`` of the
vocabulary; ``Partials.index`` (int64) holds the two class indices.  "F"
below is the set of the slice's entries that are neither NaN nor ``+inf``;
``w_c`` is the class weight (1 without weights); ``sh = m`` when ``m`` is
finite, else 0.  See ``docs/triton.md`` for the merge rule.

====  =========  ==========================================================  ===========
col   name       meaning (per row, over the slice)                           merge
====  =========  ==========================================================  ===========
0     M          max of x over F (−inf when F is empty)                      max
1     S_OFF      Σ_{c∈F, c≠K} e^{x_c − sh}  (the argmax term never added)    lift + sum
2     XY         x_y when the target y lies in the slice, else 0             sum
3     HIT        1 when y lies in the slice, else 0                          sum
4     WY         w_y when y lies in the slice, else 0                        sum
5     NNAN       number of NaN entries                                       sum
6     NPINF      number of +inf entries                                      sum
7     NPINFW     number of +inf entries with w_c ≠ 0 (smoothing + weights)   sum
8     D          Σ_{c∈F, w_c≠0} w_c (sh − x_c)  (smoothing)                  lift + sum
9     WOFF       Σ_{c≠K} w_c  (smoothing)                                    lift + sum
10    WK         w_K, the weight at the slice's argmax K  (smoothing)        lift + sum
11    W          Σ_c w_c  (smoothing)                                        sum
12    WPOS       number of classes with w_c > 0  (smoothing + weights)       sum
13    WNEG       number of classes with w_c < 0  (smoothing + weights)       sum
14    WKP        w at KPINF  (smoothing)                                     lift + sum
====  =========  ==========================================================  ===========

``index[:, 0]`` = K, the global column of the first maximum over F (the
slice's first column when F holds only −inf; ``BIG`` for an empty slice);
``index[:, 1]`` = KPINF, the global column of the first ``+inf`` (``BIG``
when there is none).  Merge: K = min of K over the slices attaining the
merged M; KPINF = min.
"""

M, S_OFF, XY, HIT, WY, NNAN, NPINF, NPINFW, D, WOFF, WK, W, WPOS, WNEG, WKP = range(15)
NSTAT = 15
FIELDS = ("M", "S_OFF", "XY", "HIT", "WY", "NNAN", "NPINF", "NPINFW", "D", "WOFF", "WK", "W", "WPOS", "WNEG", "WKP")
K, KPINF = 0, 1
BIG = 2**31 - 1  # "no index": larger than any class index a kernel accepts
