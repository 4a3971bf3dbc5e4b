/// Memory layout changes between the conv world (NCHW) and the token world ([batch, tokens, channels]).
public enum Layout {
    /// [batch, channels, spatial] -> [batch, spatial, channels]
    public static func channelsLast(_ x: Tensor) -> Tensor {
        let (batch, channels) = (x.shape[0], x.shape[1])
        let spatial = x.count / (batch * channels)
        let y = Tensor(uninitialized: [batch, spatial, channels])
        for b in 0..<batch {
            transpose(x.data + b * channels * spatial, rows: channels, columns: spatial,
                      into: y.data + b * channels * spatial)
        }
        return y
    }

    /// [batch, spatial, channels] -> [batch, channels, height, width]
    public static func channelsFirst(_ x: Tensor, height: Int, width: Int) -> Tensor {
        let (batch, spatial, channels) = (x.shape[0], x.shape[1], x.shape[2])
        precondition(spatial == height * width, "channelsFirst: \(x.shape) vs \(height)x\(width)")
        let y = Tensor(uninitialized: [batch, channels, height, width])
        for b in 0..<batch {
            transpose(x.data + b * channels * spatial, rows: spatial, columns: channels,
                      into: y.data + b * channels * spatial)
        }
        return y
    }

    /// Row-major [rows, columns] -> [columns, rows], in cache-friendly tiles.
    public static func transpose(_ src: UnsafePointer<Float>, rows: Int, columns: Int,
                                 into dst: UnsafeMutablePointer<Float>) {
        let tile = 32
        var r0 = 0
        while r0 < rows {
            let r1 = min(rows, r0 + tile)
            var c0 = 0
            while c0 < columns {
                let c1 = min(columns, c0 + tile)
                for r in r0..<r1 {
                    for c in c0..<c1 { dst[c * rows + r] = src[r * columns + c] }
                }
                c0 = c1
            }
            r0 = r1
        }
    }

    /// Concatenates [batch, c_i, H, W] tensors along channels.
    public static func concatChannels(_ tensors: [Tensor]) -> Tensor {
        let batch = tensors[0].shape[0]
        let spatial = tensors[0].count / (batch * tensors[0].shape[1])
        let channels = tensors.reduce(0) { $0 + $1.shape[1] }
        let y = Tensor(uninitialized: [batch, channels] + tensors[0].shape.dropFirst(2))
        for b in 0..<batch {
            var offset = b * channels * spatial
            for t in tensors {
                precondition(t.shape[0] == batch && t.count / (batch * t.shape[1]) == spatial,
                             "concatChannels: \(t.shape) vs \(tensors[0].shape)")
                let block = t.shape[1] * spatial
                (y.data + offset).update(from: t.data + b * block, count: block)
                offset += block
            }
        }
        return y
    }

    /// Nearest-neighbour resize of [batch, channels, H, W] to (outHeight, outWidth), as
    /// torch.nn.functional.interpolate(mode="nearest"): source index = floor(dst * in / out).
    public static func resizeNearest(_ x: Tensor, height outHeight: Int, width outWidth: Int) -> Tensor {
        let (batch, channels, height, width) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let y = Tensor(uninitialized: [batch, channels, outHeight, outWidth])
        let scaleY = Float(height) / Float(outHeight), scaleX = Float(width) / Float(outWidth)
        let sourceX = (0..<outWidth).map { min(Int((Float($0) * scaleX).rounded(.down)), width - 1) }
        for plane in 0..<(batch * channels) {
            let src = x.data + plane * height * width
            let dst = y.data + plane * outHeight * outWidth
            for oy in 0..<outHeight {
                let sy = min(Int((Float(oy) * scaleY).rounded(.down)), height - 1)
                let srcRow = src + sy * width, dstRow = dst + oy * outWidth
                for ox in 0..<outWidth { dstRow[ox] = srcRow[sourceX[ox]] }
            }
        }
        return y
    }
}
