import Foundation

/// The numpy float64 routines diffusers' `set_timesteps` uses, with numpy's own evaluation order so
/// schedules (including odd lengths and rounding ties) come out exactly as in Python.
enum NumPy {
    /// `np.linspace(start, stop, num, endpoint)`: `i * step + start`, the endpoint written exactly.
    static func linspace(_ start: Double, _ stop: Double, count: Int, endpoint: Bool = true) -> [Double] {
        guard count > 0 else { return [] }
        let divisor = endpoint ? count - 1 : count
        let delta = stop - start
        var values = (0..<count).map(Double.init)
        if divisor > 0 {
            let step = delta / Double(divisor)
            values = step == 0
                ? values.map { $0 / Double(divisor) * delta }
                : values.map { $0 * step }
        } else {
            values = values.map { $0 * delta }
        }
        values = values.map { $0 + start }
        if endpoint && count > 1 { values[count - 1] = stop }
        return values
    }

    /// `np.arange(start, stop, step)` for floats: ceil((stop - start) / step) values, each
    /// `start + i * delta` with delta = (start + step) - start. This can give one value more than
    /// expected (1000 / 61 steps of trailing spacing gives 62), as in diffusers.
    static func arange(_ start: Double, _ stop: Double, step: Double) -> [Double] {
        let length = ((stop - start) / step).rounded(.up)
        guard length > 0, length.isFinite else { return [] }
        let count = Int(length)
        if count == 1 { return [start] }
        let delta = (start + step) - start
        return [start, start + step] + (2..<max(2, count)).map { start + Double($0) * delta }
    }

    /// `np.round` / `ndarray.round()`: halves go to the even neighbour.
    static func round(_ value: Double) -> Double { value.rounded(.toNearestOrEven) }

    /// `np.interp(x, np.arange(len(fp)), fp)` for one x, with float32 table values.
    static func interp(_ x: Double, _ fp: [Float]) -> Double {
        let last = fp.count - 1
        if x.isNaN { return x }
        if x < 0 { return Double(fp[0]) }
        if x >= Double(last) { return Double(fp[last]) }
        let j = Int(x.rounded(.down))
        if Double(j) == x { return Double(fp[j]) }
        let low = Double(fp[j]), high = Double(fp[j + 1])
        let slope = (high - low) / 1.0  // (fp[j+1] - fp[j]) / (xp[j+1] - xp[j])
        var result = slope * (x - Double(j)) + low
        if result.isNaN {
            result = slope * (x - Double(j + 1)) + high
            if result.isNaN && low == high { result = low }
        }
        return result
    }
}
