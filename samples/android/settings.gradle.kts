// Android sample: an app module whose build exports, checks and installs the digits model with
// edgeport (see README.md). The edgeport repository is two folders up: ../..

pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "edgeport-digits"
include(":app")
