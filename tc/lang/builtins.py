"""The math builtins of the TC language (CUDA's math library names) and their arities."""

from __future__ import annotations

_UNARY = (
    "exp exp2 exp10 expm1 log log2 log10 log1p sqrt rsqrt cbrt rcbrt sin cos tan asin acos "
    "atan sinh cosh tanh asinh acosh atanh erf erfc erfinv erfcinv lgamma tgamma fabs floor "
    "ceil round trunc sigmoid"
    # the rest of the original's builtins (issue 14)
    " cospi sinpi cyl_bessel_i0 cyl_bessel_i1 erfcx j0 j1 y0 y1 logb normcdf normcdfinv"
).split()
_BINARY = "atan2 fmax fmin fmod fdim hypot pow copysign fdivide nextafter remainder rhypot".split()
_TERNARY = ["fma", "norm3d", "rnorm3d"]
_QUATERNARY = ["norm4d", "rnorm4d"]

#: name -> number of arguments, for the float math functions.
MATH_BUILTINS: dict[str, int] = {
    **{n: 1 for n in _UNARY},
    **{n: 2 for n in _BINARY},
    **{n: 3 for n in _TERNARY},
    **{n: 4 for n in _QUATERNARY},
}

#: ``min`` and ``max`` work on any numeric type and keep it (no conversion to float).
GENERIC_BUILTINS: dict[str, int] = {"min": 2, "max": 2}

BUILTINS: dict[str, int] = {**MATH_BUILTINS, **GENERIC_BUILTINS}
