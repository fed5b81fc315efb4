"""Building blocks of the fused rollout kernels (``kernels/rollout.py``): activations and
their derivatives, masked loads and stores, the predictor's forward and vector-Jacobian
product, and the per-step energy and critic terms. All are ``@triton.jit`` device functions.
"""
import triton
import triton.language as tl


@triton.jit
def sigmoid(x):
    # clamped so exp() cannot overflow (sigmoid(+-30) is 1 / 0 to ~1e-13)
    return tl.sigmoid(tl.minimum(tl.maximum(x, -30.0), 30.0))


@triton.jit
def activation(z, ACT: tl.constexpr):
    if ACT == 0:  # tanh
        y = 2.0 * sigmoid(2.0 * z) - 1.0
    elif ACT == 1:  # relu
        y = tl.maximum(z, 0.0)
    elif ACT == 2:  # gelu, tanh approximation
        u = 0.7978845608028654 * (z + 0.044715 * z * z * z)
        y = z * sigmoid(2.0 * u)  # 0.5*z*(1+tanh(u)) == z*sigmoid(2u)
    elif ACT == 3:  # silu
        y = z * sigmoid(z)
    else:  # elu, alpha = 1
        y = tl.where(z > 0.0, z, tl.exp(tl.minimum(z, 0.0)) - 1.0)
    return y


@triton.jit
def activation_grad(z, ACT: tl.constexpr):
    if ACT == 0:
        th = 2.0 * sigmoid(2.0 * z) - 1.0
        y = 1.0 - th * th
    elif ACT == 1:
        y = tl.where(z > 0.0, 1.0, 0.0)
    elif ACT == 2:
        u = 0.7978845608028654 * (z + 0.044715 * z * z * z)
        th = 2.0 * sigmoid(2.0 * u) - 1.0
        du = 0.7978845608028654 * (1.0 + 0.134145 * z * z)
        y = 0.5 * (1.0 + th) + 0.5 * z * (1.0 - th * th) * du
    elif ACT == 3:
        sg = sigmoid(z)
        y = sg * (1.0 + z * (1.0 - sg))
    else:
        y = tl.where(z > 0.0, 1.0, tl.exp(tl.minimum(z, 0.0)))
    return y


@triton.jit
def mm(x, w, PREC: tl.constexpr, BF16: tl.constexpr, INTERP: tl.constexpr):
    """x [M,K] fp32 @ w [K,N] (fp32 or bf16) with fp32 accumulation."""
    if BF16:
        if INTERP:  # bf16 tl.dot is wrong in the interpreter: round to bf16, multiply in fp32
            y = tl.dot(x.to(tl.bfloat16).to(tl.float32), w.to(tl.float32), input_precision="ieee")
        else:
            y = tl.dot(x.to(tl.bfloat16), w.to(tl.bfloat16), out_dtype=tl.float32)
    else:
        y = tl.dot(x, w, input_precision=PREC)
    return y


@triton.jit
def load_mat(ptr, K, N, ld, KP: tl.constexpr, NP: tl.constexpr, TRANS: tl.constexpr):
    """Tile of a row-major [K, N] matrix (row stride ld), zero padded to [KP, NP] (or its
    transpose [NP, KP] when TRANS)."""
    rk = tl.arange(0, KP)
    rn = tl.arange(0, NP)
    if TRANS:
        p = ptr + rn[:, None] + rk[None, :] * ld
        m = (rn[:, None] < N) & (rk[None, :] < K)
    else:
        p = ptr + rk[:, None] * ld + rn[None, :]
        m = (rk[:, None] < K) & (rn[None, :] < N)
    return tl.load(p, mask=m, other=0.0)


@triton.jit
def load_vec(ptr, N, NP: tl.constexpr):
    r = tl.arange(0, NP)
    return tl.load(ptr + r, mask=r < N, other=0.0).to(tl.float32)


@triton.jit
def load_rows(ptr, row_off, rmask, N, NP: tl.constexpr):
    """[BLOCK_N, NP] fp32 tile: element (i, j) at ptr + row_off[i] + j."""
    c = tl.arange(0, NP)
    m = rmask[:, None] & (c[None, :] < N)
    return tl.load(ptr + row_off[:, None] + c[None, :], mask=m, other=0.0).to(tl.float32)


@triton.jit
def store_rows(ptr, row_off, rmask, x, N, NP: tl.constexpr):
    c = tl.arange(0, NP)
    m = rmask[:, None] & (c[None, :] < N)
    tl.store(ptr + row_off[:, None] + c[None, :], x, mask=m)


@triton.jit
def pred_fwd(s, a, w1_ptr, b1_ptr, w2_ptr, b2_ptr, w3_ptr, b3_ptr, S, A, D1, D2, D3,
              SP: tl.constexpr, AP: tl.constexpr, D1P: tl.constexpr, D2P: tl.constexpr, D3P: tl.constexpr,
              NL: tl.constexpr, ACT: tl.constexpr, RESIDUAL: tl.constexpr,
              PREC: tl.constexpr, BF16: tl.constexpr, INTERP: tl.constexpr):
    """One predictor step. Returns (s_next, z1, z2) with z* the pre-activations (unused ones
    are placeholders)."""
    w1s = load_mat(w1_ptr, S, D1, D1, SP, D1P, False)
    w1a = load_mat(w1_ptr + S * D1, A, D1, D1, AP, D1P, False)
    z1 = mm(s, w1s, PREC, BF16, INTERP) + mm(a, w1a, PREC, BF16, INTERP)
    z1 = z1 + load_vec(b1_ptr, D1, D1P)[None, :]
    z2 = z1
    if NL == 1:
        out = z1
    else:
        h1 = activation(z1, ACT)
        z2 = mm(h1, load_mat(w2_ptr, D1, D2, D2, D1P, D2P, False), PREC, BF16, INTERP)
        z2 = z2 + load_vec(b2_ptr, D2, D2P)[None, :]
        if NL == 2:
            out = z2
        else:
            h2 = activation(z2, ACT)
            out = mm(h2, load_mat(w3_ptr, D2, D3, D3, D2P, D3P, False), PREC, BF16, INTERP)
            out = out + load_vec(b3_ptr, D3, D3P)[None, :]
    if RESIDUAL:
        s_next = s + out
    else:
        s_next = out
    return s_next, z1, z2


@triton.jit
def pred_vjp(lam, z1, z2, w1_ptr, w2_ptr, w3_ptr, S, A, D1, D2, D3,
              SP: tl.constexpr, AP: tl.constexpr, D1P: tl.constexpr, D2P: tl.constexpr, D3P: tl.constexpr,
              NL: tl.constexpr, ACT: tl.constexpr, RESIDUAL: tl.constexpr,
              PREC: tl.constexpr, BF16: tl.constexpr, INTERP: tl.constexpr):
    """lam = dE/ds_next -> (dE/ds, dE/da)."""
    g = lam
    if NL == 3:
        g = mm(g, load_mat(w3_ptr, D2, D3, D3, D2P, D3P, True), PREC, BF16, INTERP) * activation_grad(z2, ACT)
    if NL >= 2:
        g = mm(g, load_mat(w2_ptr, D1, D2, D2, D1P, D2P, True), PREC, BF16, INTERP) * activation_grad(z1, ACT)
    gs = mm(g, load_mat(w1_ptr, S, D1, D1, SP, D1P, True), PREC, BF16, INTERP)
    ga = mm(g, load_mat(w1_ptr + S * D1, A, D1, D1, AP, D1P, True), PREC, BF16, INTERP)
    if RESIDUAL:
        gs = gs + lam
    return gs, ga


@triton.jit
def stage_energy(s, g, q_ptr, S, w_goal, SP: tl.constexpr, HAS_Q: tl.constexpr, PREC: tl.constexpr):
    d = s - g
    e = w_goal * tl.sum(d * d, axis=1)
    if HAS_Q:
        qd = tl.dot(d, load_mat(q_ptr, S, S, S, SP, SP, False).to(tl.float32), input_precision=PREC)
        e = e + tl.sum(qd * d, axis=1)
    return e


@triton.jit
def stage_grad(s, g, q_ptr, S, w_goal, SP: tl.constexpr, HAS_Q: tl.constexpr, PREC: tl.constexpr):
    d = s - g
    gr = (2.0 * w_goal) * d
    if HAS_Q:
        gr = gr + tl.dot(d, load_mat(q_ptr, S, S, S, SP, SP, False).to(tl.float32), input_precision=PREC)
        gr = gr + tl.dot(d, load_mat(q_ptr, S, S, S, SP, SP, True).to(tl.float32), input_precision=PREC)
    return gr


@triton.jit
def critic_fwd(s, cw1_ptr, cb1_ptr, cw2_ptr, cb2_ptr, S, HC,
                SP: tl.constexpr, HCP: tl.constexpr, NCL: tl.constexpr, CACT: tl.constexpr,
                PREC: tl.constexpr):
    if NCL == 1:  # [S] -> 1: a dot with a vector is a row reduction
        c = tl.sum(s * load_vec(cw1_ptr, S, SP)[None, :], axis=1) + tl.load(cb1_ptr).to(tl.float32)
    else:
        zc = tl.dot(s, load_mat(cw1_ptr, S, HC, HC, SP, HCP, False).to(tl.float32), input_precision=PREC)
        zc = zc + load_vec(cb1_ptr, HC, HCP)[None, :]
        c = tl.sum(activation(zc, CACT) * load_vec(cw2_ptr, HC, HCP)[None, :], axis=1)
        c = c + tl.load(cb2_ptr).to(tl.float32)
    return c


@triton.jit
def critic_grad(s, cw1_ptr, cb1_ptr, cw2_ptr, S, HC,
                 SP: tl.constexpr, HCP: tl.constexpr, NCL: tl.constexpr, CACT: tl.constexpr,
                 PREC: tl.constexpr):
    if NCL == 1:
        gr = s * 0.0 + load_vec(cw1_ptr, S, SP)[None, :]
    else:
        zc = tl.dot(s, load_mat(cw1_ptr, S, HC, HC, SP, HCP, False).to(tl.float32), input_precision=PREC)
        zc = zc + load_vec(cb1_ptr, HC, HCP)[None, :]
        gz = load_vec(cw2_ptr, HC, HCP)[None, :] * activation_grad(zc, CACT)
        gr = tl.dot(gz, load_mat(cw1_ptr, S, HC, HC, SP, HCP, True).to(tl.float32), input_precision=PREC)
    return gr
