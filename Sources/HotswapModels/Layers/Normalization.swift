import HotswapCore

/// torch.nn.GroupNorm over [batch, channels, ...], optionally followed by SiLU in the same pass.
public struct GroupNorm {
    public let groups: Int, channels: Int, epsilon: Float
    public let weight: Tensor, bias: Tensor

    public init(_ parameters: Parameters, _ path: ModulePath, groups: Int, channels: Int, epsilon: Float) {
        self.groups = groups
        self.channels = channels
        self.epsilon = epsilon
        weight = parameters.take(path.parameter("weight"), shape: [channels])
        bias = parameters.take(path.parameter("bias"), shape: [channels])
    }

    public func callAsFunction(_ x: Tensor, silu: Bool = false) -> Tensor {
        precondition(x.rank >= 2 && x.shape[1] == channels, "GroupNorm(\(channels)) got \(x.shape)")
        let y = Tensor(uninitialized: x.shape)
        OpProfile.measure(.norm) {
        Normalization.groupNorm(x.data, into: y.data, batch: x.shape[0], channels: channels,
                                spatial: x.count / (x.shape[0] * channels), groups: groups,
                                gamma: weight.data, beta: bias.data, epsilon: epsilon, silu: silu)
        }
        return y
    }
}

/// torch.nn.LayerNorm over the last axis.
public struct LayerNorm {
    public let features: Int, epsilon: Float
    public let weight: Tensor, bias: Tensor

    public init(_ parameters: Parameters, _ path: ModulePath, features: Int, epsilon: Float) {
        self.features = features
        self.epsilon = epsilon
        weight = parameters.take(path.parameter("weight"), shape: [features])
        bias = parameters.take(path.parameter("bias"), shape: [features])
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        precondition(x.shape.last == features, "LayerNorm(\(features)) got \(x.shape)")
        let y = Tensor(uninitialized: x.shape)
        OpProfile.measure(.norm) {
        Normalization.layerNorm(x.data, into: y.data, rows: x.count / features, columns: features,
                                gamma: weight.data, beta: bias.data, epsilon: epsilon)
        }
        return y
    }
}
