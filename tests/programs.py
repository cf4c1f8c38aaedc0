"""Valid TC programs shared by the front-end tests and the compiler tests."""

# Every construct of the language in one definition.
EVERYTHING_DEF = """
def everything(float(M, K) A, float(K, N) B, float alpha, int32(M) idx,
               double(3) d, bool(M) mask) -> (float(M, N) C, s, O, P) {
    C(m, n) +=! A(m, k) * B(k, n)            # reduction with init
    C(m, n) = alpha * C(m, n) + 1            # update of a written tensor
    s +=! A(m, k)                            # scalar output
    t(m) max=! A(m, k)                       # temporary
    O(m) = mask(m) && t(m) > 0.5 ? exp(t(m)) : -t(m) where m in 0:M
    O(m) min= min(O(m), A(idx(m) % M, 0))
    P(i) = float(d(i)) * float(N) + x where x = .5e1, exists A(i, 0)
    P(i) *= 2.5E+2
}
"""

# A text with every construct of the language, and a second entry point.
EVERYTHING = (
    "\n# A text with every construct of the language."
    + EVERYTHING_DEF
    + "def second(float(N) X) -> (Y) { Y(i) = X(i) }\n"
)

OWN_PROGRAMS = [
    EVERYTHING_DEF,
    """
def ints(int8(N) a, uint8(N) b, int64(N, 3) c, half(N) h, bfloat16(N) g) -> (x, y, z) {
    x(i) = a(i) / 2 + b(i) % 3 - int8(c(i, 1))
    y(i) max=! int64(a(i)) * c(i, j)
    z(i) = h(i) * half(2) + half(g(i)) where i in 0:N
}
""",
    """
def strided(float(B, C, H, W) I, float(F, C, KH, KW) Wt) -> (O) {
    O(b, f, h, w) +=! I(b, c, 2 * h + kh, w + kw) * Wt(f, c, kh, kw)
    O(b, f, h, w) = O(b, f, h, w) > 0 ? O(b, f, h, w) : 0.0
}
def shifts(float(N) A) -> (D, R) {
    D(i) = A(i + 1) - A(i - 1)
    R(i) = A(N - 1 - i) where i in 0:N
}
""",
]
