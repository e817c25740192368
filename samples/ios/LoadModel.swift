import CoreML

/// Loads the digits model that the edgeport build phase installed (Xcode compiles
/// App/Models/digits.mlpackage into digits.mlmodelc inside the app bundle) and classifies
/// one 8x8 grayscale image.
enum DigitsClassifier {
    enum Failure: Error { case modelNotInBundle, noLogits }

    static func load() throws -> MLModel {
        guard let url = Bundle.main.url(forResource: "digits", withExtension: "mlmodelc") else {
            throw Failure.modelNotInBundle
        }
        let configuration = MLModelConfiguration()
        configuration.computeUnits = .all  // CPU, GPU and Neural Engine, as Core ML sees fit
        return try MLModel(contentsOf: url, configuration: configuration)
    }

    /// `pixels`: 64 values, row by row, scaled like the training data.
    static func predict(_ model: MLModel, pixels: [Float]) throws -> Int {
        precondition(pixels.count == 64, "expected an 8x8 image")
        let input = try MLMultiArray(shape: [1, 1, 8, 8], dataType: .float32)
        for (i, value) in pixels.enumerated() {
            input[i] = NSNumber(value: value)  // linear index into the contiguous [1,1,8,8] array
        }
        let features = try MLDictionaryFeatureProvider(dictionary: ["input": MLFeatureValue(multiArray: input)])
        let output = try model.prediction(from: features)
        guard let logits = output.featureValue(for: "output")?.multiArrayValue else {
            throw Failure.noLogits
        }
        var best = 0
        for i in 1..<logits.count where logits[i].floatValue > logits[best].floatValue {
            best = i
        }
        return best  // the digit, 0...9
    }
}

// let model = try DigitsClassifier.load()
// let digit = try DigitsClassifier.predict(model, pixels: image)
