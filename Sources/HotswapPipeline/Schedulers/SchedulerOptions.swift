// The string-valued config keys the schedulers read, and the checks shared by every class.

/// `prediction_type`: what the UNet predicts.
enum PredictionType: String {
    case epsilon
    case sample
    case vPrediction = "v_prediction"
}

/// `timestep_spacing`: how inference timesteps are picked from the training ones (Table 2 of
/// "Common Diffusion Noise Schedules and Sample Steps are Flawed").
enum TimestepSpacing: String {
    case linspace, leading, trailing
}

/// `final_sigmas_type`: the sigma after the last step.
enum FinalSigmasType: String {
    case zero
    case sigmaMin = "sigma_min"
}

/// Reads an enumerated string key, naming the class, key and value when the value is not allowed.
func option<Value: RawRepresentable>(
    _ raw: String?, default defaultValue: Value, key: String, scheduler: String, allowed: [Value]
) throws -> Value where Value.RawValue == String {
    guard let raw else { return defaultValue }
    guard let value = Value(rawValue: raw), allowed.contains(where: { $0.rawValue == value.rawValue }) else {
        throw SchedulerError.unsupportedValue(scheduler: scheduler, key: key, value: raw)
    }
    return value
}

/// Rejects a boolean feature this port does not implement when the config turns it on.
func requireOff(_ flag: Bool?, key: String, scheduler: String) throws {
    if flag == true { throw SchedulerError.unsupportedValue(scheduler: scheduler, key: key, value: "true") }
}

/// Every class accepts 1...num_train_timesteps inference steps (some diffusers classes fail later,
/// or silently misbehave, outside that range).
func checkSteps(_ steps: Int, numTrainTimesteps: Int, scheduler: String) throws {
    guard (1...max(1, numTrainTimesteps)).contains(steps) else {
        throw SchedulerError.stepsOutOfRange(scheduler: scheduler, steps: steps, allowed: 1...max(1, numTrainTimesteps),
                                             reason: "num_train_timesteps is \(numTrainTimesteps)")
    }
}

/// diffusers' `index_for_timestep` for schedulers with an internal step counter: the first step
/// starts at the *second* position of a timestep that appears twice (meant for img2img starts).
func beginIndex(of timestep: Float, in timesteps: [Float]) -> Int? {
    let matches = timesteps.indices.filter { timesteps[$0] == timestep }
    if matches.isEmpty { return nil }
    return matches.count > 1 ? matches[1] : matches[0]
}
