import Testing
@testable import HotswapCore

@Suite struct TensorTests {
    @Test func reshapeSharesStorage() {
        let t = Tensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6])
        let r = t.reshaped([3, 2])
        r.data[0] = 9
        #expect(t.scalars[0] == 9)
        #expect(r.shape == [3, 2])
    }

    @Test func copyIsIndependent() {
        let t = Tensor(shape: [2], values: [1, 2])
        let c = t.copy()
        c.data[0] = 5
        #expect(t.scalars == [1, 2])
    }
}
