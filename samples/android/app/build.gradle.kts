import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "dev.edgeport.digits"
    compileSdk = 35

    defaultConfig {
        applicationId = "dev.edgeport.digits"
        minSdk = 24
        targetSdk = 35
        versionCode = 1
        versionName = "1.0"
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    // Stored uncompressed in the APK, so the Interpreter can memory-map the model from assets.
    androidResources {
        noCompress += "tflite"
    }
}

kotlin {
    compilerOptions {
        jvmTarget.set(JvmTarget.JVM_17)
    }
}

dependencies {
    // LiteRT, formerly TensorFlow Lite: same org.tensorflow.lite.Interpreter API.
    implementation("com.google.ai.edge.litert:litert:1.4.0")
}

// edgeport: export, check and install the model before every build ------------------------------

// -PedgeportRoot=DIR: the edgeport repository (default: two folders above this Gradle project).
// edgeport runs there, so module:factory sources and relative data paths resolve from it.
val edgeportRoot: File = providers.gradleProperty("edgeportRoot")
    .map { rootDir.resolve(it) }
    .getOrElse(rootDir.resolve("../.."))
    .canonicalFile

// -Pedgeport=COMMAND: the edgeport command; several words are allowed, e.g.
// "/path/to/.venv/bin/python -m edgeport". Default: the repository's .venv/bin/edgeport if it
// exists, else edgeport from PATH.
val edgeportCommand: String = providers.gradleProperty("edgeport").getOrElse(
    edgeportRoot.resolve(".venv/bin/edgeport").takeIf { it.canExecute() }?.path ?: "edgeport",
)

// -PedgeportRecipe=..., -PedgeportBudgets=..., -PedgeportChecks=... (or the EDGEPORT_RECIPE,
// EDGEPORT_BUDGETS, EDGEPORT_CHECKS environment variables) replace the script's defaults. They
// are task inputs: changing one reruns the export.
val edgeportSettings: Map<String, String> = mapOf(
    "EDGEPORT_RECIPE" to "edgeportRecipe",
    "EDGEPORT_BUDGETS" to "edgeportBudgets",
    "EDGEPORT_CHECKS" to "edgeportChecks",
).mapNotNull { (variable, property) ->
    providers.gradleProperty(property).orElse(providers.environmentVariable(variable)).orNull
        ?.let { variable to it }
}.toMap()

val edgeportModelName = "digits"
val edgeportAssets: Directory = layout.projectDirectory.dir("src/main/assets")

val edgeportExport by tasks.registering(Exec::class) {
    group = "edgeport"
    description = "Exports the $edgeportModelName model with edgeport, checks its budgets and " +
        "installs it into src/main/assets."

    val script = edgeportRoot.resolve("samples/android/edgeport_export.sh")
    workingDir = edgeportRoot
    commandLine("bash", script.path, edgeportAssets.asFile.path)
    environment("EDGEPORT", edgeportCommand)
    environment("EDGEPORT_WORKDIR", edgeportRoot.path)
    environment("EDGEPORT_OUT", layout.buildDirectory.dir("edgeport").get().asFile.path)
    environment("EDGEPORT_MODEL_NAME", edgeportModelName)
    environment(edgeportSettings)

    // Gradle reruns the task when an input changed or an output is missing or was modified, and
    // otherwise skips it (UP-TO-DATE). A failed run (budget breached) is never up to date.
    inputs.file(script).withPropertyName("script").withPathSensitivity(PathSensitivity.RELATIVE)
    inputs.files(
        edgeportRoot.resolve("samples/digits/model.py"),
        edgeportRoot.resolve("samples/digits/digits_cnn.pt"),
        edgeportRoot.resolve("samples/digits/calib.npz"),
        edgeportRoot.resolve("samples/digits/eval.npz"),
    ).withPropertyName("sample").withPathSensitivity(PathSensitivity.RELATIVE)
    inputs.files(fileTree(edgeportRoot.resolve("src/edgeport")) { include("**/*.py") })
        .withPropertyName("edgeportSources").withPathSensitivity(PathSensitivity.RELATIVE)
    inputs.property("edgeport", edgeportCommand)
    inputs.property("settings", edgeportSettings)
    outputs.files(
        edgeportAssets.file("$edgeportModelName.tflite"),
        edgeportAssets.file("labels.txt"),
        edgeportAssets.file("$edgeportModelName.edgeport-report.json"),
    ).withPropertyName("assets")
}

// Every variant task (asset merging, compilation, lint) runs after preBuild, so the checked model
// is in the assets before anything reads them.
tasks.named("preBuild") { dependsOn(edgeportExport) }
