import ArgumentParser
import HotswapPipeline

extension SchedulerName: ExpressibleByArgument {
    public static var allValueStrings: [String] { allCases.map(\.rawValue) }
}
