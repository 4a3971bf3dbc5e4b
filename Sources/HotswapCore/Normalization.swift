import CKernels

/// Group and layer normalization (torch.nn.GroupNorm / LayerNorm semantics, biased variance).
/// Statistics accumulate in double (groups hold up to ~10^6 elements); the kernels live in CKernels.
public enum Normalization {
    /// x: [batch, channels, spatial] contiguous; normalizes each of `groups` channel groups per
    /// batch item, then applies per-channel gamma/beta, then optionally SiLU (a fused pass).
    public static func groupNorm(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>,
                                 batch: Int, channels: Int, spatial: Int, groups: Int,
                                 gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
                                 epsilon: Float, silu: Bool) {
        precondition(channels % groups == 0, "groupNorm: \(channels) channels, \(groups) groups")
        hs_group_norm(x, y, batch, channels, spatial, groups, gamma, beta, epsilon, silu ? 1 : 0)
    }

    /// x: [rows, columns]; normalizes each row, then applies gamma/beta over columns.
    public static func layerNorm(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>,
                                 rows: Int, columns: Int,
                                 gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
                                 epsilon: Float) {
        hs_layer_norm(x, y, rows, columns, gamma, beta, epsilon)
    }
}
