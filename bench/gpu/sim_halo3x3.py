#!/usr/bin/env python3
# Offline check of conv3x3_halo_kernel's data movement: shared-memory layout (swizzle), ldmatrix lane
# addressing and mma fragment semantics, against a direct 3x3 pad-1 convolution.
import numpy as np
TH, TW = 8, 16
HP = (TH + 2) * (TW + 2)

def chunk_off(pixel, chunk, C):
    CH = C // 8
    return pixel * C * 2 + ((chunk ^ ((pixel * CH >> 3) & (CH - 1))) << 4)

def ldmatrix_x4(smem, lane_addr):
    # smem: bytes (np.uint8); lane_addr[l]: byte address of row (l % 8) of matrix l // 8
    regs = np.zeros((32, 4, 2), np.float16)
    for m in range(4):
        for T in range(32):
            row = T // 4
            addr = lane_addr[m * 8 + row] + 4 * (T % 4)
            regs[T, m] = smem[addr:addr + 4].view(np.float16)
    return regs

def mma(d, a, b0, b1):
    # d[T][4], a[T][4][2], b0/b1[T][2]
    A = np.zeros((16, 16), np.float32); B = np.zeros((16, 8), np.float32)
    for T in range(32):
        g, t = T // 4, T % 4
        A[g, 2*t:2*t+2] = a[T, 0]; A[g+8, 2*t:2*t+2] = a[T, 1]
        A[g, 2*t+8:2*t+10] = a[T, 2]; A[g+8, 2*t+8:2*t+10] = a[T, 3]
        B[2*t:2*t+2, g] = b0[T]; B[2*t+8:2*t+10, g] = b1[T]
    D = A @ B
    for T in range(32):
        g, t = T // 4, T % 4
        d[T, 0] += D[g, 2*t]; d[T, 1] += D[g, 2*t+1]; d[T, 2] += D[g+8, 2*t]; d[T, 3] += D[g+8, 2*t+1]

def run(C, K, H, W, n=1, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, H, W, C)).astype(np.float16)
    w = rng.standard_normal((K, 3, 3, C)).astype(np.float16)  # packed [k][kh][kw][c]
    OH, OW = H, W
    # direct reference
    xp = np.zeros((n, H + 2, W + 2, C), np.float32); xp[:, 1:-1, 1:-1] = x
    ref = np.zeros((n, OH, OW, K), np.float32)
    for dy in range(3):
        for dx in range(3):
            ref += np.einsum('nhwc,kc->nhwk', xp[:, dy:dy+OH, dx:dx+OW], w[:, dy, dx].astype(np.float32))
    out = np.full((n, OH, OW, K), np.nan, np.float32)
    CH = C // 8; kWRow = 9 * C * 2 + 16
    tiles_x, tiles_y = -(-OW // TW), -(-OH // TH)
    # filter in smem
    wsm = np.zeros(K * kWRow, np.uint8)
    wflat = w.reshape(K, 9 * C)
    for q in range(K * 9 * CH):
        nn, c = q // (9 * CH), q % (9 * CH)
        wsm[nn * kWRow + c * 16: nn * kWRow + c * 16 + 16] = wflat[nn, c*8:c*8+8].view(np.uint8)
    for tile in range(n * tiles_x * tiles_y):
        img, rem = tile // (tiles_x * tiles_y), tile % (tiles_x * tiles_y)
        iy0, ix0 = (rem // tiles_x) * TH - 1, (rem % tiles_x) * TW - 1
        halo = np.zeros(HP * C * 2, np.uint8)
        for q in range(HP * CH):
            hp, c = q // CH, q % CH
            iy, ix = iy0 + hp // (TW + 2), ix0 + hp % (TW + 2)
            o = chunk_off(hp, c, C)
            if 0 <= iy < H and 0 <= ix < W:
                halo[o:o+16] = x[img, iy, ix, c*8:c*8+8].view(np.uint8)
        for warp in range(4):
            acc = np.zeros((2, K // 8, 32, 4), np.float32)
            for tap in range(9):
                dy, dx = tap // 3, tap % 3
                for cb in range(C // 16):
                    af = []
                    for mt in range(2):
                        addrs = []
                        for lane in range(32):
                            a_row = (lane & 7) + ((lane >> 3) & 1) * 8; a_kh = lane >> 4
                            hp = (warp * 2 + mt + dy) * (TW + 2) + a_row + dx
                            addrs.append(chunk_off(hp, cb * 2 + a_kh, C))
                        af.append(ldmatrix_x4(halo, addrs))
                    for nj in range(K // 16):
                        addrs = []
                        for lane in range(32):
                            b_lane = ((lane >> 4) * 8 + (lane & 7)) * kWRow + ((lane >> 3) & 1) * 16
                            addrs.append(b_lane + nj * 16 * kWRow + (tap * C + cb * 16) * 2)
                        t = ldmatrix_x4(wsm, addrs)
                        for mt in range(2):
                            mma(acc[mt, 2*nj], af[mt], t[:, 0], t[:, 1])
                            mma(acc[mt, 2*nj+1], af[mt], t[:, 2], t[:, 3])
            ty0, tx0 = (rem // tiles_x) * TH, (rem % tiles_x) * TW
            NB, SLd = K // 8, K + 4
            for mt in range(2):
                stage = np.full(16 * SLd, np.nan, np.float32)
                for lane in range(32):
                    for nb in range(NB):
                        for half in range(2):
                            o = ((lane >> 2) + half * 8) * SLd + nb * 8 + (lane & 3) * 2
                            stage[o:o + 2] = acc[mt, nb, lane, half * 2:half * 2 + 2]
                oy = ty0 + warp * 2 + mt
                for lane in range(32):
                    for q in range(lane, 16 * NB, 32):
                        px, nn = q // NB, (q % NB) * 8
                        ox = tx0 + px
                        if oy >= OH or ox >= OW: continue
                        out[img, oy, ox, nn:nn + 8] = stage[px * SLd + nn: px * SLd + nn + 8]
    err = np.abs(out - ref).max()
    print(f"C={C} K={K} {n}x{H}x{W}: max |err| {err:.3g}, unwritten {np.isnan(out).sum()}")
    assert err < 1e-2 and not np.isnan(out).any()

run(16, 16, 13, 11, n=2)
run(32, 32, 8, 16)
run(32, 32, 9, 19)
run(64, 64, 10, 13)
# bank-conflict check for the A ldmatrix phases: 8 lanes of one matrix hit distinct 16-byte bank groups
for C in (16, 32, 64):
    for start in range(40):
        groups = {(chunk_off(start + r, 0, C) // 16) % 8 for r in range(8)}
        assert len(groups) == 8, (C, start, groups)
for C in (16, 32, 64):
    kWRow = 9 * C * 2 + 16
    groups = {(r * kWRow // 16) % 8 for r in range(8)}
    assert len(groups) == 8, (C, groups)
print("bank groups distinct")
