/// Group and layer normalization (torch.nn.GroupNorm / LayerNorm semantics, biased variance).
/// Statistics accumulate in Double: the groups hold up to ~10^6 elements, and float sums drift.
public enum Normalization {
    /// x: [batch, channels, spatial] contiguous; normalizes each of `groups` channel groups per
    /// batch item, then applies per-channel gamma/beta, then optionally SiLU (a fused pass).
    public static func groupNorm(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>,
                                 batch: Int, channels: Int, spatial: Int, groups: Int,
                                 gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
                                 epsilon: Float, silu: Bool) {
        precondition(channels % groups == 0, "groupNorm: \(channels) channels, \(groups) groups")
        let channelsPerGroup = channels / groups
        let groupSize = channelsPerGroup * spatial
        for b in 0..<batch {
            for g in 0..<groups {
                let offset = (b * channels + g * channelsPerGroup) * spatial
                let (mean, invStd) = moments(x + offset, count: groupSize, epsilon: epsilon)
                for c in 0..<channelsPerGroup {
                    let channel = g * channelsPerGroup + c
                    // y = (x - mean) * invStd * gamma + beta = x * a + b
                    let a = invStd * gamma[channel]
                    let shift = beta[channel] - mean * a
                    let src = x + offset + c * spatial
                    let dst = y + offset + c * spatial
                    for i in 0..<spatial { dst[i] = src[i] * a + shift }
                    if silu { Activations.silu(dst, count: spatial) }
                }
            }
        }
    }

    /// x: [rows, columns]; normalizes each row, then applies gamma/beta over columns.
    public static func layerNorm(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>,
                                 rows: Int, columns: Int,
                                 gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
                                 epsilon: Float) {
        for r in 0..<rows {
            let src = x + r * columns
            let dst = y + r * columns
            let (mean, invStd) = moments(src, count: columns, epsilon: epsilon)
            for j in 0..<columns { dst[j] = (src[j] - mean) * invStd * gamma[j] + beta[j] }
        }
    }

    /// Mean and 1/sqrt(var + eps) of `count` floats, two-pass in Double.
    @inline(__always)
    static func moments(_ x: UnsafePointer<Float>, count: Int, epsilon: Float) -> (Float, Float) {
        var sum = 0.0
        for i in 0..<count { sum += Double(x[i]) }
        let mean = sum / Double(count)
        var squares = 0.0
        for i in 0..<count {
            let d = Double(x[i]) - mean
            squares += d * d
        }
        let variance = squares / Double(count)
        return (Float(mean), Float(1 / (variance + Double(epsilon)).squareRoot()))
    }
}
