// The dense weight updates of the LyCORIS algorithms and DoRA, as the rules of the file-formats
// issue fix them where the references disagree (ComfyUI comfy/weight_adapter/{loha,lokr,lora,base}.py,
// KohakuBlueleaf/LyCORIS lycoris/functional/*.py, A1111 extensions-builtin/Lora/network_*.py,
// PEFT tuners/lora/dora.py):
//   LoHa   dW = (w1a @ w1b) * (w2a @ w2b), each factor through its Tucker core t when present
//   LoKr   dW = kron(w1, w2), w1 = w1a @ w1b and w2 = w2a @ w2b (or Tucker) where decomposed
//   Tucker rebuild(t, wa, wb) = einsum("i j k l, j r, i p -> p r k l", t, wb, wa)
//   LoCon  a Tucker mid core folds into the down weight: down'[m, c, k] = sum_d mid[m, d, k] down[d, c]
//   DoRA   D = m * (W + dW) / ||W + dW||, the norm per output row ([out, 1] magnitudes, PEFT's
//          lora_magnitude_vector) or per input column ([1, in]), plus eps as ComfyUI and LyCORIS
// Every result is laid out as the layer's weight, [out, in * kh * kw] row-major.
import Foundation
import HotswapCore

enum AdapterMath {
    /// [m, k] @ [k, n]
    static func matmul(_ a: Tensor, _ b: Tensor, m: Int, k: Int, n: Int) -> Tensor {
        let c = Tensor(uninitialized: [m, n])
        BLAS.sgemm(m: m, n: n, k: k, a: a.data, lda: k, b: b.data, ldb: n, c: c.data, ldc: n)
        return c
    }

    /// einsum("i j k l, j r, i p -> p r k l", t, wb, wa): t [ri, rj, K], wa [ri, out], wb [rj, in]
    /// -> [out, in, K] (K = kh * kw).
    static func rebuildTucker(core t: Tensor, wa: Tensor, wb: Tensor) -> Tensor {
        let ri = t.shape[0], rj = t.shape[1], k = t.count / (ri * rj)
        let out = wa.shape[1], inputs = wb.shape[1]
        let result = Tensor(zeros: [out, inputs * k])
        let slice = Tensor(uninitialized: [ri, rj])
        let product = Tensor(uninitialized: [ri, inputs])
        let plane = Tensor(uninitialized: [out, inputs])
        for kk in 0..<k {
            for i in 0..<ri { for j in 0..<rj { slice.data[i * rj + j] = t.data[(i * rj + j) * k + kk] } }
            // [ri, rj] @ [rj, in] -> [ri, in]; then wa^T [out, ri] @ that -> [out, in]
            BLAS.sgemm(m: ri, n: inputs, k: rj, a: slice.data, lda: rj, b: wb.data, ldb: inputs, c: product.data, ldc: inputs)
            BLAS.sgemm(transA: true, m: out, n: inputs, k: ri, a: wa.data, lda: out, b: product.data, ldb: inputs,
                       c: plane.data, ldc: inputs)
            for p in 0..<out { for q in 0..<inputs { result.data[(p * inputs + q) * k + kk] = plane.data[p * inputs + q] } }
        }
        return result
    }

    /// LoCon's Tucker core folded into the down weight: mid [r, rd, K], down [rd, in] -> [r, in * K].
    static func foldMid(_ mid: Tensor, down: Tensor) -> Tensor {
        let r = mid.shape[0], rd = mid.shape[1], k = mid.count / (r * rd), inputs = down.shape[1]
        let result = Tensor(zeros: [r, inputs * k])
        for m in 0..<r {
            for d in 0..<rd {
                for c in 0..<inputs {
                    let dc = down.data[d * inputs + c]
                    if dc == 0 { continue }
                    for kk in 0..<k { result.data[(m * inputs + c) * k + kk] += mid.data[(m * rd + d) * k + kk] * dc }
                }
            }
        }
        return result
    }

    /// kron(w1, w2) laid out as a weight: w1 [a, c], w2 [b, d, K] -> [a * b, c * d * K].
    static func kron(_ w1: Tensor, a: Int, c: Int, _ w2: Tensor, b: Int, d: Int, k: Int) -> Tensor {
        let columns = c * d * k
        let result = Tensor(uninitialized: [a * b, columns])
        for i in 0..<a {
            for p in 0..<b {
                let row = result.data + (i * b + p) * columns
                for j in 0..<c {
                    let factor = w1.data[i * c + j]
                    let source = w2.data + p * d * k
                    let target = row + j * d * k
                    for q in 0..<(d * k) { target[q] = factor * source[q] }
                }
            }
        }
        return result
    }

    /// In place: x *= factor.
    static func scale(_ x: Tensor, by factor: Float) {
        if factor == 1 { return }
        for i in 0..<x.count { x.data[i] *= factor }
    }

    /// In place: x *= y elementwise.
    static func multiply(_ x: Tensor, by y: Tensor) {
        for i in 0..<x.count { x.data[i] *= y.data[i] }
    }

    /// Where a DoRA magnitude normalizes: per output row or per input channel.
    enum NormAxis { case output, input }

    /// DoRA's weight minus the base: m * (W + dW) / ||W + dW|| - W, for base [out, in, K] and
    /// delta of the same layout; magnitude [out] (output axis) or [in] (input axis).
    static func doraDifference(base: Tensor, delta: Tensor, magnitude: Tensor, axis: NormAxis,
                               out: Int, inputs: Int, k: Int) -> Tensor {
        let result = Tensor(uninitialized: [out, inputs * k])
        let columns = inputs * k
        for i in 0..<(out * columns) { result.data[i] = base.data[i] + delta.data[i] }
        let eps = Float.ulpOfOne
        switch axis {
        case .output:
            for o in 0..<out {
                var sum: Double = 0
                for j in 0..<columns { let v = Double(result.data[o * columns + j]); sum += v * v }
                let factor = magnitude.data[o] / (Float(sum.squareRoot()) + eps)
                for j in 0..<columns { result.data[o * columns + j] *= factor }
            }
        case .input:
            var sums = [Double](repeating: 0, count: inputs)
            for o in 0..<out {
                for c in 0..<inputs {
                    for kk in 0..<k { let v = Double(result.data[o * columns + c * k + kk]); sums[c] += v * v }
                }
            }
            let factors = (0..<inputs).map { magnitude.data[$0] / (Float(sums[$0].squareRoot()) + eps) }
            for o in 0..<out {
                for c in 0..<inputs { for kk in 0..<k { result.data[o * columns + c * k + kk] *= factors[c] } }
            }
        }
        for i in 0..<(out * columns) { result.data[i] -= base.data[i] }
        return result
    }
}
