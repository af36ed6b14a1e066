"""bundler's scoring server: runs an Azure ML entry script (init()/run()) behind gunicorn.

Copied verbatim into every bundle (runtime/bundler_runtime/), so it must need nothing
from bundler and nothing from PyPI but gunicorn; Python 3.10+. The client-visible
contract (paths, status codes, bodies, headers) matches Microsoft's reference server,
azureml-inference-server-http; swagger*_template.json are that server's templates (MIT).

Modules: settings (environment -> Settings), entry (load the user's script), app (the
contract: Request -> response), asgi (the adapter to gunicorn's worker), swagger, timeout,
server (gunicorn), healthcheck, reference (starts azmlinfsrv instead, for engine "azureml").
It never writes outside /tmp: no pidfile, no control socket, no bytecode.
"""
