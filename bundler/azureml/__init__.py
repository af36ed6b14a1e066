"""Azure ML SDK v1 names over bundler's native API, so code that called the SDK runs with
only its imports changed:

    from azureml.core import Workspace            ->  from bundler.azureml.core import Workspace
    from azureml.core.model import Model          ->  from bundler.azureml.core.model import Model

Everything happens on this machine: the workspace is the local model registry, a package is
a bundle (and its image, built by docker or podman), a local web service is that image run
by Docker, or the bundle's server run in this Python when no engine can run containers.
What needs Azure's cloud raises one clear error naming what to use instead; nothing is a
silent no-op. docs/azureml-migration.md lists every name, and what differs.
"""
