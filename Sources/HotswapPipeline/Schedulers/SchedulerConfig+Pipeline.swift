import HotswapModels

extension SchedulerConfig {
    /// What StableDiffusionPipeline.__init__ does to the scheduler it is given: a steps_offset other
    /// than 1 becomes 1 and clip_sample true becomes false (with a deprecation warning).
    ///
    /// - Parameter ownScheduler: the folder's own scheduler when rendering with it (no --scheduler):
    ///   then values that came from that class's defaults are rewritten too. Pass nil for the config
    ///   that `X.from_config(pipe.scheduler.config)` sees: diffusers drops the defaulted keys there
    ///   (`_use_default_values`), so only keys written in the file carry the rewrite.
    public func stableDiffusionPipelineAdjusted(ownScheduler: SchedulerName?) -> SchedulerConfig {
        var adjusted = self
        if let own = ownScheduler {
            // steps_offset defaults to 0 in every supported class; clip_sample only in DDIM is true.
            if (stepsOffset ?? 0) != 1 { adjusted.stepsOffset = 1 }
            if clipSample ?? (own == .ddim) { adjusted.clipSample = false }
        } else {
            if let offset = stepsOffset, offset != 1 { adjusted.stepsOffset = 1 }
            if clipSample == true { adjusted.clipSample = false }
        }
        return adjusted
    }
}

extension StableDiffusionModel {
    /// The scheduler the folder ships with (diffusers' default), if Hotswap implements it.
    public var defaultScheduler: SchedulerName? {
        schedulerConfig.className.flatMap { try? SchedulerName(className: $0) }
    }
}
