package dev.edgeport.digits

import android.content.Context
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel
import kotlin.math.roundToInt
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter

/** Classifies one 8x8 grayscale digit with the model the edgeportExport task put in assets/. */
class DigitsClassifier(context: Context) : AutoCloseable {
    private val interpreter = Interpreter(mapAsset(context, "digits.tflite"), Interpreter.Options().setNumThreads(1))
    private val input = interpreter.getInputTensor(0)   // [1, 1, 8, 8]: int8 with the int8 recipe, else float32
    private val output = interpreter.getOutputTensor(0) // [1, 10]
    val labels: List<String> = context.assets.open("labels.txt").bufferedReader().use { it.readLines() }
        .filter { it.isNotBlank() }

    init {
        check(labels.size == output.shape().last()) { "labels.txt does not match the model's outputs" }
    }

    /** `pixels`: 64 values in [0, 1], row by row, scaled like the training data. */
    fun classify(pixels: FloatArray): String {
        require(pixels.size == 64) { "expected an 8x8 image" }
        val inBuffer = ByteBuffer.allocateDirect(input.numBytes()).order(ByteOrder.nativeOrder())
        val inQ = input.quantizationParams() // scale and zero point stored in the model by edgeport
        for (x in pixels) {
            if (input.dataType() == DataType.INT8) {
                inBuffer.put(((x / inQ.scale).roundToInt() + inQ.zeroPoint).coerceIn(-128, 127).toByte())
            } else {
                inBuffer.putFloat(x)
            }
        }
        val outBuffer = ByteBuffer.allocateDirect(output.numBytes()).order(ByteOrder.nativeOrder())
        inBuffer.rewind()
        interpreter.run(inBuffer, outBuffer)
        outBuffer.rewind()
        val outQ = output.quantizationParams()
        val scores = FloatArray(labels.size) {
            if (output.dataType() == DataType.INT8) (outBuffer.get() - outQ.zeroPoint) * outQ.scale else outBuffer.float
        }
        return labels[scores.indices.maxBy { scores[it] }]
    }

    override fun close() = interpreter.close()

    private companion object {
        fun mapAsset(context: Context, name: String): MappedByteBuffer =
            context.assets.openFd(name).use { fd ->
                FileInputStream(fd.fileDescriptor).channel.use {
                    it.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
                }
            }
    }
}

// DigitsClassifier(context).use { println(it.classify(pixels)) } // "0".."9"
